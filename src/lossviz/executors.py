"""Where chunks of surface points are evaluated: in-process, threads, processes, Dask, MPI, GPUs.

A surface computation hands its work out as tasks ``fn(spec, chunk)`` where ``fn`` is a picklable
top-level function, ``spec`` a picklable evaluation spec built once, and ``chunk`` a small array of
grid coefficients. :func:`run_chunks` runs them on

* nothing given: :class:`InProcessExecutor` (a direct call in the calling thread);
* a ``ThreadPoolExecutor`` or a :class:`DeviceExecutor` (one thread per device): the spec is shared;
* a ``dask.distributed.Client``: the spec's pickle is scattered once (``client.scatter``), chunks
  go out with ``client.submit`` naming it, and each worker process unpickles it once into the same
  per-process cache as below; a chunk whose worker died is recomputed (by the scheduler, and
  resubmitted here should it give up), a spec lost with every worker that held it is scattered
  again; cancelling cancels the outstanding futures;
* any other ``concurrent.futures.Executor`` (``ProcessPoolExecutor``,
  ``mpi4py.futures.MPIPoolExecutor`` / ``MPICommExecutor``, ``Client.get_executor()``): the spec is
  pickled once here and reaches each worker process once: tasks name it by a token, a worker keeps
  the specs it has seen in a small per-process cache, and a task that finds no cached spec answers
  :class:`SpecMissing`, upon which the chunk is resent with the spec's bytes.

Results come back as finished ``concurrent.futures.Future`` s, in completion order.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DeviceExecutor",
    "InProcessExecutor",
    "SpecMissing",
    "default_in_flight",
    "is_dask_client",
    "relax_malloc_trim",
    "run_chunks",
    "run_with_cached_spec",
    "spec_loads",
    "worker_count",
]


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
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


# ---------------------------------------------------------------------------------------- devices
def _resolve_devices(devices: Sequence[Any] | None) -> list[Any]:
    import torch

    if devices is None:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(
                "DeviceExecutor: no CUDA device is visible; pass devices explicitly, e.g. "
                "DeviceExecutor(['cuda:0', 'cuda:1']) (or ['cpu', 'cpu'] for CPU workers)"
            )
        return [torch.device("cuda", i) for i in range(n)]
    if isinstance(devices, (str, torch.device)):
        devices = [devices]
    out = []
    for d in devices:
        try:
            out.append(torch.device(d))
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"DeviceExecutor: {d!r} is not a device; use e.g. 'cuda:0' or 'cpu'") from None
    if not out:
        raise ValueError("DeviceExecutor: give at least one device")
    return out


class DeviceExecutor(Executor):
    """One worker thread per device (default: every visible CUDA device), pulling from one queue.

    Before a task runs, each of its arguments that has an ``on_device(device)`` method (the
    surface's :class:`~lossviz.landscape.EvalSpec`) is replaced by its result, so each worker builds
    its own evaluator on its own device; a faster device simply takes more chunks.
    ``chunks_per_device`` counts the tasks each worker ran (keys ``"<index>:<device>"``).
    """

    def __init__(self, devices: Sequence[Any] | None = None) -> None:
        self.devices = _resolve_devices(devices)
        self.max_workers = len(self.devices)
        self.chunks_per_device: dict[str, int] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._shutdown = False
        self._threads = [
            threading.Thread(target=self._work, args=(i, dev), name=f"lossviz-{dev}-{i}", daemon=True)
            for i, dev in enumerate(self.devices)
        ]
        for t in self._threads:
            t.start()

    def _work(self, index: int, device: Any) -> None:
        import torch

        label = f"{index}:{device}"
        bound: dict[int, Any] = {}  # id(arg) -> arg.on_device(device), for this worker
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                moved = []
                for a in args:
                    if hasattr(a, "on_device"):
                        if id(a) not in bound or bound[id(a)][0] is not a:
                            bound[id(a)] = (a, a.on_device(device))
                        a = bound[id(a)][1]
                    moved.append(a)
                if device.type == "cuda":
                    with torch.cuda.device(device):
                        result = fn(*moved, **kwargs)
                else:
                    result = fn(*moved, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - delivered through the Future
                future.set_exception(exc)
            else:
                future.set_result(result)
            with self._lock:
                self.chunks_per_device[label] = self.chunks_per_device.get(label, 0) + 1

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot submit to a DeviceExecutor after shutdown()")
        future: Future = Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()


# ---------------------------------------------------------------------------------------- spec cache
@dataclass(frozen=True)
class SpecMissing:
    """A worker's answer to a task whose spec it has not cached: resend with the spec's bytes."""

    token: str
    pid: int


_SPECS: OrderedDict[str, Any] = OrderedDict()
_SPECS_LOCK = threading.Lock()
_MAX_SPECS = 4
_LOADS = [0]  # specs unpickled in this process


def spec_loads() -> int:
    """How many specs this process has unpickled from bytes sent by :func:`run_chunks`."""
    return _LOADS[0]


def run_with_cached_spec(fn: Callable[[Any, Any], Any], token: str, payload: bytes | None, chunk: Any) -> Any:
    """The task sent to generic executors: ``fn(spec, chunk)`` with the spec of ``token`` from this
    process's cache, loaded from ``payload`` (the spec's pickle, made by :func:`run_chunks` in the
    coordinating process) on first use; :class:`SpecMissing` when neither is at hand."""
    with _SPECS_LOCK:
        spec = _SPECS.get(token)
        if spec is None and payload is not None:
            spec = pickle.loads(payload)  # bytes this run pickled for its own workers, not a file
            _LOADS[0] += 1
            _SPECS[token] = spec
            while len(_SPECS) > _MAX_SPECS:
                _SPECS.popitem(last=False)
        elif spec is not None:
            _SPECS.move_to_end(token)
    if spec is None:
        return SpecMissing(token, os.getpid())
    return fn(spec, chunk)


def dumps_spec(spec: Any) -> bytes:
    """The spec's pickle for other processes; with cloudpickle (installed with Dask) a model class
    defined in a notebook (``__main__``, which a worker cannot import) travels by value."""
    try:
        import cloudpickle
    except ImportError:
        return pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)


async def forget_spec(token: str) -> bool:
    """Drop the spec of ``token`` from this process's cache (True if it was there). A coroutine,
    so that ``Client.run(forget_spec, token, wait=False)`` runs it on Dask workers without waiting;
    it takes no lock (a task unpickling a spec may hold it): one ``pop`` is atomic under the GIL."""
    return _SPECS.pop(token, None) is not None


def _shares_memory(pool: Executor) -> bool:
    """Executors whose tasks run in this process (the spec needs no transport)."""
    return isinstance(pool, (InProcessExecutor, ThreadPoolExecutor, DeviceExecutor))


# ---------------------------------------------------------------------------------------- helpers
def is_dask_client(obj: Any) -> bool:
    """True for a ``dask.distributed.Client`` (without importing distributed when it is not)."""
    if not type(obj).__module__.startswith("distributed"):
        return False
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - module name matched but the package is gone
        return False
    return isinstance(obj, Client)


def _warn_if_forking(executor: Any) -> None:
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


def worker_count(executor: Any) -> int | None:
    """How many chunks ``executor`` evaluates at once: 1 in-process (``None``), the pool's workers,
    a Dask cluster's worker threads; ``None`` when it cannot say."""
    if executor is None or isinstance(executor, InProcessExecutor):
        return 1
    if is_dask_client(executor):
        try:
            return max(1, sum(executor.nthreads().values()))
        except Exception:  # noqa: BLE001 - a client that cannot say
            return None
    workers = (
        getattr(executor, "_max_workers", None)
        or getattr(executor, "max_workers", None)
        or getattr(executor, "num_workers", None)  # mpi4py.futures
    )
    try:
        return None if workers is None else max(1, int(workers))
    except (TypeError, ValueError):
        return None


def default_in_flight(executor: Any) -> int:
    """How many tasks to keep submitted at once: twice the pool's workers (1 in-process)."""
    if executor is None or isinstance(executor, InProcessExecutor):
        return 1
    workers = worker_count(executor)
    return 8 if workers is None else max(2, 2 * workers)


def _finished(value: Any = None, exc: BaseException | None = None) -> Future:
    fut: Future = Future()
    fut.set_running_or_notify_cancel()
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)
    return fut


# ---------------------------------------------------------------------------------------- run
def run_chunks(
    fn: Callable[[Any, Any], Any],
    spec: Any,
    chunks: Sequence[Any],
    executor: Any = None,
    *,
    max_in_flight: int | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[int, Future]]:
    """Submit ``fn(spec, chunk)`` for every chunk, keeping at most ``max_in_flight`` submitted, and
    yield ``(chunk index, finished future)`` as they complete.

    ``executor``: ``None`` (in-process), any ``concurrent.futures.Executor`` or a
    ``dask.distributed.Client`` (see the module docstring for how the spec travels). Chunks are
    submitted in the given order. Once ``cancel`` is set no more chunks are submitted and the
    pending ones are cancelled (Dask: every outstanding future); those already running in a
    ``concurrent.futures`` pool are still waited for and yielded.
    """
    if is_dask_client(executor):
        yield from _run_dask(fn, spec, chunks, executor, max_in_flight=max_in_flight, cancel=cancel)
        return
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(
            f"executor must be a concurrent.futures.Executor (e.g. ThreadPoolExecutor, "
            f"mpi4py.futures.MPIPoolExecutor) or a dask.distributed.Client, got {type(executor).__name__}"
        )
    _warn_if_forking(executor)
    pool = executor if executor is not None else InProcessExecutor()
    limit = max_in_flight or default_in_flight(pool)
    direct = _shares_memory(pool)
    token = str(getattr(spec, "token", None) or uuid.uuid4().hex)
    payload: list[bytes | None] = [None]  # the spec pickled once, on the first cache miss

    def submit(i: int, with_spec: bool = False) -> Future:
        if direct:
            return pool.submit(fn, spec, chunks[i])
        data = None
        if with_spec:
            if payload[0] is None:
                payload[0] = dumps_spec(spec)
            data = payload[0]
        return pool.submit(run_with_cached_spec, fn, token, data, chunks[i])

    pending: dict[Future, int] = {}
    next_chunk = 0
    try:
        while True:
            cancelled = cancel is not None and cancel.is_set()
            while not cancelled and next_chunk < len(chunks) and len(pending) < limit:
                pending[submit(next_chunk)] = next_chunk
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
                i = pending.pop(fut)
                if not fut.cancelled() and fut.exception() is None and isinstance(fut.result(), SpecMissing):
                    if cancel is not None and cancel.is_set():
                        continue  # not evaluated, and no longer wanted
                    pending[submit(i, with_spec=True)] = i
                    continue
                yield i, fut
    finally:
        for fut in pending:
            fut.cancel()


def _is_lost_worker(exc: BaseException) -> bool:
    """A chunk failed because its worker died or was unreachable, not because the task raised."""
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"KilledWorker", "CommClosedError", "FutureCancelledError"}) or isinstance(
        exc, CancelledError
    )


def _run_dask(
    fn: Callable[[Any, Any], Any],
    spec: Any,
    chunks: Sequence[Any],
    client: Any,
    *,
    max_in_flight: int | None,
    cancel: threading.Event | None,
    max_resubmits: int = 3,
    poll_s: float = 0.1,
    worker_wait_s: float = 60.0,
) -> Iterator[tuple[int, Future]]:
    """:func:`run_chunks` on a Dask client: the spec's bytes scattered once and unpickled once per
    worker process, a window of submitted chunks, results as they finish; a chunk lost with its
    worker is resubmitted, and a spec lost with its workers (scattered data cannot be recomputed)
    is scattered again first."""
    from distributed import TimeoutError as DaskTimeoutError
    from distributed import wait as dask_wait

    if not chunks:
        return
    limit = max_in_flight or default_in_flight(client)
    token = str(getattr(spec, "token", None) or uuid.uuid4().hex)
    payload = dumps_spec(spec)

    def scatter() -> Any:
        # The spec travels as its pickle's bytes and is unpickled by the task, through the worker's
        # spec cache: Dask may move a dependency to a worker more than once (it drops a fetched
        # copy once no queued task there needs it, and fetches it again for the next one), but
        # the model is rebuilt, and its evaluators measured, once per worker process.
        client.wait_for_workers(1, timeout=worker_wait_s)  # nannies may still be restarting them
        return client.scatter(payload, hash=False, direct=False)

    spec_futures = [scatter()]
    pending: dict[Any, int] = {}
    tries = [0] * len(chunks)
    next_chunk = 0

    def submit(i: int) -> None:
        tries[i] += 1
        if spec_futures[-1].status != "finished":
            # every worker that held the spec's bytes died (the scheduler logs "lost scattered
            # data"): the chunks that needed them fail as cancelled, and run again on a new copy
            spec_futures.append(scatter())
        fut = client.submit(run_with_cached_spec, fn, token, spec_futures[-1], chunks[i], pure=False)
        pending[fut] = i

    def lost(i: int, exc: BaseException) -> bool:
        return _is_lost_worker(exc) and tries[i] <= max_resubmits

    try:
        while True:
            if cancel is not None and cancel.is_set():
                client.cancel(list(pending))
                pending.clear()
                return
            while next_chunk < len(chunks) and len(pending) < limit:
                submit(next_chunk)
                next_chunk += 1
            if not pending:
                return
            # a timeout: look at cancel, then wait again; cancelled futures are sorted out below
            with contextlib.suppress(DaskTimeoutError, CancelledError):
                dask_wait(list(pending), timeout=poll_s, return_when="FIRST_COMPLETED")
            for fut in [f for f in pending if f.done()]:
                i = pending.pop(fut)
                if fut.status == "finished":
                    try:
                        result = fut.result()
                    except Exception as exc:  # noqa: BLE001 - lost while fetching the result
                        if lost(i, exc):
                            submit(i)
                            continue
                        yield i, _finished(exc=exc)
                        continue
                    yield i, _finished(result)
                    continue
                error = fut.exception() if fut.status == "error" else CancelledError("the chunk's future was cancelled")
                if lost(i, error):
                    submit(i)  # its worker died (the scheduler gave up): once more elsewhere
                    continue
                yield i, _finished(exc=error)
    finally:
        if pending:
            client.cancel(list(pending))
        try:
            client.cancel(spec_futures)  # release the scattered bytes
            client.run(forget_spec, token, wait=False)  # and the workers' unpickled copies
        except Exception:  # noqa: BLE001 - a closed client has nothing left to release
            pass


def mpi_comm_executor(comm: Any = None, root: int = 0):
    """``mpi4py.futures.MPICommExecutor`` over ``comm`` (default ``COMM_WORLD``): a context manager
    giving an executor on rank ``root`` (the other ranks serve tasks inside it and get ``None``)."""
    try:
        from mpi4py import MPI
        from mpi4py.futures import MPICommExecutor
    except ImportError as exc:
        raise ImportError(
            "MPI needs mpi4py: pip install 'lossviz[mpi]' (and an MPI library, e.g. Debian's "
            "openmpi-bin libopenmpi-dev)"
        ) from exc
    return MPICommExecutor(comm if comm is not None else MPI.COMM_WORLD, root=root)


class RankExecutor(Executor):
    """Rank 0's executor under MPI: tasks go to the other ranks (``remote``, an ``MPICommExecutor``'s
    pool serving ``remote_workers`` ranks) and to a worker thread of rank 0 itself, whichever has
    fewer tasks in flight per worker, so that every rank evaluates (as the reference's
    ``plot_surface.py`` does). ``local_tasks`` counts the chunks rank 0 evaluated (not the
    :class:`SpecMissing` answers)."""

    def __init__(self, remote: Executor, remote_workers: int) -> None:
        self._local = ThreadPoolExecutor(1, thread_name_prefix="lossviz-rank0")
        self._remote = remote
        self._remote_workers = max(1, int(remote_workers))
        self._max_workers = 1 + self._remote_workers
        self._in_flight = {"local": 0, "remote": 0}
        self._lock = threading.Lock()
        self.local_tasks = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            local = self._in_flight["local"] <= self._in_flight["remote"] / self._remote_workers
            self._in_flight["local" if local else "remote"] += 1
        if local:
            return self._local.submit(self._run_here, fn, args, kwargs)
        fut = self._remote.submit(fn, *args, **kwargs)
        fut.add_done_callback(self._remote_done)
        return fut

    def _run_here(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """A task on rank 0's thread, counted out before its future is set (so the next submission sees it)."""
        evaluated = False
        try:
            result = fn(*args, **kwargs)
            evaluated = not isinstance(result, SpecMissing)
            return result
        finally:
            with self._lock:
                self._in_flight["local"] -= 1
                self.local_tasks += int(evaluated)

    def _remote_done(self, _: Future) -> None:
        with self._lock:
            self._in_flight["remote"] -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._local.shutdown(wait=wait, cancel_futures=cancel_futures)  # the remote pool is its context's


def mpi_rank_executor(comm: Any = None, root: int = 0) -> contextlib.AbstractContextManager[Executor | None]:
    """Every rank of ``comm`` (default ``COMM_WORLD``) evaluating: a context manager giving rank ``root``
    a :class:`RankExecutor` over the other ranks and a thread of its own (with one rank, an
    :class:`InProcessExecutor`); the other ranks serve tasks inside it and get ``None``."""
    context = mpi_comm_executor(comm, root)  # names the install when mpi4py is missing
    from mpi4py import MPI

    comm = comm if comm is not None else MPI.COMM_WORLD
    return _rank_executor(comm, context)


@contextlib.contextmanager
def _rank_executor(comm: Any, context: Any) -> Iterator[Executor | None]:
    if comm.Get_size() == 1:
        yield InProcessExecutor()
        return
    with context as remote:
        if remote is None:
            yield None
            return
        pool = RankExecutor(remote, comm.Get_size() - 1)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True)


_ALLOCATOR_RELAXED = False


def relax_malloc_trim() -> bool:
    """Undo, in this worker process, the aggressive memory trimming Dask's nanny starts workers with.

    ``distributed`` starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting that variable at all
    also freezes glibc's mmap threshold at 128 KiB, so every activation tensor of a forward pass is a
    fresh ``mmap`` whose pages fault in and are unmapped again on free. Measured here (CPU, a small
    CNN, 441 grid points): 26.1 s with the variable against 10.5 s without, the same with this call
    (``mallopt(M_MMAP_THRESHOLD, 32 MiB)``, ``mallopt(M_TRIM_THRESHOLD, 64 MiB)``). Runs once per
    process, only where that variable is set and glibc is the allocator; returns whether it changed
    anything.
    """
    global _ALLOCATOR_RELAXED
    if _ALLOCATOR_RELAXED or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return False
    _ALLOCATOR_RELAXED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(
            libc.mallopt(m_trim_threshold, 64 << 20)
        )
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to undo
        return False

