"""How the engine evaluates points, and how it finds out: the plan search.

A :class:`Plan` says how an :class:`~lossviz.evaluate.Evaluator` evaluates points: ``"loop"`` (one
point after another) or ``"vmap"`` (K points per call), and the data batch size. With
``strategy="auto"`` the evaluator measures, on its first chunk with enough points, candidate plans
against the plain loop (:meth:`PlanSearch._choose_plan`), the torch intra-op threads on CPU
(:meth:`PlanSearch._choose_threads`, within the rule of :func:`evaluation_threads`) and, for
convolutional models on CPU, channels-last memory format (:meth:`PlanSearch._choose_channels_last`).
What it chose is remembered for the process (keyed by the model's :func:`architecture_signature`,
the data's shape, device, dtype and options) and reused by later evaluators of the same kind
(:meth:`PlanSearch._reuse_plan`; :func:`forget_plans`). A surface computed by several workers measures
once and pins the plan for all of them (:attr:`lossviz.landscape.EvalSpec.plans`).

:class:`PlanSearch` is the part of :class:`~lossviz.evaluate.Evaluator` that measures (a mixin: it
reads the evaluator's state and calls its evaluation primitives, declared below).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import statistics
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from lossviz.validation import Interval, check

if TYPE_CHECKING:
    from lossviz.data import EvalData
    from lossviz.params import ParamSpace

__all__ = [
    "Plan",
    "PlanSearch",
    "architecture_signature",
    "available_cpus",
    "evaluation_threads",
    "forget_plans",
    "intra_op_threads",
]

_MIN_POINTS_TO_MEASURE = 8
_DEFAULT_POINTS_PER_CALL = 64
_MAX_POINTS_PER_CALL = 1024
_SMALL_BATCH = 256  # the smaller data batch tried under vmap
_LOOP_BATCHES = (512, 128)  # data batches tried by the loop besides "all at once" (CPU caches)
_VMAP_WARM = False  # whether this process has made its first (slow) vmapped call
_MIN_SAMPLES = 3  # timings of a plan before it may be chosen (and of the loop, its baseline)
_MAX_SAMPLES = 7  # timings of a rival at most
_MARGIN = 0.9  # a rival's median time per point must be below 0.9x the loop's to be chosen
_MEASURE_SHARE = 0.03  # measuring may cost this share of the loop's time for all points ...
_MIN_MEASURE_S = 0.02  # ... or this many seconds, whichever is more


# ---------------------------------------------------------------------------------------- threads
def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def evaluation_threads(device: str | torch.device, *, workers: int = 1, threads: int | None = None) -> int:
    """torch intra-op threads for evaluating on ``device``: the rule lossviz follows.

    * ``threads`` given: that (the override: ``Evaluator(threads=)``, ``--threads``);
    * not a CPU device: torch's current setting (kernels run on the device);
    * ``workers > 1`` (points evaluated in parallel: a process pool, Dask, MPI ranks, CPU worker
      threads): 1 per worker, as parallel workers already use the cores and more threads per worker
      only contend for them;
    * otherwise: the CPUs available (at most torch's current setting), an upper bound: an
      :class:`Evaluator` with ``threads=None`` times its plain loop on 1 thread and on this many
      (wall clock, interleaved) and keeps the larger count only if it is 25% faster; it stays on 1
      thread without trying when the 1-minute load average leaves fewer cores free or the
      evaluation is too short to afford the trial (on a loaded 2-core machine a LeNet surface ran
      5-13x slower on torch's default 2 threads than on 1, single LeNet points up to 25x).
    """
    if threads is not None:
        check("threads", threads, Interval(int, 1, None))
        return threads
    if torch.device(device).type != "cpu":
        return torch.get_num_threads()
    if workers > 1:
        return 1
    return max(1, min(available_cpus(), torch.get_num_threads()))


def _cores_look_free(threads: int) -> bool:
    """Whether the 1-minute load average leaves ``threads`` cores to this evaluation (counting one
    as its own): on a loaded machine a single timing on more threads than free cores can take 25x
    the 1-thread time (OpenMP threads wait for each other), so it is not even tried."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available: assume busy
        return False
    return load + threads - 1 <= available_cpus() - 0.5


@contextlib.contextmanager
def intra_op_threads(n: int):
    """torch's intra-op threads set to ``n`` while inside, restored on leaving.

    With torch's OpenMP backend (the default build) the setting belongs to the calling thread, so
    an evaluation in one thread (a Session's worker) leaves the others' setting alone."""
    saved = torch.get_num_threads()
    if n != saved:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


# ---------------------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class Plan:
    """How points are evaluated: ``strategy`` ("vmap" or "loop"), points per call, data batch size."""

    strategy: str
    points_per_call: int
    batch_size: int


def _memory_budget(device: torch.device) -> int:
    """Bytes the engine may use for activations at once."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 8 << 30
    return int(min(avail * 0.25, 2 << 30))


class PlanSearch:
    """The plan search of an :class:`~lossviz.evaluate.Evaluator`: candidate plans, their timing,
    the thread count and memory format measured with them, and the process's remembered plans."""

    # what the search reads and sets of the evaluator (set in Evaluator.__init__)
    device: torch.device
    dtype: torch.dtype
    space: ParamSpace
    data: EvalData
    n_samples: int
    strategy: str
    points_per_call: int | None
    batch_size: int | None
    plan: Plan | None
    plan_source: str | None
    threads: int
    channels_last: bool
    timings: dict[str, float]
    errors: list[str]
    fallback: str | None
    _budget: int
    _bytes_per_sample: int
    _plan_key: tuple
    _measure_threads: bool
    _measure_channels_last: bool
    _wall_clock: bool

    # the evaluator's primitives the search calls
    def _eval_block(self, plan: Plan, pts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _store(self, sums: torch.Tensor, idx: np.ndarray, out: np.ndarray, done: np.ndarray) -> None:
        raise NotImplementedError

    def _vmap_failed(self, exc: Exception) -> None:
        raise NotImplementedError

    def _set_channels_last(self, on: bool) -> None:
        raise NotImplementedError

    def _reuse_plan(self) -> bool:
        """Take this process's remembered plan for the same model, data shape, device and options."""
        known = _known_plan(self._plan_key)
        if known is None:
            return False
        self.plan, self.plan_source = known.plan, "reused"
        self._measure_threads = False
        self.threads = known.threads
        torch.set_num_threads(self.threads)  # inside evaluate(): restored on leaving
        if self._measure_channels_last:
            self._measure_channels_last = False
            if known.channels_last != self.channels_last:
                self._set_channels_last(known.channels_last)
        self.timings = dict(known.timings)
        return True

    def _choose_channels_last(self, trial: _Trial) -> None:
        """CPU ``channels_last="auto"`` under the loop plan: time single points in both memory
        formats (the median of :data:`_MIN_SAMPLES` each, channels-last after one untimed call; the
        results kept) and keep channels-last if it is 5% faster. It helped LeNet, ResNet-20 and
        VGG-9 by 15-30% and a small CNN by -8% to 35%, and under vmap it does not pay
        (``benchmarks/channels_last_cpu.py``), so vmap plans are not measured."""
        self._measure_channels_last = False
        plan = self.plan
        assert plan is not None, "the loop plan is chosen before its memory format"
        while trial.count(plan) < _MIN_SAMPLES:  # the contiguous timings (the plan search's, if any)
            trial.sample(plan)
        plain = trial.median(plan)
        if trial.base_time is None:  # a pinned loop: no plan search before
            trial.start_budget(plan)
        if not (math.isfinite(plain) and trial.fits(_MIN_SAMPLES + 1, plain)):
            return
        try:
            self._set_channels_last(True)
            # one untimed call first (its result kept): the first call in a new memory format
            # allocates and picks kernels, and timing it made the choice flip from run to run
            self._timed(plan, trial.take(1), trial.pts, trial.out, trial.done)
            fast = statistics.median(
                self._timed(plan, trial.take(1), trial.pts, trial.out, trial.done) for _ in range(_MIN_SAMPLES)
            )
        except Exception as exc:  # noqa: BLE001 - a format that fails is not a candidate
            self._measure_failed("loop+channels_last", exc)
            self._set_channels_last(False)
            return
        self.timings[f"loop(batch={plan.batch_size},channels_last)"] = fast * 1e3
        if not fast < 0.95 * plain:
            self._set_channels_last(False)

    def _max_samples_at_once(self) -> int:
        return max(1, self._budget // self._bytes_per_sample)

    def _loop_plans(self) -> list[Plan]:
        if self.batch_size is not None:
            return [Plan("loop", 1, self.batch_size)]
        full = min(self.n_samples, self._max_samples_at_once())
        sizes = {full} | {min(full, b) for b in _LOOP_BATCHES}
        return [Plan("loop", 1, b) for b in sorted(sizes, reverse=True)]

    def _vmap_plans(self, n_points: int) -> list[Plan]:
        """vmap candidates: K points per call and a data batch size such that K x batch samples of
        activations and K stacked copies of the parameters fit the memory budget."""
        room = self._max_samples_at_once()
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        param_room = max(1, self._budget // (4 * max(1, self.space.numel) * itemsize))
        k_cap = max(1, min(_MAX_POINTS_PER_CALL, param_room, n_points))
        k_target = min(self.points_per_call or _DEFAULT_POINTS_PER_CALL, k_cap)
        if self.batch_size is not None:
            sizes = [self.batch_size]
        else:
            sizes = sorted(
                {min(self.n_samples, max(1, room // k_target)), min(self.n_samples, _SMALL_BATCH)},
                reverse=True,
            )
        plans = [
            Plan("vmap", self.points_per_call or max(1, min(k_target, room // b)), b) for b in sizes
        ]
        if self.strategy == "auto":  # vmap gains by sharing work among points: at least 4
            plans = [p for p in plans if p.points_per_call >= min(4, n_points)]
        return list(dict.fromkeys(plans))

    def _choose_plan(self, trial: _Trial) -> Plan:
        """Explicit strategy -> its plan. ``"auto"``: the plain loop (:meth:`_loop_plans`' first: the
        given batch size, else all samples at once within memory) is the baseline, timed first
        (:data:`_MIN_SAMPLES` single points); the other loop batch sizes get one timing each and
        ``vmap`` is explored at K = 4, 8, 16, ... (stopping as soon as a doubling gains less than 10%,
        or when it is behind the loop and not catching up fast); the rivals that measured faster
        than the loop are then timed again, interleaved with the loop, up to :data:`_MAX_SAMPLES`
        each within the trial's time budget. A rival is chosen only if its median per-point time
        beats the loop's median by :data:`_MARGIN` over at least :data:`_MIN_SAMPLES` timings; else
        the loop. The measured points' results are kept, so measuring costs little.
        """
        n = trial.pts.shape[0]
        if self.strategy == "vmap":
            return self._vmap_plans(n)[0]
        base = self._loop_plans()[0]
        if self._measure_threads or self.strategy == "auto":
            trial.warm(base)
        if self._measure_threads:
            self._choose_threads(trial, base)
        if self.strategy == "loop":
            return base
        for _ in range(_MIN_SAMPLES - trial.count(base)):
            trial.sample(base)
        if not math.isfinite(trial.median(base)):
            return base  # the loop itself fails: it still evaluates (NaN where points fail)
        trial.start_budget(base)
        rivals = [plan for plan in self._loop_plans()[1:] if trial.affordable() and trial.promising(plan)]
        vmap_best = self._explore_vmap(trial, n)
        if vmap_best is not None and trial.median(vmap_best) < trial.median(base):
            rivals.append(vmap_best)
        while trial.affordable():
            pending = [p for p in rivals if trial.count(p) < _MAX_SAMPLES]
            if not pending:
                break
            for plan in (base, *pending):  # interleaved: a drifting load reaches every candidate
                if trial.affordable():
                    trial.sample(plan)
            rivals = [p for p in rivals if trial.median(p) < trial.median(base)]  # measured slower: out
        winners = [p for p in rivals if trial.count(p) >= _MIN_SAMPLES
                   and trial.median(p) < _MARGIN * trial.median(base)]
        return min(winners, key=trial.median, default=base)

    def _choose_threads(self, trial: _Trial, base: Plan) -> None:
        """Time the plain loop on 1 thread and on :attr:`threads` threads (wall clock, interleaved,
        the median of up to :data:`_MIN_SAMPLES` each; more threads lose at their first timing
        slower than 1 thread) and keep the larger count only if it is 25% faster. The timing on
        more threads is tried only if the trial can afford it being 4x slower (on a loaded machine
        it can be: the evaluation then stays on 1 thread). The 1-thread timings are discarded
        (their results kept): the plan search times with the thread's CPU time on 1 thread."""
        self._measure_threads = False
        many = self.threads
        wall: dict[int, list[float]] = {}
        if not _cores_look_free(many):
            self.threads = 1
            torch.set_num_threads(1)  # inside evaluate(): restored on leaving
            return
        self._wall_clock = True
        try:
            for _ in range(_MIN_SAMPLES):
                for n in (1, many):
                    torch.set_num_threads(n)
                    wall.setdefault(n, []).append(trial.sample(base))
                    if n == 1 and many not in wall and 3 * wall[1][0] > trial.budget_for(wall[1][0]):
                        break  # cannot afford to try
                if many not in wall or wall[many][-1] > statistics.median(wall[1]):
                    break
        finally:
            self._wall_clock = False
        trial.samples.pop(base, None)
        fast = many in wall and statistics.median(wall[many]) < 0.75 * statistics.median(wall[1])
        self.threads = many if fast else 1
        torch.set_num_threads(self.threads)  # inside evaluate(): restored on leaving
        for n, times in wall.items():
            self.timings[f"threads={n} (wall)"] = statistics.median(times) * 1e3
        if fast:  # the wall-clock timings of the chosen count are the loop's timings
            trial.samples[base] = list(wall[many])

    def _explore_vmap(self, trial: _Trial, n: int) -> Plan | None:
        """vmap's best measured plan (one timing per K), or None if it failed or was not affordable."""
        global _VMAP_WARM
        loop_best = trial.median(self._loop_plans()[0])
        found: Plan | None = None
        for plan in self._vmap_plans(n):
            if not trial.affordable():
                break
            first = min(4, plan.points_per_call)
            if not trial.fits(first, 2 * loop_best):  # (its first K is budgeted at 2x the loop, see below)
                break
            try:
                if not _VMAP_WARM:  # torch.func's one-time set-up in this process (not a timing)
                    self._timed(Plan("vmap", 1, plan.batch_size), trial.take(1), trial.pts, trial.out, trial.done)
                    _VMAP_WARM = True
            except Exception as exc:  # noqa: BLE001 - a strategy that fails is not a candidate
                self._measure_failed(f"vmap(batch={plan.batch_size})", exc)
                continue
            k, k_best, t_best, t_prev = first, None, math.inf, math.inf
            while trial.affordable():
                candidate = Plan("vmap", k, plan.batch_size)
                # (its first K is budgeted at 2x the loop: vmapped convolutions on CPU often are)
                t = trial.sample(candidate, guess=t_prev if math.isfinite(t_prev) else 2 * loop_best)
                if not math.isfinite(t):
                    break
                if t < t_best:
                    k_best, t_best = candidate, t
                if k >= plan.points_per_call or t > 0.9 * t_prev:
                    break  # at the memory limit, or doubling K no longer pays
                if t > (1.2 if t_prev == math.inf else 1.5) * loop_best and t > 0.75 * t_prev:
                    break  # behind the loop and not catching up fast
                t_prev = t
                k = min(2 * k, plan.points_per_call)
            if k_best is not None and (found is None or t_best < trial.median(found)):
                found = k_best
            if t_best > 1.2 * loop_best:
                break  # vmap does not suit this model: skip its other batch sizes
        return found

    def _measure_failed(self, label: str, exc: Exception) -> None:
        self.timings[label] = math.inf
        if label.startswith("vmap") and self.fallback is None:
            self._vmap_failed(exc)
        if len(self.errors) < 100:
            self.errors.append(f"{label} failed while measuring: {type(exc).__name__}: {exc}")

    def _timed(self, plan: Plan, idx: np.ndarray, pts, out: np.ndarray, done: np.ndarray) -> float:
        self._sync()
        clock = self._clock()
        t0 = clock()
        sums = self._eval_block(plan, pts[idx])
        self._sync()
        elapsed = clock() - t0
        fresh = ~done[idx]
        if fresh.any():
            self._store(sums[torch.as_tensor(fresh)], idx[fresh], out, done)
        return elapsed

    def _clock(self):
        """CPU time of the calling thread when torch computes on one CPU thread (that thread does
        all the work; robust on a busy machine, where time spent waiting for a core does not
        count, and with other evaluations in other threads), else wall time."""
        if self.device.type == "cpu" and torch.get_num_threads() == 1 and not self._wall_clock:
            return time.thread_time
        return time.perf_counter

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# ---------------------------------------------------------------------------------------- measuring
def _label(plan: Plan) -> str:
    if plan.strategy == "vmap":
        return f"vmap(K={plan.points_per_call},batch={plan.batch_size})"
    return f"loop(batch={plan.batch_size})"


class _Trial:
    """Timings of candidate plans on the rows of one chunk ``pts`` (every result is kept in
    ``out``/``done``), cycling through the rows (a row timed twice is evaluated again).

    The budget: once the loop's time per point is known, measuring may cost :data:`_MEASURE_SHARE`
    of the loop's time for all ``total`` points (at least :data:`_MIN_MEASURE_S`) beyond what the
    loop would have taken for the same points (a rival faster than the loop costs nothing)."""

    def __init__(self, ev: PlanSearch, pts: torch.Tensor, out: np.ndarray, done: np.ndarray, total: int | None):
        self.ev, self.pts, self.out, self.done = ev, pts, out, done
        self.total = max(total or 0, pts.shape[0])
        self.cursor = 0
        self.samples: dict[Plan, list[float]] = {}
        self.extra = 0.0  # seconds spent beyond the loop's time for the same points
        self.budget = math.inf
        self.base_time: float | None = None

    def take(self, m: int) -> np.ndarray:
        idx = (self.cursor + np.arange(m)) % self.pts.shape[0]
        self.cursor += m
        return idx

    def fits(self, m: int, per_point: float) -> bool:
        """Whether timing ``m`` more points at ``per_point`` seconds each stays within the budget."""
        if self.base_time is None:
            return True
        idx = (self.cursor + np.arange(m)) % self.pts.shape[0]
        fresh = int((~self.done[idx]).sum())
        return self.extra + m * per_point - fresh * self.base_time <= self.budget

    def warm(self, plan: Plan) -> None:
        """One call of ``plan``, untimed (first calls allocate and build kernels); its results kept."""
        with contextlib.suppress(Exception):  # a failing point is evaluated (NaN) later
            self.ev._timed(plan, self.take(1), self.pts, self.out, self.done)

    def sample(self, plan: Plan, guess: float | None = None) -> float:
        """Seconds per point of one timing of ``plan`` (one call: K points for vmap, one for the
        loop); ``inf`` if it failed or would overrun the budget (then nothing more is timed):
        its expected time per point is its median so far, else ``guess``, else the loop's."""
        m = plan.points_per_call if plan.strategy == "vmap" else 1
        expected = self.median(plan) if plan in self.samples else guess or self.base_time or 0.0
        if not self.fits(m, expected):
            self.extra = max(self.extra, self.budget)  # spent: stop measuring
            return math.inf
        idx = self.take(m)
        fresh = int((~self.done[idx]).sum())
        try:
            elapsed = self.ev._timed(plan, idx, self.pts, self.out, self.done)
        except Exception as exc:  # noqa: BLE001 - a plan that fails is not a candidate
            self.ev._measure_failed(_label(plan), exc)
            self.samples.setdefault(plan, []).append(math.inf)
            self.extra += 0.0 if self.base_time is None else m * self.base_time
            return math.inf
        self.samples.setdefault(plan, []).append(elapsed / m)
        if self.base_time is not None:
            self.extra += elapsed - fresh * self.base_time
        self.ev.timings[_label(plan)] = self.median(plan) * 1e3
        return elapsed / m

    def count(self, plan: Plan) -> int:
        return len(self.samples.get(plan, ()))

    def median(self, plan: Plan) -> float:
        found = self.samples.get(plan)
        return statistics.median(found) if found else math.inf

    def budget_for(self, per_point: float) -> float:
        """Seconds measuring may cost beyond the loop's time when the loop takes ``per_point``."""
        return max(_MIN_MEASURE_S, _MEASURE_SHARE * self.total * per_point)

    def start_budget(self, base: Plan) -> None:
        self.base_time = self.median(base)
        self.budget = self.budget_for(self.base_time)

    def affordable(self) -> bool:
        return self.extra < self.budget

    def promising(self, plan: Plan) -> bool:
        """One timing of ``plan``: faster than the loop's median?"""
        return self.base_time is not None and self.sample(plan) < self.base_time


# ---------------------------------------------------------------------------------------- remembered plans
@dataclass(frozen=True)
class _KnownPlan:
    plan: Plan
    channels_last: bool
    timings: dict[str, float]
    threads: int


_PLANS: OrderedDict[tuple, _KnownPlan] = OrderedDict()
_PLANS_LOCK = threading.Lock()
_MAX_PLANS = 64


def _known_plan(key: tuple) -> _KnownPlan | None:
    with _PLANS_LOCK:
        found = _PLANS.get(key)
        if found is not None:
            _PLANS.move_to_end(key)
        return found


def _remember_plan(key: tuple, known: _KnownPlan) -> None:
    with _PLANS_LOCK:
        _PLANS[key] = known
        _PLANS.move_to_end(key)
        while len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)


def forget_plans() -> None:
    """Forget every plan this process measured (the next Evaluator of each kind measures again)."""
    with _PLANS_LOCK:
        _PLANS.clear()


def architecture_signature(model: nn.Module) -> str:
    """A short hash of ``model``'s module tree (names and classes) and its parameter and buffer shapes."""
    parts = [f"{name}:{type(m).__module__}.{type(m).__qualname__}" for name, m in model.named_modules()]
    parts += [f"{name}{tuple(t.shape)}" for name, t in model.state_dict().items()]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]
