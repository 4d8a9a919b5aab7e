"""The engine's fast paths (lossviz.precision). Their numbers against float32 are checked through the engine in
tests/unit/test_evaluate.py (bf16 close to float32 but not identical, tf32 and channels-last equal)."""

from __future__ import annotations

import pytest
import torch

from lossviz.precision import PRECISIONS, _check_precision, _tf32_enabled


def test_tf32_context_sets_and_restores_the_flags_with_nested_users():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        with _tf32_enabled():
            with _tf32_enabled():
                assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
            assert torch.backends.cuda.matmul.allow_tf32  # the outer user still holds it
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_precision_options_are_checked_with_their_fix():
    for p in PRECISIONS:
        _check_precision(p, torch.float32)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        _check_precision("fp8", torch.float32)
    with pytest.raises(ValueError, match=r"pass dtype=torch\.float32"):
        _check_precision("bf16", torch.float64)
    _check_precision("float32", torch.float64)
