"""Shared test setup: one torch thread, and markers that follow the folder a test lives in.

``tests/unit/`` holds one file per module; ``tests/system/`` the tests of the whole system (they start
subprocesses, kernels or clusters) and ``tests/browser/`` the front end's; those two are also ``slow``, so
``pytest -m "not slow"`` runs every unit test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent

MARKS_BY_FOLDER: dict[str, tuple[str, ...]] = {
    "system": ("system", "slow"),
    "browser": ("browser", "slow"),
}
"""Markers (registered in pyproject.toml) added to every test under ``tests/<folder>/``."""


def marks_for(path: Path) -> tuple[str, ...]:
    """The markers of a test file at ``path``: those of the first folder under ``tests/``, if any."""
    try:
        parts = Path(path).resolve().relative_to(TESTS).parts
    except ValueError:  # a test outside tests/ (e.g. given by absolute path from elsewhere)
        return ()
    return MARKS_BY_FOLDER.get(parts[0], ()) if len(parts) > 1 else ()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in marks_for(item.path):
            item.add_marker(name)
        if item.get_closest_marker("system") is not None and item.get_closest_marker("slow") is None:
            item.add_marker("slow")  # a system test marked in a unit file (it starts processes)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models on a 2-core machine: one intra-op thread is fastest and leaves the other core to the
    subprocesses (workers, kernels, browsers) that many tests start."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
