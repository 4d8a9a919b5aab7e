"""The front end's pure logic (brush distance, lasso point-in-polygon, deselect, codecs, grids, form
parsing) tested by node's built-in test runner (`npm test` = `node --test js/tests/`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_js_unit_tests_pass_under_node():
    node = shutil.which("node")
    assert node is not None, "node is needed for the front-end tests: install Node.js >= 20"
    r = subprocess.run([node, "--test", "js/tests/"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    passed = int(re.search(r"^# pass (\d+)", out, re.M).group(1))
    failed = int(re.search(r"^# fail (\d+)", out, re.M).group(1))
    skipped = int(re.search(r"^# skipped (\d+)", out, re.M).group(1))
    files = sorted(p.name for p in (ROOT / "js" / "tests").glob("*.test.js"))
    assert {"selection.test.js", "codecs.test.js", "grids.test.js", "form.test.js"} <= set(files)
    assert failed == 0 and skipped == 0
    assert passed >= 25, f"only {passed} JS tests ran:\n{out[-2000:]}"
