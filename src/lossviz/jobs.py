"""Background jobs: a state, progress, cancel and wait; a per-session queue that runs them one at a time.

A job's function runs in the queue's worker thread as ``fn(job)``; it reports progress with
``job.update(done, total, message)``, checks ``job.cancelled``, and returns the result. An exception in
it ends the job as ``"failed"`` with the reason in ``job.error``; it never leaves the worker thread.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
_ids = itertools.count(1)


class JobCancelled(Exception):
    """Raised inside a job function to end it as ``"cancelled"``."""


class Job:
    """A unit of background work. ``state`` is one of queued, running, done, failed, cancelled."""

    def __init__(self, kind: str, fn: Callable[[Job], Any], *, description: str = "",
                 on_change: Callable[[Job], None] | None = None):
        self.id: int = next(_ids)
        self.kind = kind
        self.description = description
        self.state = "queued"
        self.done = 0
        self.total = 0
        self.message = ""
        self.error: str | None = None
        self.traceback: str | None = None
        self.result: Any = None
        #: a training job's start checkpoint and hyperparameters (``None`` for other kinds)
        self.start_checkpoint: int | None = None
        self.hparams: dict | None = None
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self._fn = fn
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._on_change = on_change
        self._last_emit = 0.0

    # ------------------------------------------------------------------ public
    @property
    def progress(self) -> float:
        if self.state == "done":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def cancel_event(self) -> threading.Event:
        return self._cancel

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def finished_ok(self) -> bool:
        return self.state == "done"

    def is_finished(self) -> bool:
        return self._finished.is_set()

    def cancel(self) -> None:
        """Ask the job to stop; a queued job is cancelled at once, a running one at its next check."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result. TimeoutError if ``timeout`` seconds pass."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"job {self.id} ({self.kind}) still {self.state} after {timeout} s")
        return self.result

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "description": self.description,
            "state": self.state,
            "progress": self.progress,
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "error": self.error,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }

    def __repr__(self) -> str:
        return (f"Job(id={self.id}, kind={self.kind!r}, state={self.state!r}, "
                f"progress={self.progress:.2f}, message={self.message!r})")

    # ------------------------------------------------------------------ used by the job function
    def update(self, done: int | None = None, total: int | None = None, message: str | None = None,
               *, force: bool = False) -> None:
        """Record progress; change events are throttled to 10 per second unless ``force``."""
        if done is not None:
            self.done = int(done)
        if total is not None:
            self.total = int(total)
        if message is not None:
            self.message = message
        now = time.monotonic()
        if force or now - self._last_emit >= 0.1 or (self.total and self.done >= self.total):
            self._last_emit = now
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            with contextlib.suppress(Exception):  # a subscriber's bug must not end the job
                self._on_change(self)

    def _run(self) -> None:
        if self._cancel.is_set():
            self._finish("cancelled", error="cancelled before it started")
            return
        self.state = "running"
        self.started = time.time()
        self._changed()
        try:
            result = self._fn(self)
        except JobCancelled as exc:
            self._finish("cancelled", error=str(exc) or "cancelled")
        except BaseException as exc:  # noqa: BLE001 - never let a job take the worker (or the kernel) down
            self.traceback = traceback.format_exc()
            self._finish("failed", error=f"{type(exc).__name__}: {exc}")
        else:
            if self.state == "running":
                if result is not None:
                    self.result = result
                if self._cancel.is_set():
                    self._finish("cancelled", error="cancelled")
                else:
                    self._finish("done")

    def _finish(self, state: str, error: str | None = None) -> None:
        self.state = state
        if error is not None:
            self.error = error
        self.finished = time.time()
        self._finished.set()
        self._changed()

    def fail(self, error: str, result: Any = None) -> None:
        """End the job as failed from inside its function (e.g. a diverged run), keeping ``result``."""
        if result is not None:
            self.result = result
        self._finish("failed", error)

    def end_cancelled(self, result: Any = None, message: str = "cancelled") -> None:
        if result is not None:
            self.result = result
        self._finish("cancelled", message)


def start_in_thread(job: Job) -> Job:
    """Run ``job`` now in a daemon thread of its own (work that must not wait behind a queue, e.g. an
    export); returns it."""
    threading.Thread(target=job._run, daemon=True, name=f"lossviz-job-{job.id}").start()
    return job


class JobQueue:
    """A worker thread that runs submitted jobs one at a time, in order (a daemon thread)."""

    def __init__(self, name: str = "lossviz-jobs"):
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.current: Job | None = None

    def submit(self, job: Job) -> Job:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put(job)
        job._changed()
        return job

    def in_worker(self) -> bool:
        return threading.current_thread() is self._thread

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self.current = job
            try:
                job._run()
            finally:
                self.current = None

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        self._queue.put(None)
        if wait and self._thread is not None and not self.in_worker():
            self._thread.join(timeout)
