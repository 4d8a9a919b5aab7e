"""The engine: evaluate loss and accuracy at K points of a model's parameter space at once.

A point ``θ`` is a flat vector of a :class:`~lossviz.params.ParamSpace`. The model is evaluated
functionally, ``torch.func.functional_call(model, {**params(θ), **buffers}, (x,))``, in ``eval()``
mode, over evaluation data held as tensors on the device and cut into data batches. For K points
at once the call runs under ``torch.vmap`` over the stacked parameter dict (``weights`` kind:
buffers shared; ``states`` kind: BatchNorm running statistics are part of the point and vmapped too).

For every point the metrics are means over the N samples::

    loss(θ) = (1/N) Σ_b  n_b · ℓ(f_θ(x_b), y_b)        (ℓ = the batch-mean loss)
    acc(θ)  = 100 · (1/N) Σ_i [argmax f_θ(x_i) = y_i]  (classification only)

Strategy ``"auto"`` measures, on the first call with enough points, candidate plans against the
plain loop over points (the baseline): other data batch sizes and ``vmap`` over K points. A plan
replaces the loop only if the median of several interleaved timings beats the loop's median by 10%;
measuring costs at most a few percent of the loop's time for the whole evaluation. The chosen plan
is remembered for the process, keyed by the model's architecture, the data's shape, device, dtype
and options, so later Evaluators of the same kind reuse it without measuring
(:attr:`Evaluator.plan_source`; :func:`~lossviz.plans.forget_plans`). The search and the memory are
:mod:`lossviz.plans`. ``strategy="loop"``/``"vmap"``
with ``batch_size`` (and ``points_per_call``) pins the plan. NaN/inf values are returned as
computed; an exception while evaluating some points gives NaN for those points.

Fast paths (``precision="bf16"`` / ``"tf32"``, ``channels_last``) are :mod:`lossviz.precision`.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from lossviz.batches import Forward, batch_size, call_model, describe_batch, slice_batch, targets_of
from lossviz.data import (
    DATA_MEMORY,
    BatchStream,
    EvalData,
    eval_source,
    forward_checked,
    loss_call_error,
)
from lossviz.jobs import JobCancelled
from lossviz.losses import (
    LossFn,
    Metric,
    MetricSpec,
    batch_totals,
    finish_totals,
    logits_of,
    metric_table,
    resolve_loss,
    scalar_value,
    shape_hint,
)
from lossviz.params import ParamSpace
from lossviz.plans import (  # noqa: F401 - available_cpus, forget_plans, Plan: importable from here too
    _MIN_POINTS_TO_MEASURE,
    Plan,
    PlanSearch,
    _KnownPlan,
    _memory_budget,
    _remember_plan,
    _Trial,
    architecture_signature,
    available_cpus,
    evaluation_threads,
    forget_plans,
    intra_op_threads,
)
from lossviz.precision import (
    _autocast_convs,
    _check_precision,
    _inputs_in_format,
    _resolve_channels_last,
    _tf32_enabled,
)
from lossviz.validation import Interval, Options, check

_LOOP_BLOCK = 256  # points per result transfer in the loop strategy


# ---------------------------------------------------------------------------------------- sums
class _Cancelled(BaseException):
    """Raised before a data batch once the evaluator's ``cancel`` is set: a BaseException, so that
    no ``except Exception`` on the way (a vmap fallback, a failed point, a plan trial) takes it for
    a failure; :meth:`Evaluator.evaluate` turns it into :class:`~lossviz.jobs.JobCancelled`."""


def _stop_inside_forward(model: nn.Module, summed: _Summed) -> None:
    """Check ``summed.cancel`` before every module of ``model`` that holds parameters (the
    evaluator's private copy), so that one large batch of a deep model stops within a layer's time,
    not a whole forward pass's (about a microsecond per module call)."""

    def stop_if_cancelled(_module: nn.Module, _args: Any) -> None:
        if summed.cancel is not None and summed.cancel.is_set():
            raise _Cancelled

    for module in model.modules():
        if next(module.parameters(recurse=False), None) is not None:
            module.register_forward_pre_hook(stop_if_cancelled)


class _Summed(nn.Module):
    """``forward(batches)`` -> per-metric sums and counts over all batches, ``[s_0, c_0, s_1, c_1, ...]``
    (:func:`lossviz.losses.batch_totals`: a sample loss sums its per-sample terms and counts
    samples, a token loss sums token terms and counts tokens; the values are
    :func:`lossviz.losses.finish_totals` of these)."""

    def __init__(
        self,
        model: nn.Module,
        table: list[Metric],
        sum_dtype: torch.dtype = torch.float64,
        autocast: tuple[str, torch.dtype] | None = None,
        forward: Forward | None = None,
    ):
        super().__init__()
        self.model = model
        self.hook = forward
        self.sum_dtype = sum_dtype
        self.autocast = autocast  # (device type, dtype) for the forward passes, or None
        self.table = table
        self.cancel: threading.Event | None = None  # set: stop before the next data batch

    def forward(self, batches: list[Any]) -> torch.Tensor:
        sums: list[torch.Tensor] | None = None
        for batch in batches:
            if self.cancel is not None and self.cancel.is_set():
                raise _Cancelled
            if self.autocast is None:
                out = call_model(self.model, batch, self.hook)
            else:  # forward in low precision; the loss and its reductions in float32 and up
                with torch.autocast(device_type=self.autocast[0], dtype=self.autocast[1]):
                    out = call_model(self.model, batch, self.hook)
                out = out.float() if isinstance(out, torch.Tensor) else out
            parts = [p.to(self.sum_dtype) for p in batch_totals(self.table, out, targets_of(batch))]  # in float64
            sums = parts if sums is None else [a + b for a, b in zip(sums, parts, strict=True)]
        assert sums is not None
        return torch.stack(sums)


# ---------------------------------------------------------------------------------------- engine
def _copy_all(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """``t.copy_(s)`` for every pair, in one fused call."""
    with torch.no_grad():
        torch._foreach_copy_(targets, sources)


class Evaluator(PlanSearch):
    """Evaluate metrics of ``model`` at points of its parameter space over fixed data.

    Parameters
    ----------
    model:
        Any ``nn.Module`` mapping an input batch to outputs; it is copied (never modified), moved to
        ``device`` and cast to ``dtype``, and evaluated in ``eval()`` mode.
    data:
        Batches of any structure (:mod:`lossviz.batches`): anything :func:`lossviz.data.as_eval_data`
        accepts, held on ``device``; or a DataLoader or re-iterable of batches, streamed batch by
        batch when it holds more than ``data_memory`` bytes (:func:`lossviz.data.eval_source`: each
        :meth:`evaluate` call reads every batch once, for all its points; ``max_batches`` keeps the
        first batches; a shuffling DataLoader is refused).
    forward:
        ``forward(model, batch) -> outputs``, overriding the calling rule of
        :func:`lossviz.batches.call_model`; the loss and metrics get ``(outputs, targets_of(batch))``.
        Where vmap cannot run the model (data-dependent control flow, in-place writes into shared
        buffers, an op without a batching rule) the loop evaluates it and :attr:`fallback` says why.
    kind:
        ``"weights"`` (parameters; buffers such as BN running statistics shared by all points) or
        ``"states"`` (the float state dict; BN running statistics are part of each point).
    loss:
        A name of :data:`lossviz.losses.LOSS_NAMES` (default ``"cross_entropy"``; ``"mse"`` on class
        labels is the reference's softmax-MSE) or a callable ``loss(outputs, targets)`` returning
        the batch mean (:func:`lossviz.losses.resolve_loss`).
    metrics:
        ``"loss"``, ``"acc"`` (percent; where an accuracy is defined: :func:`lossviz.losses.accuracy_kind`),
        ``"perplexity"`` (exp of the mean loss over all the data) and extra callables
        ``fn(outputs, targets) -> batch mean`` (or ``(name, fn)`` pairs, or a ``{name: fn}`` mapping).
    strategy:
        ``"auto"`` (measure and keep the fastest), ``"vmap"`` or ``"loop"``.
    points_per_call:
        K, the points per vmapped call (default: as many as fit memory, up to 64).
    batch_size:
        Data batch size (default: chosen by the strategy measurement within the memory budget).
    precision:
        ``"float32"`` (default), ``"tf32"`` (CUDA matmuls/convolutions in TF32 while evaluating; on
        CPU the same as float32) or ``"bf16"`` (forward passes under bfloat16 autocast; the loss,
        accuracy and sums in float32/float64). Both need ``dtype=torch.float32``. bf16 changed
        the losses by at most 1.3e-3 relative on the benchmark's MLP, LeNet and ResNet-20 (tests
        bound it by 2e-2; ``benchmarks/precision.py``); on CPU it is slower than float32.
    channels_last:
        ``"auto"`` (for models with Conv2d layers and 4-D inputs: on for CUDA; on CPU in float32
        measured with the strategy and kept where it is 5% faster), ``True`` or ``False``: hold inputs and
        conv weights in ``torch.channels_last`` memory format. Same numbers up to float32
        rounding. :attr:`channels_last` says what is in use.
    threads:
        torch intra-op threads while evaluating on CPU (set in the calling thread and restored
        afterwards). Default: :func:`evaluation_threads`' rule, measured between 1 and the CPUs
        available with the plan; :attr:`threads` says what is in use.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        *,
        kind: str = "weights",
        loss: str | LossFn = "cross_entropy",
        metrics: Iterable[MetricSpec] | Mapping[str, LossFn] = ("loss", "acc"),
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        strategy: str = "auto",
        points_per_call: int | None = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
        precision: str = "float32",
        channels_last: str | bool = "auto",
        threads: int | None = None,
        forward: Forward | None = None,
        data_memory: int | None = DATA_MEMORY,
        max_batches: int | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check("strategy", strategy, Options(("auto", "vmap", "loop")))
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch dtype such as torch.float32, got {dtype!r}")
        _check_precision(precision, dtype)
        check("points_per_call", points_per_call, Interval(int, 1, None), allow_none=True)
        check("batch_size", batch_size, Interval(int, 1, None), allow_none=True)
        check("threads", threads, Interval(int, 1, None), allow_none=True)
        if device is None:
            first = next(iter(model.parameters()), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.dtype = dtype
        self.kind = kind
        self.space = ParamSpace(model, kind)  # validates kind
        self.center = self.space.vector(model, dtype=dtype).to(self.device)

        self.model = copy.deepcopy(model).to(device=self.device, dtype=dtype).eval()
        if forward is not None and not callable(forward):
            raise TypeError(f"forward must be a callable forward(model, batch) -> outputs, got {forward!r}")
        self.forward = forward
        source = eval_source(data, max_batches=max_batches, memory=data_memory)
        # streamed data: read batch by batch at each pass (a chunk of points per batch), else in memory
        self.stream: BatchStream | None = (
            source.to(self.device, dtype) if isinstance(source, BatchStream) else None
        )
        self.data: EvalData = (
            EvalData.of(self.stream.first) if self.stream is not None
            else source.to(self.device, dtype) if isinstance(source, EvalData) else EvalData.of(source)
        )
        self.fallback: str | None = None  # why vmap was not used where it was tried
        self.precision = precision
        inputs = self.data.inputs
        input_ndim = inputs.dim() if isinstance(inputs, torch.Tensor) and self.stream is None else 0
        resolved = _resolve_channels_last(channels_last, self.model, self.device, input_ndim)
        # CPU "auto": decided with the strategy, in float32 only (a float64 surface is a reference:
        # the same numbers run after run, not a format picked by a timing)
        self._measure_channels_last = resolved is None and dtype == torch.float32
        self.channels_last = bool(resolved)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.data = _inputs_in_format(self.data, torch.channels_last)
        self.n_samples = len(self.data)  # (streamed: of the first batch until a pass counted them)
        targets = self.data.targets
        self.loss = resolve_loss(loss, targets if isinstance(targets, torch.Tensor) else None)
        self.loss_name = self.loss.name
        self._budget = memory_budget if memory_budget is not None else _memory_budget(self.device)
        with intra_op_threads(1):  # two samples: no use for more threads, and a loaded machine slows them
            self._bytes_per_sample, probe_out = self._probe()
        self.metric_table = metric_table(metrics, self.loss, probe_out, targets_of(slice_batch(self.data.batch, 0, 2)))
        self.metric_names = [m.name for m in self.metric_table]
        extra = [(m.name, m.fn) for m in self.metric_table if m.fn is not None]
        sum_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        autocast = (self.device.type, torch.bfloat16) if precision == "bf16" else None
        if autocast is not None:
            _autocast_convs(self.model, self.device.type)
        self._summed = _Summed(self.model, self.metric_table, sum_dtype, autocast, forward).eval()
        with intra_op_threads(1):
            self._check_scalar_outputs(extra, probe_out)
        self.cancel = None  # set: evaluation stops before its next data batch (JobCancelled)
        _stop_inside_forward(self.model, self._summed)

        self._names = ["model." + e.name for e in self.space.entries]
        in_space = set(self.space.names)
        self._fixed = {
            "model." + name: buf
            for name, buf in self.model.named_buffers()
            if name not in in_space
        }
        self.strategy = strategy
        self.points_per_call = points_per_call
        self.batch_size = batch_size
        self.plan: Plan | None = None
        self.plan_source: str | None = None  # "measured", "reused" (remembered) or "pinned"
        # intra-op threads while evaluating: fixed, or measured on CPU between 1 and this bound
        self.threads = evaluation_threads(self.device, threads=threads)
        self._measure_threads = threads is None and self.device.type == "cpu" and self.threads > 1
        self._wall_clock = False  # time with the wall clock (comparing thread counts)
        self.timings: dict[str, float] = {}  # candidate -> measured ms per point
        self.errors: list[str] = []
        self._vmapped = vmap(self._call_functional)
        self._sizes = [e.numel for e in self.space.entries]
        self._shapes = [e.shape for e in self.space.entries]
        self._targets = list(self.space.tensors_of(self.model).values())
        self._plan_key = (
            architecture_signature(self.model), self.space.numel, kind, describe_batch(self.data.batch),
            self.stream is not None, _hook_name(forward), str(self.device), str(dtype), precision, channels_last,
            self.loss_name, tuple(self.metric_names),
            strategy, points_per_call, batch_size, memory_budget, threads, self.threads,
        )

    # ---------------------------------------------------------------- public
    @property
    def strategy_used(self) -> str | None:
        """"vmap" or "loop" once decided (``None`` before the first evaluation)."""
        return self.plan.strategy if self.plan else None

    @property
    def points_per_call_used(self) -> int | None:
        return self.plan.points_per_call if self.plan else None

    @property
    def batch_size_used(self) -> int | None:
        return self.plan.batch_size if self.plan else None

    def evaluate(self, points: torch.Tensor, *, total: int | None = None) -> dict[str, np.ndarray]:
        """Metrics at each row of ``points`` (K, D) -> ``{name: float64 array (K,)}``; NaN on failure.

        ``total`` (optional): how many points this evaluator will see in all (e.g. the grid size
        when ``points`` is its first chunk); the auto strategy may then spend up to 5% of them
        re-evaluating points while measuring.
        """
        pts = self._as_points(points)
        # until the thread count is measured: 1 (never contending for a core)
        try:
            with self._precision_context(), intra_op_threads(1 if self._measure_threads else self.threads):
                return self._evaluate(pts, total)
        except _Cancelled:
            raise JobCancelled("cancelled before a data batch") from None

    @property
    def cancel(self) -> threading.Event | None:
        """An event checked before every data batch of every point (in memory or streamed): once set,
        :meth:`evaluate` raises :class:`~lossviz.jobs.JobCancelled` (its points stay unfinished)."""
        return self._summed.cancel

    @cancel.setter
    def cancel(self, event: threading.Event | None) -> None:
        self._summed.cancel = event

    def _precision_context(self):
        if self.precision == "tf32" and self.device.type == "cuda":
            return _tf32_enabled()
        return contextlib.nullcontext()

    def _evaluate(self, pts: torch.Tensor, total: int | None) -> dict[str, np.ndarray]:
        n = pts.shape[0]
        out = np.full((n, len(self.metric_names)), np.nan)
        done = np.zeros(n, dtype=bool)
        if n == 0:
            return self._as_dict(out)
        if self.stream is not None:
            return self._evaluate_stream(pts, total, out)
        if self.plan is None and not self._reuse_plan():
            if self.strategy == "auto" and n < _MIN_POINTS_TO_MEASURE:
                self._run_plan(self._loop_plans()[0], pts, np.arange(n), out, done)
                return self._as_dict(out)
            trial = _Trial(self, pts, out, done, total)
            self.plan = self._choose_plan(trial)
            self.plan_source = "measured" if self.strategy == "auto" else "pinned"
            if self._measure_channels_last and self.plan.strategy == "loop":
                self._choose_channels_last(trial)
            self._measure_channels_last = False
            _remember_plan(self._plan_key, _KnownPlan(self.plan, self.channels_last, dict(self.timings), self.threads))
        assert self.plan is not None
        planned = self.plan
        self._run_plan(self.plan, pts, np.flatnonzero(~done), out, done)
        if self.plan != planned:  # vmap could not run the model: remember the loop
            _remember_plan(self._plan_key, _KnownPlan(self.plan, self.channels_last, dict(self.timings), self.threads))
        return self._as_dict(out)

    def _stream_plan(self, pts: torch.Tensor, total: int | None) -> Plan:
        """The plan for streamed data: strategy and K chosen as for data in memory, measured on the
        first batch alone (its measured results are discarded: they are not over all the data)."""
        if self._reuse_plan():
            assert self.plan is not None
            return self.plan
        n = pts.shape[0]
        if self.strategy == "auto" and n < _MIN_POINTS_TO_MEASURE:
            return self._loop_plans()[0]
        pinned = self.batch_size
        self.batch_size = self.n_samples  # the stream's own batches: only strategy and K are chosen
        try:
            m = len(self.metric_names)
            plan = self._choose_plan(_Trial(self, pts, np.full((n, m), np.nan), np.zeros(n, dtype=bool), total))
        finally:
            self.batch_size = pinned
        self.plan_source = "measured" if self.strategy == "auto" else "pinned"
        _remember_plan(self._plan_key, _KnownPlan(plan, self.channels_last, dict(self.timings), self.threads))
        return plan

    def _evaluate_stream(self, pts: torch.Tensor, total: int | None, out: np.ndarray) -> dict[str, np.ndarray]:
        """One pass over the streamed batches for all rows of ``pts``: every batch is read once and
        evaluated at every point (vmapped calls of K points, or a loop), its sums accumulated per
        point in float64; a point that fails is NaN. A vmapped call that fails makes the pass start
        again with the loop (:attr:`fallback` says why). The pass must see as many samples as the
        first did (the same data in the same order)."""
        assert self.stream is not None
        if self.plan is None:
            self.plan = self._stream_plan(pts, total)
        try:
            sums, failed, seen = self._stream_pass(pts, self.plan)
        except _VmapFailed as failure:
            self._vmap_failed(failure.exc)
            self.plan = Plan("loop", 1, self.plan.batch_size)
            sums, failed, seen = self._stream_pass(pts, self.plan)
        known = self.stream.n_samples
        if known is not None and seen != known:
            raise ValueError(
                f"the data yielded {seen} samples in this pass but {known} in the first: give data that "
                "yields the same batches at every pass (no shuffling, no random augmentation)"
            )
        self.stream.n_samples = self.n_samples = seen
        ok = np.flatnonzero(~failed)
        self._store(sums[torch.as_tensor(ok, dtype=torch.long)], ok, out, np.zeros(pts.shape[0], dtype=bool))
        return self._as_dict(out)

    def _stream_pass(self, pts: torch.Tensor, plan: Plan) -> tuple[torch.Tensor, np.ndarray, int]:
        """(sums and counts (K, 2M) float64, failed points, samples seen) of one pass over the stream."""
        assert self.stream is not None
        n = pts.shape[0]
        sums = torch.zeros(n, 2 * len(self.metric_table), dtype=torch.float64)  # (sum, count) per metric
        failed = np.zeros(n, dtype=bool)
        seen = 0
        for batch in self.stream:
            if self.cancel is not None and self.cancel.is_set():
                raise JobCancelled(f"cancelled after {seen} streamed samples")
            seen += batch_size(batch)
            if plan.strategy == "vmap":
                for start in range(0, n, plan.points_per_call):
                    block = slice(start, start + plan.points_per_call)
                    try:
                        sums[block] += self._stream_vmap(pts[block], batch)
                    except Exception as exc:
                        raise _VmapFailed(exc) from exc
            else:
                self._stream_loop(pts, batch, sums, failed)
        return sums, failed, seen

    @torch.no_grad()
    def _stream_vmap(self, pts: torch.Tensor, batch: Any) -> torch.Tensor:
        self._cur: list[Any] | None = [batch]
        try:
            return self._vmapped(pts).to("cpu", torch.float64)
        finally:
            self._cur = None

    @torch.no_grad()
    def _stream_loop(self, pts: torch.Tensor, batch: Any, sums: torch.Tensor, failed: np.ndarray) -> None:
        for i, p in enumerate(pts):
            if failed[i]:
                continue
            try:
                sums[i] += self._call_inplace(p, [batch]).to("cpu", torch.float64)
            except Exception as exc:  # noqa: BLE001 - this point becomes NaN
                failed[i] = True
                self._note_error(exc)

    def _vmap_failed(self, exc: Exception) -> None:
        """Record why vmap could not run the model (:attr:`fallback`; the loop takes over)."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if self.fallback is None:
            self.fallback = (f"vmap cannot run this model ({type(exc).__name__}: {text[:300]}); "
                             "the points were evaluated one after another (loop)")
        if len(self.errors) < 100:
            self.errors.append(f"vmap call failed, evaluating with the loop: {type(exc).__name__}: {exc}")

    def _set_channels_last(self, on: bool) -> None:
        """Hold the conv weights and the inputs in channels-last (``on``) or contiguous format."""
        fmt = torch.channels_last if on else torch.contiguous_format
        self.model.to(memory_format=fmt)  # parameters keep their identity (``.data`` is swapped)
        self.data = _inputs_in_format(self.data, fmt)
        self._targets = list(self.space.tensors_of(self.model).values())
        self.channels_last = on

    def evaluate_one(self, vec: torch.Tensor) -> dict[str, float]:
        """Metrics at one point (a vector of the space)."""
        res = self.evaluate(torch.as_tensor(vec).reshape(1, -1))
        return {k: float(v[0]) for k, v in res.items()}

    def __repr__(self) -> str:
        return (
            f"Evaluator(kind={self.kind!r}, samples={self.n_samples}, metrics={self.metric_names}, "
            f"device={self.device}, dtype={self.dtype}, precision={self.precision!r}, "
            f"channels_last={self.channels_last}, plan={self.plan})"
        )

    # ---------------------------------------------------------------- evaluation
    def _as_points(self, points: torch.Tensor) -> torch.Tensor:
        pts = torch.as_tensor(points)
        if pts.dim() == 1:
            pts = pts.reshape(1, -1)
        if pts.dim() != 2 or pts.shape[1] != self.space.numel:
            raise ValueError(
                f"points must have shape (K, {self.space.numel}) for this {self.kind} space, "
                f"got {tuple(pts.shape)}"
            )
        return pts.to(device=self.device, dtype=self.dtype)

    def _batches(self, batch_size: int) -> list[Any]:
        return self.data.split(batch_size)

    def _split(self, vec: torch.Tensor) -> list[torch.Tensor]:
        """The space's tensors of ``vec`` (views), in order; works under vmap."""
        lead = tuple(vec.shape[:-1])
        return [
            part.reshape(lead + shape)
            for part, shape in zip(vec.split(self._sizes, dim=-1), self._shapes, strict=True)
        ]

    def _call_functional(self, vec: torch.Tensor) -> torch.Tensor:
        """Sums (M,) at one point: ``functional_call`` with the point's tensors (vmapped over K)."""
        # (channels_last: the inputs are channels-last; the vmapped weights stay contiguous, as
        # torch.vmap cannot restride them: NYI in torch 2.x)
        params = dict(zip(self._names, self._split(vec), strict=True))
        params.update(self._fixed)
        return functional_call(self._summed, params, (self._cur,))

    def _call_inplace(self, vec: torch.Tensor, batches) -> torch.Tensor:
        """Sums (M,) at one point: the point is copied into the private model copy, then run."""
        _copy_all(self._targets, self._split(vec))
        return self._summed(batches)

    @torch.no_grad()
    def _eval_vmap(self, pts: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Sums (K, M) for the rows of ``pts`` in one vmapped call."""
        self._cur = self._batches(batch_size)
        try:
            return self._vmapped(pts)
        finally:
            self._cur = None

    @torch.no_grad()
    def _eval_loop(self, pts: torch.Tensor, batch_size: int) -> list[torch.Tensor | Exception]:
        """Sums (M,) per row of ``pts``, one point after another (an exception where one failed)."""
        batches = self._batches(batch_size)
        results: list[torch.Tensor | Exception] = []
        for p in pts:
            try:
                results.append(self._call_inplace(p, batches))
            except Exception as exc:  # noqa: BLE001 - this point becomes NaN
                results.append(exc)
        return results

    def _eval_block(self, plan: Plan, pts: torch.Tensor) -> torch.Tensor:
        """Sums (K, M) for the rows of ``pts``; raises if any point fails."""
        if plan.strategy == "vmap":
            return self._eval_vmap(pts, plan.batch_size)
        results = self._eval_loop(pts, plan.batch_size)
        for r in results:
            if isinstance(r, Exception):
                raise r
        return torch.stack(results)  # type: ignore[arg-type]

    def _store(self, sums: torch.Tensor, idx: np.ndarray, out: np.ndarray, done: np.ndarray) -> None:
        out[idx] = finish_totals(self.metric_table, sums.detach().to("cpu", torch.float64).numpy())
        done[idx] = True

    def _store_loop(self, results, idx: np.ndarray, out: np.ndarray, done: np.ndarray) -> None:
        ok = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        for r in results:
            if isinstance(r, Exception):
                self._note_error(r)
        if ok:
            self._store(torch.stack([results[i] for i in ok]), idx[ok], out, done)
        done[idx] = True  # tried; failures stay NaN

    def _run_plan(
        self, plan: Plan, pts: torch.Tensor, idx: np.ndarray, out: np.ndarray, done: np.ndarray
    ) -> None:
        """Evaluate rows ``idx``: vmapped calls of ``plan.points_per_call`` points (a failed call is
        retried point by point; when the loop evaluates points vmap could not, the loop takes over
        for good: :attr:`fallback`) or a loop; points that fail stay NaN."""
        step = plan.points_per_call if plan.strategy == "vmap" else _LOOP_BLOCK
        for start in range(0, len(idx), step):
            block = idx[start : start + step]
            if plan.strategy == "vmap":
                try:
                    self._store(self._eval_vmap(pts[block], plan.batch_size), block, out, done)
                    continue
                except Exception as exc:  # noqa: BLE001 - retried one point at a time below
                    self._vmap_failed(exc)
                results = self._eval_loop(pts[block], plan.batch_size)
                self._store_loop(results, block, out, done)
                if not all(isinstance(r, Exception) for r in results):  # vmap, not the model, failed
                    plan = self.plan = Plan("loop", 1, plan.batch_size)
                continue
            self._store_loop(self._eval_loop(pts[block], plan.batch_size), block, out, done)

    def _note_error(self, exc: Exception) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        if len(self.errors) < 100:
            self.errors.append(msg)
        warnings.warn(f"lossviz: a point could not be evaluated and is NaN ({msg})", RuntimeWarning, stacklevel=2)

    def _as_dict(self, out: np.ndarray) -> dict[str, np.ndarray]:
        return {name: out[:, i].copy() for i, name in enumerate(self.metric_names)}

    # ---------------------------------------------------------------- probing
    @torch.no_grad()
    def _probe(self) -> tuple[int, Any]:
        """One forward pass on 2 samples -> (bytes of activations per sample, the outputs).

        The bytes are those of every module's output, times 3 for functional intermediates."""
        total = [0]

        def hook(_m, _inp, output):
            if isinstance(output, torch.Tensor):
                total[0] += output.numel() * output.element_size()

        handles = [m.register_forward_hook(hook) for m in self.model.modules()]
        try:
            output = self._probe_forward()
        finally:
            for h in handles:
                h.remove()
        per_sample = total[0] / max(1, min(2, self.n_samples))
        # functional ops (activations, residual sums, the loss) add to the module outputs
        return int(per_sample * 3) + 1, output

    def _probe_forward(self) -> Any:
        """The model on the first 2 samples by the calling rule; a ValueError naming the batch's
        structure and the fix (``forward=``) when it cannot take them."""
        inputs = self.data.inputs
        if isinstance(inputs, torch.Tensor) and self.forward is None:
            try:
                return self.model(inputs[:2])
            except Exception as exc:
                raise ValueError(
                    f"the model cannot run on the evaluation inputs of shape "
                    f"{tuple(inputs.shape[1:])} per sample: {type(exc).__name__}: {exc}"
                ) from exc
        return forward_checked(self.model, slice_batch(self.data.batch, 0, 2), self.forward)

    @torch.no_grad()
    def _check_scalar_outputs(self, extra: list[tuple[str, LossFn]], out: Any) -> None:
        """The loss on the first 2 samples at the model's own point, before any work: a loss that
        fails there (e.g. reads ``batch["labels"]`` the batch lacks, or a named loss given a dict
        batch) or returns more than one number raises a ValueError naming the problem, instead of a
        NaN at every grid point. A metric returning more than one number is named too (a metric
        that fails is reported per point)."""
        batch = slice_batch(self.data.batch, 0, 2)
        y = targets_of(batch)
        hint = shape_hint(self.loss.name, out, y) if self.loss.per_sample is not None else None
        if hint is not None:  # a named loss that would fail (or mislead) at every point
            raise ValueError(f"loss={self.loss.name!r} does not fit outputs of shape "
                             f"{list(logits_of(out).shape[1:])} per sample: {hint}")
        try:
            if self.loss.per_sample is not None and isinstance(out, torch.Tensor) and isinstance(y, torch.Tensor):
                value = self.loss.per_sample(out, y).sum() / batch_size(batch)
            else:
                value = scalar_value(self.loss.mean(out, y), "the loss")
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - the loss cannot take these outputs and targets
            clear = loss_call_error(exc, batch, f"the loss {self.loss.name!r}")
            if clear is not None:
                raise clear from None
            raise ValueError(
                f"the loss {self.loss.name!r} cannot take the model's outputs ({_describe(out)}) and the "
                f"targets {describe_batch(y)} ({type(exc).__name__}: {exc}): give loss=a callable "
                "loss(outputs, targets_or_batch) returning the batch mean (a mapping batch is passed whole)"
            ) from None
        del value
        for name, fn in extra:
            try:
                value = fn(out, y)
            except Exception:  # noqa: BLE001 - a failing point is reported per point
                continue
            scalar_value(value, f"metric {name!r}")

class _VmapFailed(Exception):
    """A vmapped call failed (``exc``): the model cannot run under vmap."""

    def __init__(self, exc: Exception):
        super().__init__(str(exc))
        self.exc = exc


def _describe(out: Any) -> str:
    return describe_batch(out) if not isinstance(out, torch.Tensor) else f"shape {list(out.shape)}"


def _hook_name(forward: Forward | None) -> str | None:
    """A ``forward`` hook's name for the plan key (the same hook: the same plan)."""
    if forward is None:
        return None
    return f"{getattr(forward, '__module__', '')}.{getattr(forward, '__qualname__', type(forward).__qualname__)}"
