"""The first Train of a fresh kernel, with and without the Explorer's warm-up of ``torch._dynamo``.

    PYTHONPATH=src python benchmarks/first_train.py [--repeat 3] [--think 5]

Each run is a fresh Python that imports lossviz, opens a tiny project (mlp on spirals) and, as a user
would, looks at it for ``--think`` seconds before training one epoch; the "prewarm" runs start
:func:`lossviz.training.prewarm_optimizers` (what opening the Explorer does) first. Prints the median
seconds of the first training job in both cases and their ratio, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, tempfile, time
import torch
torch.set_num_threads(1)
from lossviz.session import Session
from lossviz.training import prewarm_optimizers
prewarm, think = sys.argv[1] == "1", float(sys.argv[2])
s = Session(tempfile.mkdtemp() + "/p", model="mlp", data="spirals", data_kwargs={"n": 200, "n_test": 50},
            device="cpu", hparams={"batch_size": 50, "lr": 0.05})
s.init()
if prewarm:
    prewarm_optimizers()
time.sleep(think)
t0 = time.perf_counter()
job = s.train(epochs=1)
job.wait(600)
print(json.dumps({"first_train_s": time.perf_counter() - t0, "state": job.state}))
s.close()
"""


def first_train(prewarm: bool, think: float) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, "1" if prewarm else "0", str(think)], check=True,
                         capture_output=True, text=True, cwd=tempfile.gettempdir())
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["state"] == "done", res
    return float(res["first_train_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--think", type=float, default=5.0, help="seconds between opening and the first Train")
    args = ap.parse_args()
    cold = [first_train(False, args.think) for _ in range(args.repeat)]
    warm = [first_train(True, args.think) for _ in range(args.repeat)]
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"first Train, no warm-up:   median {c:.2f} s  ({', '.join(f'{v:.2f}' for v in cold)})")
    print(f"first Train, with warm-up: median {w:.2f} s  ({', '.join(f'{v:.2f}' for v in warm)})")
    print(f"ratio (no warm-up / warm-up): {c / w:.1f}x")


if __name__ == "__main__":
    main()
