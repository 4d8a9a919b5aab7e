"""Cancelling a surface takes effect within 2 s on every model of the zoo on CPU (issue 13): the
engine checks the cancel event before every data batch and before every parameterized module of
its private model copy, not only between chunks of grid points."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import lossviz
from lossviz.losses import logits_of
from lossviz.zoo import get_model, list_models

CANCEL_WITHIN_S = 2.0
N_SAMPLES = 512


def _inputs(name: str, model: torch.nn.Module) -> torch.Tensor:
    """Random inputs of the shape the zoo model takes (tried in turn on 2 samples)."""
    g = torch.Generator().manual_seed(0)
    candidates = [torch.randn(N_SAMPLES, *shape, generator=g) for shape in [(3, 32, 32), (1, 28, 28), (2,)]]
    candidates.append(torch.randint(0, 20, (N_SAMPLES, 16), generator=g))
    for x in candidates:
        try:
            with torch.no_grad():
                model(x[:2])
        except Exception:  # noqa: BLE001 - not this model's input shape
            continue
        return x
    raise AssertionError(f"no input shape fits zoo model {name!r}")


def squared_logits(outputs, _targets) -> torch.Tensor:
    """A loss every zoo model's outputs fit (the test is about time, not values)."""
    return logits_of(outputs).float().pow(2).mean()


@pytest.mark.timeout(600)
def test_cancel_takes_effect_within_2_s_on_every_zoo_model():
    torch.manual_seed(0)
    late = {}
    for name in list_models():
        model = get_model(name).eval()
        x = _inputs(name, model)
        data = (x, torch.zeros(N_SAMPLES, dtype=torch.long))
        cancel = threading.Event()
        result: dict = {}

        def run(model=model, data=data, cancel=cancel, result=result) -> None:
            try:
                result["surface"] = lossviz.surface(model, data, x="-1:1:41", y="-1:1:41", loss=squared_logits,
                                                    cancel=cancel, progress=False)
            except BaseException as exc:  # noqa: BLE001 - reported below
                result["error"] = exc

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        time.sleep(1.0)  # into the evaluation (the plan's trials or the first chunk)
        asked = time.perf_counter()
        cancel.set()
        worker.join(60)
        took = time.perf_counter() - asked
        assert not worker.is_alive(), f"{name}: still running 60 s after cancel"
        assert "error" not in result, f"{name}: {result.get('error')!r}"
        surface = result["surface"]
        big = sum(p.numel() for p in model.parameters()) > 100_000  # a whole grid takes minutes: it is cut short
        assert surface.meta["cancelled"] == (not surface.complete), name
        assert surface.meta["cancelled"] or not big, f"{name}: finished its 41 x 41 grid in a second"
        if took > CANCEL_WITHIN_S:
            late[name] = round(took, 2)
        print(f"{name}: cancelled in {took:.2f} s ({surface.n_done}/{surface.done.size} points done)")
    assert not late, f"cancel took longer than {CANCEL_WITHIN_S} s: {late}"
