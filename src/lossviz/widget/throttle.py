"""Coalescing of the Explorer's refreshes: session events arrive many times a second, pushes to the
browser at most once per interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Coalescer"]


class Coalescer:
    """Run ``fn`` at most once per ``interval`` seconds; calls in between fold into one trailing run.

    ``interval <= 0`` runs ``fn`` at once, in the caller's thread. An exception of ``fn`` goes to
    ``on_error`` (a refresh must never kill the thread that delivered an event).
    """

    def __init__(self, fn: Callable[[], None], interval: float, on_error: Callable[[BaseException], None]):
        self.fn, self.interval, self.on_error = fn, interval, on_error
        self.lock = threading.Lock()
        self.pending = False
        self.last = 0.0

    def __call__(self) -> None:
        if self.interval <= 0:
            self._run()
            return
        with self.lock:
            if self.pending:
                return
            self.pending = True
            delay = max(0.0, self.last + self.interval - time.monotonic())
        timer = threading.Timer(delay, self._fire)
        timer.daemon = True
        timer.start()

    def _fire(self) -> None:
        with self.lock:
            self.pending = False
            self.last = time.monotonic()
        self._run()

    def _run(self) -> None:
        try:
            self.fn()
        except Exception as exc:  # noqa: BLE001 - a throttled call runs on a timer thread: report, never die
            self.on_error(exc)
