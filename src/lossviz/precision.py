"""The engine's fast paths, options of :class:`lossviz.evaluate.Evaluator`.

``precision="bf16"`` runs the forward passes under
``torch.autocast(dtype=torch.bfloat16)`` (CPU and CUDA) with the loss, accuracy and sums still in
float32/float64; ``precision="tf32"`` lets CUDA matmuls and convolutions use TF32 while evaluating
(a no-op on CPU, equal to float32); ``channels_last`` stores 4-D inputs and conv weights in
``torch.channels_last`` memory format (same numbers up to float32 rounding). Their error against float32
is measured by ``benchmarks/precision.py`` and bounded in ``tests/unit/test_evaluate.py``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import torch
from torch import nn

from lossviz.batches import is_pair
from lossviz.data import EvalData

PRECISIONS = ("float32", "tf32", "bf16")

_TF32_LOCK = threading.Lock()
_TF32_USERS = 0
_TF32_SAVED: tuple[bool, bool] | None = None


@contextlib.contextmanager
def _tf32_enabled():
    """Allow TF32 in CUDA matmuls and cuDNN convolutions while inside; restore the caller's flags
    when the last user leaves.

    The flags are process-global: evaluations in several threads (e.g. a DeviceExecutor) share one
    reference count, so one leaving does not switch TF32 off under another; but any other CUDA work
    running in other threads meanwhile also computes in TF32.
    """
    global _TF32_USERS, _TF32_SAVED
    with _TF32_LOCK:
        if _TF32_USERS == 0:
            _TF32_SAVED = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        _TF32_USERS += 1
    try:
        yield
    finally:
        with _TF32_LOCK:
            _TF32_USERS -= 1
            if _TF32_USERS == 0 and _TF32_SAVED is not None:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = _TF32_SAVED
                _TF32_SAVED = None


def _check_precision(precision: str, dtype: torch.dtype) -> None:
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}: use one of {', '.join(map(repr, PRECISIONS))}"
        )
    if precision != "float32" and dtype != torch.float32:
        raise ValueError(
            f"precision={precision!r} is a fast path for float32 models but dtype={dtype}: pass "
            "dtype=torch.float32 (the default) with it, or precision='float32' for other dtypes"
        )


def _autocast_conv_forward(conv_forward: Callable, device_type: str) -> Callable:
    """``conv._conv_forward`` that computes the convolution in the autocast dtype itself.

    Autocast casts convolutions to bfloat16 in a plain call but not inside ``torch.vmap`` (the
    batching rule of ``convolution`` runs past it: torch 2.x), so a vmapped conv would stay
    float32. Here input, weight and bias are cast to bf16 explicitly and the output is cast back
    to the input's dtype (vmapped BatchNorm refuses a bf16 input with float32 weights), so both
    strategies compute the same thing: convolutions in bf16, their outputs rounded to bf16."""

    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not torch.is_autocast_enabled(device_type):
            return conv_forward(x, weight, bias)
        low = torch.get_autocast_dtype(device_type)
        bias = bias.to(low) if bias is not None else None
        with torch.autocast(device_type=device_type, enabled=False):
            return conv_forward(x.to(low), weight.to(low), bias).to(x.dtype)

    return forward


def _autocast_convs(model: nn.Module, device_type: str) -> None:
    """Make every Conv1d/2d/3d of ``model`` (a private copy) honour autocast under vmap too."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd) and hasattr(m, "_conv_forward"):
            m._conv_forward = _autocast_conv_forward(m._conv_forward, device_type)  # type: ignore[method-assign]  # a private copy's conv, patched for autocast under vmap


def _has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _resolve_channels_last(
    channels_last: str | bool, model: nn.Module, device: torch.device, input_ndim: int
) -> bool | None:
    """``"auto"``: on for CUDA models with Conv2d layers and 4-D inputs, ``None`` (measure it) for
    such models on CPU; ``True``/``False`` as given."""
    if channels_last == "auto":
        if input_ndim != 4 or not _has_conv2d(model):
            return False
        return True if device.type == "cuda" else (None if device.type == "cpu" else False)
    if not isinstance(channels_last, bool):
        raise ValueError(f"channels_last must be 'auto', True or False, got {channels_last!r}")
    if channels_last and input_ndim != 4:
        raise ValueError(
            f"channels_last=True needs 4-D image inputs (N, C, H, W), got {input_ndim}-D inputs: "
            "pass channels_last=False (or 'auto')"
        )
    return channels_last


def _inputs_in_format(data: EvalData, fmt: torch.memory_format) -> EvalData:
    """``data`` with its (4-D tensor) inputs in memory format ``fmt``."""
    b = data.batch
    if is_pair(b):
        return EvalData.of(type(b)([b[0].contiguous(memory_format=fmt), *b[1:]]))
    return EvalData.of(b.contiguous(memory_format=fmt))
