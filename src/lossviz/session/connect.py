"""Mode connectivity in a session: a curve fitted between two checkpoints (:mod:`lossviz.connectivity`),
its loss and accuracy profile next to the straight line's, and both loss barriers; stored (the
curve's control points as safetensors) and found again."""

from __future__ import annotations

from typing import Any

import torch

from lossviz.files import read_safetensors, safetensors_bytes, write_durably
from lossviz.jobs import Job
from lossviz.session.core import SessionBase, step
from lossviz.session.project import callable_name
from lossviz.store import Checkpoint, spec_key
from lossviz.validation import Interval, Options, check

__all__ = ["ConnectOps"]


class ConnectOps(SessionBase):
    """``connect``: fit and evaluate a Bezier curve or PolyChain between two checkpoints."""

    def connect(self, a: Any, b: Any, curve: str = "bezier", *, epochs: int = 20, n_bends: int = 1,
                lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 0.0, batch_size: int = 128,
                seed: int = 0, n_points: int = 21, update_bn: bool = False, wait: bool = True) -> dict | Job:
        """Fit a ``curve`` ("bezier" or "polychain", ``n_bends`` bends) from checkpoint ``a`` to ``b`` on
        the training data (:func:`lossviz.connectivity.fit_curve`: ``epochs``, ``lr``, ``momentum``,
        ``weight_decay``, ``batch_size``, ``seed``), then evaluate it and the line at ``n_points``
        times on every split (``update_bn``: BatchNorm statistics recomputed at each point).

        Returns a dict: ``a``, ``b``, ``curve``, ``n_bends``, ``t``; ``line`` and ``path`` (each
        :meth:`lossviz.connectivity.PathProfile.to_dict`: ``t``, ``values`` per split and metric, the
        session's named metrics and functions too, ``barriers``); ``barriers`` ``{"line", "curve"}``
        (the training loss's); ``losses`` (per epoch); ``control_points`` (a ``(k+2, D)`` CPU tensor,
        the ends first and last). Stored and found again. ``wait=False``: a job on the session's worker
        (it trains), progress per epoch, whose result is the dict; a cancel stops it between steps and
        stores nothing.
        """
        check("curve", curve, Options(("bezier", "polychain")))
        ca, cb = self.checkpoint(a), self.checkpoint(b)
        if ca.id == cb.id:
            raise ValueError(f"a and b are both checkpoint {ca.id}: give two different checkpoints")
        spec = {"type": "connect", "a": ca.id, "b": cb.id, "curve": curve,
                "n_bends": check("n_bends", n_bends, Interval(int, 1, None, whole_floats=True)),
                "epochs": check("epochs", epochs, Interval(int, 1, None, whole_floats=True)),
                "lr": float(lr), "momentum": float(momentum), "weight_decay": float(weight_decay),
                "batch_size": check("batch_size", batch_size, Interval(int, 1, None, whole_floats=True)),
                "seed": int(seed), "n_points": check("n_points", n_points, Interval(int, 2, None, whole_floats=True)),
                "update_bn": bool(update_bn),
                "loss": self.loss if isinstance(self.loss, str) else callable_name(self.loss),
                "data": self.data_fingerprint()}
        if self._metric_names or self._metrics:  # only then: earlier results keep their keys
            spec["metrics"] = sorted([*self._metrics, *self._metric_names])

        def work(job: Job | None) -> dict:
            return self._connected(ca, cb, spec, job)

        if wait:
            return work(None)
        return self._submit(self._job("connect", work, f"connect checkpoints {ca.id} and {cb.id} by a {curve}"))

    def connect_plane(self, connection: dict, n: int = 21, *, margin: float = 0.2, wait: bool = True) -> Any:
        """The loss surface (train and test metrics) on the plane through the ends and the bend of a
        :meth:`connect` result, with orthonormal axes, ``n × n`` points over the three points' box
        widened by ``margin``; ``meta["trajectory"]`` and ``meta["connect"]`` hold the curve and the
        ends in plane coordinates (Garipov et al.'s figure 1; :func:`lossviz.connectivity.plane_surface`).
        ``wait=False``: a job on the quick queue (progress per chunk, cancel between chunks) whose
        result is the surface."""
        from lossviz import connectivity as C

        n = check("n", n, Interval(int, 2, None, whole_floats=True))
        curve = C.Curve(connection["curve"], torch.as_tensor(connection["control_points"]))
        data = self.eval_data()

        def work(job: Job | None) -> Any:
            def progress(_surface: Any, done: int, total: int) -> None:
                if job is not None:
                    job.update(done, total, f"{done}/{total} points")

            return C.plane_surface(self.model(connection["a"]), curve, data["train"], self.loss, n=n, margin=margin,
                                   test_data=data.get("test"), device=self.device, forward=self.forward,
                                   callback=progress,
                                   metrics=["loss", "acc", *self._extra_metrics()],
                                   cancel=job.cancel_event if job is not None else None)

        return self._quick_work("connect_plane", f"the plane of the {curve.kind} from checkpoint {connection['a']}",
                                work, wait)

    def _connected(self, ca: Checkpoint, cb: Checkpoint, spec: dict, job: Job | None) -> dict:
        from lossviz import connectivity as C

        key = spec_key(spec)
        found = self.store.find_result(key)
        if found is not None and found["path"] is not None:
            tensors, _ = read_safetensors(found["path"])
            return {**found["meta"], "control_points": tensors["points"]}
        model = self.model(ca.id)
        data = self.eval_data()
        epochs = spec["epochs"]
        step(job, 0, epochs + 1, "epochs")
        fit = C.fit_curve(model, model, self.vector(cb.id).to(self.device), data["train"], self.loss,
                          curve=spec["curve"], n_bends=spec["n_bends"], epochs=epochs, batch_size=spec["batch_size"],
                          lr=spec["lr"], momentum=spec["momentum"], weight_decay=spec["weight_decay"],
                          seed=spec["seed"], device=self.device, forward=self.forward,
                          progress=lambda e, n, v: step(job, e, n + 1, "epochs"),
                          cancel=job.cancel_event if job is not None else None)
        kw = dict(n_points=spec["n_points"], update_bn=spec["update_bn"], device=self.device, forward=self.forward,
                  metrics=["loss", "acc", *self._extra_metrics()])
        line = C.evaluate_path(model, C.Curve.through("line", *fit.curve.ends), data, self.loss, **kw)
        path = C.evaluate_path(model, fit.curve, data, self.loss, **kw)
        points = fit.curve.points.detach().cpu()
        out = {"a": ca.id, "b": cb.id, "curve": spec["curve"], "n_bends": spec["n_bends"], "t": path.t.tolist(),
               "line": line.to_dict(), "path": path.to_dict(),
               "barriers": {"line": line.barriers["train_loss"], "curve": path.barriers["train_loss"]},
               "losses": list(fit.losses), "update_bn": spec["update_bn"]}
        self.store.put_result(key, "connect", spec, suffix=".safetensors", meta=out,
                              write=lambda p: write_durably(p, safetensors_bytes({"points": points})))
        step(job, epochs + 1, epochs + 1, "epochs")
        return {**out, "control_points": points}

