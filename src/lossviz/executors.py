"""Where chunks of surface points are evaluated: the ``concurrent.futures.Executor`` seam.

A surface computation hands its work out as tasks ``fn(spec, chunk)`` where ``fn`` is a picklable
top-level function, ``spec`` a picklable evaluation spec built once, and ``chunk`` a small array of
grid coefficients. Any ``concurrent.futures.Executor`` runs them: :class:`InProcessExecutor` (the
default: a direct call in the calling thread), a ``ThreadPoolExecutor`` or ``ProcessPoolExecutor``,
and later Dask (``distributed.Client.get_executor()``) or MPI (``mpi4py.futures.MPIPoolExecutor``).
"""

from __future__ import annotations

import multiprocessing
import threading
import warnings
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator, Sequence


class InProcessExecutor(Executor):
    """Runs each submitted call at once, in the calling thread, and returns a finished Future."""

    def __init__(self) -> None:
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot submit to an InProcessExecutor after shutdown()")
        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the Future, like a pool
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


def _warn_if_forking(executor: Executor | None) -> None:
    """A ``fork``ed worker of a process whose torch thread pool has run can hang: say so."""
    if not isinstance(executor, ProcessPoolExecutor):
        return
    ctx = getattr(executor, "_mp_context", None)
    method = ctx.get_start_method() if ctx is not None else multiprocessing.get_start_method()
    if method == "fork":
        warnings.warn(
            "lossviz: a ProcessPoolExecutor that forks its workers can hang once torch has used "
            "threads in this process; create it with "
            "mp_context=multiprocessing.get_context('spawn') (or 'forkserver')",
            RuntimeWarning,
            stacklevel=3,
        )


def default_in_flight(executor: Executor) -> int:
    """How many tasks to keep submitted at once: twice the pool's workers (1 in-process)."""
    if isinstance(executor, InProcessExecutor):
        return 1
    workers = getattr(executor, "_max_workers", None) or getattr(executor, "max_workers", None)
    try:
        return max(2, 2 * int(workers))
    except (TypeError, ValueError):
        return 8


def run_chunks(
    fn: Callable[[Any, Any], Any],
    spec: Any,
    chunks: Sequence[Any],
    executor: Executor | None = None,
    *,
    max_in_flight: int | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[int, Future]]:
    """Submit ``fn(spec, chunk)`` for every chunk, keeping at most ``max_in_flight`` submitted, and
    yield ``(chunk index, finished future)`` as they complete.

    Chunks are submitted in the given order. Once ``cancel`` is set no more chunks are submitted,
    the pending ones are cancelled, and those already running are still waited for and yielded.
    """
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(
            f"executor must be a concurrent.futures.Executor (e.g. ThreadPoolExecutor, or "
            f"distributed.Client.get_executor()), got {type(executor).__name__}"
        )
    _warn_if_forking(executor)
    pool = executor if executor is not None else InProcessExecutor()
    limit = max_in_flight or default_in_flight(pool)
    pending: dict[Future, int] = {}
    next_chunk = 0
    try:
        while True:
            cancelled = cancel is not None and cancel.is_set()
            while not cancelled and next_chunk < len(chunks) and len(pending) < limit:
                pending[pool.submit(fn, spec, chunks[next_chunk])] = next_chunk
                next_chunk += 1
                if isinstance(pool, InProcessExecutor):
                    break  # hand each finished chunk back before the next one runs
            if cancelled:
                for fut in list(pending):
                    if fut.cancel():
                        del pending[fut]
            if not pending:
                return
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=pending.__getitem__):
                yield pending.pop(fut), fut
    finally:
        for fut in pending:
            fut.cancel()
