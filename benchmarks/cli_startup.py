"""Start-up time of ``lossviz --help`` against ``python -c pass``, measured in the same run.

    PYTHONPATH=src python benchmarks/cli_startup.py [--repeat 5]

Runs the venv's ``lossviz`` console script (next to this Python) and an empty Python ``--repeat``
times each, prints the median seconds of both and their ratio, and whether building the CLI's
parser imports torch (the issue's goal: ``lossviz --help`` under 1 s, without torch).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def parser_imports_torch() -> bool:
    code = "import sys; from lossviz.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return done.stdout.strip() == "True"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    script = Path(sys.executable).parent / ("lossviz.exe" if os.name == "nt" else "lossviz")
    if not script.exists():
        sys.exit(f"no console script {script}: pip install -e . in this environment")
    median_seconds([str(script), "--help"], 1)  # warm the file cache for both
    t_cli = median_seconds([str(script), "--help"], args.repeat)
    t_py = median_seconds([sys.executable, "-c", "pass"], args.repeat)
    print(f"median of {args.repeat}: lossviz --help {t_cli:.3f} s, python -c pass {t_py:.3f} s, "
          f"ratio {t_cli / t_py:.1f}x")
    print(f"building the parser imports torch: {parser_imports_torch()}")


if __name__ == "__main__":
    main()
