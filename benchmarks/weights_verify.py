"""The cost of checking a weight file against its stored sha256 when it is loaded (issue 13).

A ResNet-20 (CIFAR, ~0.27 M parameters) checkpoint is stored in a fresh project, then loaded, in one run,
three ways, each the best of ``--repeats`` rounds of ``--loads`` loads:

- ``plain``: the load before the check: the file read by ``safe_open`` (no hash) into a built model;
- ``verified``: ``Store.load_state_dict`` (the bytes read once, hashed, parsed from memory) into it;
- ``model``: what a user waits for, building the model and loading the verified weights
  (``Session.model``'s work: ``get_model`` + ``Store.load_state_dict`` + ``load_state_dict``).

Prints the times, ``verified / plain``, and the hash's share of a model load and of a weight load.

    .venv/bin/python benchmarks/weights_verify.py [--repeats 5] [--loads 50] [--model resnet20]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Callable

import torch

from lossviz import files
from lossviz.store import Store
from lossviz.zoo import get_model


def best_per_load(fn: Callable[[], object], loads: int, repeats: int) -> float:
    """The best, over ``repeats`` rounds, of the mean seconds of one call of ``fn`` in ``loads`` calls."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loads):
            fn()
        best = min(best, (time.perf_counter() - t0) / loads)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--model", default="resnet20")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = get_model(args.model)
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as root:
        store = Store(root)
        c = store.add_checkpoint(model.state_dict(), parent=None, kind="init")
        path = store.weights_path(c.id)
        size = path.stat().st_size

        def plain() -> None:
            model.load_state_dict(files.read_safetensors(path)[0])

        def verified() -> None:
            model.load_state_dict(store.load_state_dict(c.id))

        def built() -> None:
            get_model(args.model).load_state_dict(store.load_state_dict(c.id))

        data = path.read_bytes()
        timings = {}
        for name, fn in (("plain", plain), ("verified", verified), ("model", built),
                         ("sha256 only", lambda: hashlib.sha256(data).hexdigest())):
            fn()  # warm
            timings[name] = best_per_load(fn, args.loads, args.repeats)
        store.close()
    print(f"{args.model}: {n_params} parameters, weight file {size / 1e6:.2f} MB; "
          f"best of {args.repeats} x {args.loads}")
    for name, t in timings.items():
        print(f"  {name:12s} {t * 1e3:8.3f} ms per load")
    print(f"verified / plain load: {timings['verified'] / timings['plain']:.3f}")
    print(f"check's share of a model load ((verified - plain) / model): "
          f"{(timings['verified'] - timings['plain']) / timings['model']:.3%}")
    print(f"sha256's share of a model load (sha256 / model): {timings['sha256 only'] / timings['model']:.3%}")
    print(f"sha256's share of a verified weight load (sha256 / verified): "
          f"{timings['sha256 only'] / timings['verified']:.3%}")


if __name__ == "__main__":
    main()
