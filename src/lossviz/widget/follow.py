"""Following session jobs: start one, apply its result when it ends, say in words when it fails.

The Explorer's long work (disturb, interpolate, projections, distances, opening a project) runs as the
session's jobs; a :class:`JobFollower` waits for each on a small waiter thread (the work itself runs in
the session) and then calls the Explorer back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lossviz.widget.protocol import JobLike

__all__ = ["JobFollower"]


@dataclass
class _Followed:
    """A job whose result is applied when it ends: ``apply(result)``, unless a later job took its ``slot``
    (e.g. a newer projection); ``what`` names it in errors (none when ``quiet``)."""

    job: JobLike
    apply: Callable[[Any], None]
    what: str
    slot: str | None = None
    quiet: bool = False
    on_end: Callable[[], None] | None = None
    settled: threading.Event = field(default_factory=threading.Event)


class JobFollower:
    """Jobs started by :meth:`follow`, until each has ended and been applied.

    Parameters
    ----------
    on_error, on_message
        Called with the words for a failure (``"{what} failed: {reason}"``) or a cancellation.
    on_job
        Called with a job when it starts and when it ends (to list it).
    blocking
        Called at each :meth:`follow`: when true, ``follow`` returns only once the result is applied.
    """

    def __init__(self, on_error: Callable[[str], None], on_message: Callable[[str], None],
                 on_job: Callable[[JobLike], None], blocking: Callable[[], bool]):
        self._on_error, self._on_message, self._on_job, self._blocking = on_error, on_message, on_job, blocking
        self._lock = threading.Lock()
        self._pending: dict[int, _Followed] = {}
        self._ever: set[int] = set()
        self._latest: dict[str, int] = {}  # slot -> the job whose result is wanted
        self._transient: set[int] = set()  # jobs that refresh a view: listed only until they end well

    def follow(self, what: str, start: Callable[[], JobLike], apply: Callable[[Any], None], *,
               slot: str | None = None, quiet: bool = False, transient: bool = False,
               on_end: Callable[[], None] | None = None) -> None:
        """Start a job with ``start()`` and apply its result when it ends. A failure, of the start or of
        the job, goes to ``on_error`` unless ``quiet``; a job started later in the same ``slot``
        supersedes this one (its result is not applied, and it is cancelled if it has not started).
        ``transient``: the job only refreshes a view (see :meth:`transient`). ``on_end()`` is called
        once whatever happens (after ``apply``; also when the start fails)."""
        try:
            job = start()
        except Exception as exc:  # noqa: BLE001 - a failed start is reported in words, never raised into the kernel
            if not quiet:
                self._on_error(f"{what} failed: {exc}")
            if on_end is not None:
                on_end()
            return
        followed = _Followed(job, apply, what, slot, quiet, on_end)
        with self._lock:
            earlier = self._pending.get(self._latest.get(slot, -1)) if slot is not None else None
            self._pending[job.id] = followed
            self._ever.add(job.id)
            if transient:
                self._transient.add(job.id)
            if slot is not None:
                self._latest[slot] = job.id
        if earlier is not None and earlier.job.state == "queued":
            earlier.job.cancel()
        self._on_job(job)
        threading.Thread(target=self._settle_when_done, args=(followed,), daemon=True,
                         name=f"lossviz-explorer-job-{job.id}").start()
        if self._blocking():
            followed.settled.wait()

    def follows(self, job_id: int) -> bool:
        """Whether this follower started the job (its failure is reported here, in its own words)."""
        with self._lock:
            return job_id in self._ever

    def transient(self, job_id: int) -> bool:
        """Whether the job only refreshes a view (a projection after each new checkpoint): the jobs panel
        lists it while it runs, not once it has ended well."""
        with self._lock:
            return job_id in self._transient

    def wait(self, timeout: float) -> bool:
        """Wait until every job followed now has been applied; False when ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pending = list(self._pending.values())
        return all(f.settled.wait(max(0.0, deadline - time.monotonic())) for f in pending)

    def pending(self) -> list[str]:
        """Words for each job not yet applied, e.g. ``"distances (job 7, running)"``."""
        with self._lock:
            return [f"{f.what} (job {f.job.id}, {f.job.state})" for f in self._pending.values()]

    def forget(self) -> None:
        """Apply nothing more (the widget closes); waiting callers return."""
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for f in pending:
            f.settled.set()

    def _settle_when_done(self, followed: _Followed) -> None:
        followed.job.wait()
        self._settle(followed)

    def _settle(self, followed: _Followed) -> None:
        job = followed.job
        with self._lock:
            if self._pending.pop(job.id, None) is None:
                return
            superseded = followed.slot is not None and self._latest.get(followed.slot) != job.id
        try:
            if job.state == "done" and not superseded:
                followed.apply(job.result)
            elif job.state == "failed" and not (superseded or followed.quiet):
                self._on_error(f"{followed.what} failed: {job.error or 'unknown error'}")
            elif job.state == "cancelled" and not superseded:
                self._on_message(f"{followed.what}: cancelled")
        except Exception as exc:  # noqa: BLE001 - applying a result must not kill the waiter
            if not followed.quiet:
                self._on_error(f"{followed.what} failed: {exc}")
        finally:
            if followed.on_end is not None:  # before settled: what it starts is pending when waiters wake
                try:
                    followed.on_end()
                except Exception as exc:  # noqa: BLE001 - the waiter thread must not die
                    self._on_error(f"{followed.what} failed: {exc}")
            followed.settled.set()
            self._on_job(job)
