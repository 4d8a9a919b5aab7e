"""Live projects: the Explorer shows checkpoints another process writes into its project, with no
cell re-run.

:class:`StoreWatch` polls the project's index cheaply every ``interval`` seconds on a thread of its
own (an ``Event.wait``, no busy loop): ``PRAGMA data_version`` on a read-only SQLite connection
changes only when another connection committed; only then are the checkpoints counted (``COUNT``,
``MAX(id)``), and ``on_change`` is called when they differ from the last count and from the number
the viewer shows (``known``). Writes of results (projections, surfaces) change no count, so a refresh
that stores a projection does not trigger another one, and the viewer's own session's checkpoints
(already shown through its events) trigger none.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lossviz.store import INDEX_NAME

__all__ = ["POLL_S", "StoreWatch"]

POLL_S = 0.5
"""Seconds between two polls of the index: a checkpoint committed elsewhere is shown within about
this plus the Explorer's throttle."""


class StoreWatch:
    """Calls ``on_change()`` (on its own thread) when the checkpoints of the project whose index is in
    the folder :meth:`watch` was given change, unless their number is ``known()`` (what the viewer
    shows already); :meth:`stop` ends it. Watching a folder without an index (a session that is no
    project on disk) does nothing."""

    def __init__(self, on_change: Callable[[], None], known: Callable[[], int] | None = None,
                 interval: float = POLL_S):
        self._on_change = on_change
        self._known = known
        self._interval = float(interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, folder: Any) -> None:
        """Stop watching the previous folder; watch ``folder`` (a project path, or ``None``)."""
        self.stop()
        index = Path(str(folder)) / INDEX_NAME if folder else None
        if index is None or not index.is_file():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(index, self._stop), daemon=True,
                                        name=f"lossviz-live-{index.parent.name}")
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (the thread ends within one interval)."""
        self._stop.set()
        self._thread = None

    def _run(self, index: Path, stop: threading.Event) -> None:
        conn: sqlite3.Connection | None = None
        version: int | None = None
        count: tuple[int, int] | None = None  # None: not read yet, so the first count is a change
        try:
            while not stop.wait(self._interval):
                try:
                    if conn is None:  # (again) after the index could not be read: it is retried, not given up
                        conn = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=1.0, check_same_thread=False)
                    now = conn.execute("PRAGMA data_version").fetchone()[0]
                    if now == version:
                        continue
                    version, before = int(now), count
                    count = checkpoint_count(conn)
                except sqlite3.Error:  # locked past the timeout, or the folder went away
                    if conn is not None:
                        conn.close()
                    conn, version = None, None
                    continue
                if count != before and (self._known is None or self._known() != count[0]):
                    with contextlib.suppress(Exception):  # a viewer's error must not end the watch
                        self._on_change()
        finally:
            if conn is not None:
                conn.close()


def checkpoint_count(conn: sqlite3.Connection) -> tuple[int, int]:
    """``(number of checkpoints, largest id)`` of an index."""
    n, last = conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM checkpoints").fetchone()
    return int(n), int(last)
