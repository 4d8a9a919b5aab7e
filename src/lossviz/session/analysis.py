"""Projections of checkpoints to 2D (layout, PCA, t-SNE, a surface's plane) and Hessian spectra
(eigenpairs, trace, density, per layer), stored in the project and found again. ``project(...,
wait=False)`` and ``hessian(..., wait=False)`` run on the quick queue, with progress."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lossviz.files import read_safetensors, safetensors_bytes, write_durably
from lossviz.jobs import Job
from lossviz.params import SpaceKind
from lossviz.session.core import step
from lossviz.session.project import callable_name
from lossviz.session.surfaces import SurfaceService
from lossviz.store import Checkpoint, spec_key
from lossviz.validation import Interval, check

PROJECTION_METHODS = ("layout", "pca", "tsne", "surface")


@dataclass
class Projection:
    """2D coordinates of checkpoints: ``coords[i]`` is checkpoint ``ids[i]``."""

    ids: list[int]
    coords: np.ndarray
    method: str
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"ids": list(self.ids), "coords": self.coords.tolist(), "method": self.method, "meta": self.meta}


class AnalysisOps(SurfaceService):
    """Projections (a surface's plane among them) and Hessians of a session."""

    # ------------------------------------------------------------------ projections
    def project(self, ids: Iterable[Any] | None = None, method: str = "layout", surface: Any = None, *,
                wait: bool = True, store: bool = True, outliers: str = "include") -> Projection | Job:
        """2D coordinates of checkpoints ``ids`` (all by default) by ``method``: "layout" (epoch x
        branch lane), "pca" (exact, Gram matrix streamed from disk), "tsne", "surface" (least
        squares in ``surface``'s plane). ``wait=False``: a job on the quick queue whose result is
        the :class:`Projection`, with progress per checkpoint read.

        ``store``: a PCA or t-SNE result is stored in the project (found again by its ids); ``False``
        computes it without storing (a view refreshed after each new checkpoint). ``outliers``:
        ``"include"`` projects every checkpoint; ``"exclude"`` leaves out of PCA, t-SNE and the
        surface's plane the diverged ones and those whose weight norm is an outlier
        (:func:`lossviz.projection.outlying`), listed in ``meta["outliers"]`` (the layout keeps them:
        it does not depend on the weights)."""
        if method not in PROJECTION_METHODS:
            raise ValueError(f"projection method {method!r} is unknown: use layout, pca, tsne or surface")
        if outliers not in ("include", "exclude"):
            raise ValueError(f"outliers={outliers!r} is unknown: use 'include' or 'exclude'")
        ckpts = self.store.checkpoints() if ids is None else [self.checkpoint(i) for i in ids]
        if method != "layout" and not ckpts:
            raise ValueError("no checkpoints to project; train first or pass ids=[...]")
        if method == "surface" and surface is None:
            raise ValueError("method='surface' needs surface= (a Surface from session.surface)")

        def work(job: Job | None) -> Projection:
            flagged = self.outliers([c.id for c in ckpts]) if outliers == "exclude" else []
            kept = ckpts if method == "layout" else [c for c in ckpts if c.id not in set(flagged)]
            if method != "layout" and not kept:
                raise ValueError(f"every one of the {len(ckpts)} checkpoints is an outlier: nothing to project; "
                                 "pass outliers='include'")
            proj = self._projection(kept, method, surface, job, store)
            if outliers == "exclude":
                proj.meta = {**proj.meta, "outliers": flagged}
            return proj

        return self._quick_work("project", f"{method} projection of {len(ckpts)} checkpoints", work, wait)

    def weight_norm(self, id: Any) -> float:
        """``‖θ‖₂`` of checkpoint ``id``'s weights (float64; inf or NaN when they are not finite),
        remembered per checkpoint (a checkpoint's weights never change)."""
        cid = self.checkpoint(id).id
        if cid not in self._weight_norms:
            self._weight_norms[cid] = float(torch.linalg.vector_norm(self.vector(cid).double()))
        return self._weight_norms[cid]

    def outliers(self, ids: Iterable[Any] | None = None) -> list[int]:
        """The checkpoints among ``ids`` (all by default) that views leave out: diverged ones and those
        whose weight norm is an outlier by :func:`lossviz.projection.outlying`."""
        from lossviz import projection as P

        ckpts = self.store.checkpoints() if ids is None else [self.checkpoint(i) for i in ids]
        far = P.outlying([self.weight_norm(c.id) for c in ckpts])
        return [c.id for c, bad in zip(ckpts, far, strict=True) if bad or c.status == "diverged"]

    def _projection(self, ckpts: list[Checkpoint], method: str, surface: Any, job: Job | None,
                    store: bool = True) -> Projection:
        if method == "layout":
            return self._layout(ckpts)
        if method == "surface":
            return self._onto_surface([c.id for c in ckpts], surface, job)
        return self._embedding([c.id for c in ckpts], method, job, store)

    def _layout(self, ckpts: list[Checkpoint]) -> Projection:
        from lossviz import projection as P

        by_id = {c.id: c for c in self.store.checkpoints()}
        bp = {b["id"]: (by_id[b["parent"]].branch if b["parent"] in by_id else None) for b in self.store.branches()}
        coords = P.layout(ckpts, branch_parents=bp)
        return Projection([c.id for c in ckpts], np.asarray(coords, dtype=np.float64), "layout", {})

    def _vectors_read(self, ids: list[int], kind: SpaceKind, job: Job | None) -> Iterator[torch.Tensor]:
        """The checkpoints' vectors one by one, read from disk (progress and cancel per read)."""
        for i, cid in enumerate(ids):
            step(job, i, len(ids), "checkpoints read")
            yield self.vector(cid, kind)
        step(job, len(ids), len(ids), "checkpoints read")

    def _embedding(self, id_list: list[int], method: str, job: Job | None, store: bool = True) -> Projection:
        """PCA or t-SNE coordinates, stored under the ids and found again."""
        from lossviz import projection as P
        from lossviz.pca import pca_gram

        key = spec_key({"type": "projection", "method": method, "ids": id_list})
        found = self.store.find_result(key)
        if found is not None:
            return Projection(id_list, np.asarray(found["meta"]["coords"], dtype=np.float64),
                              method, found["meta"].get("info", {}))

        def factory() -> Iterator[np.ndarray]:
            return (v.numpy() for v in self._vectors_read(id_list, "weights", job))

        if method == "pca":
            k = min(2, len(id_list))
            res = pca_gram(factory, n_components=k)
            coords = np.zeros((len(id_list), 2))
            coords[:, :k] = res.coords
            info = {"explained_variance_ratio": np.asarray(res.explained_variance_ratio).tolist(),
                    "explained_variance": np.asarray(res.explained_variance).tolist()}
        else:
            coords = np.asarray(P.tsne(factory), dtype=np.float64)
            info = {}
        if store:
            self.store.put_result(key, "projection", {"method": method, "ids": id_list},
                                  meta={"coords": coords.tolist(), "info": info})
        return Projection(id_list, coords, method, info)

    def _onto_surface(self, id_list: list[int], surface: Any, job: Job | None) -> Projection:
        """Least-squares coordinates of the checkpoints in a surface's plane."""
        from lossviz import projection as P

        if isinstance(surface, str):
            surface = self.load_surface(surface)
        if surface.directions is None or "center" not in surface.meta:
            raise ValueError("this surface has no stored directions or center; compute it through the session")
        kind = surface.directions.kind
        cvec = self.vector(surface.meta["center"], kind)
        vecs = torch.stack(list(self._vectors_read(id_list, kind, job)))
        d = surface.directions.vectors
        coords = np.asarray(P.onto_plane(vecs, cvec, d[0], d[1] if len(d) > 1 else None))
        if coords.shape[1] == 1:
            coords = np.concatenate([coords, np.zeros_like(coords)], axis=1)
        return Projection(id_list, coords, "surface", {"surface": surface.meta.get("key")})

    # ------------------------------------------------------------------ hessian
    def hessian(self, checkpoint: Any, k: int = 2, trace: bool = True, *, density: bool = False,
                layers: bool = False, density_steps: int = 100, wait: bool = True) -> dict | Job:
        """Curvature of the training loss at ``checkpoint`` through :mod:`lossviz.hessian`: the top-``k``
        eigenpairs (``eigenvalues``, ``residuals``, ``converged``, ``eigenvectors``), the trace
        (``trace``, ``trace_stderr``; Hutchinson), with ``density`` the eigenvalue density by SLQ
        (``density``: ``{"nodes", "weights"}`` of ``density_steps`` quadrature points, and
        ``density_trace``), with ``layers`` each layer's top eigenvalue and trace (``layers``:
        ``{name: {"eigenvalues", "trace", "trace_stderr", "numel"}}``). Stored and found again;
        ``wait=False``: a job on the quick queue whose result is the dict."""
        k = check("k", k, Interval(int, 1, None, whole_floats=True))
        density_steps = check("density_steps", density_steps, Interval(int, 2, None, whole_floats=True))
        c = self.checkpoint(checkpoint)
        spec: dict[str, Any] = {"type": "hessian", "center": c.id, "k": k, "trace": bool(trace),
                                "loss": self.loss if isinstance(self.loss, str) else callable_name(self.loss),
                                "data": self.data_fingerprint()}
        if self.forward is not None:
            spec["forward"] = callable_name(self.forward)
        if density:  # only when asked: earlier results keep their keys
            spec["density"] = density_steps
        if layers:
            spec["layers"] = True
        return self._quick_work("hessian", f"Hessian at checkpoint {c.id}",
                                lambda job: self._hessian_stored(c, spec, job), wait)

    def _hessian_stored(self, c: Checkpoint, spec: dict, job: Job | None) -> dict:
        key = spec_key(spec)
        found = self.store.find_result(key)
        if found is not None and found["path"] is not None:
            tensors, _ = read_safetensors(found["path"])
            out = dict(found["meta"])
            out["eigenvectors"] = [tensors[f"v{i}"] for i in range(len(out["eigenvalues"]))]
            return out
        out, vecs = self._hessian_of(c, spec, job)
        self.store.put_result(
            key, "hessian", spec, suffix=".safetensors", meta=out,
            write=lambda p: write_durably(p, safetensors_bytes({f"v{i}": v for i, v in enumerate(vecs)})),
        )
        out["eigenvectors"] = vecs
        return out

    def _hessian_of(self, c: Checkpoint, spec: dict, job: Job | None) -> tuple[dict, list[torch.Tensor]]:
        """(eigenvalues, residuals, convergence, trace, density, layers; the flat CPU eigenvectors) at ``c``,
        the parts as the steps of ``job``'s progress, on one operator (one kept gradient graph)."""
        from lossviz import hessian as H

        parts = ["eigenpairs", *(["trace"] if spec["trace"] else []), *(["density"] if "density" in spec else []),
                 *(["layers"] if spec.get("layers") else [])]
        op = H.HessianOperator(self.model(c.id), self.eval_data()["train"], self.loss, forward=self.forward)
        step(job, 0, len(parts), "curvature parts")
        r = H.top_eigenpairs(op, k=spec["k"])
        out: dict[str, Any] = {"checkpoint": c.id, "eigenvalues": [float(v) for v in r.eigenvalues],
                               "residuals": [float(v) for v in r.residuals], "converged": bool(r.converged)}
        for i, part in enumerate(parts[1:], start=1):
            step(job, i, len(parts), "curvature parts")
            if part == "trace":
                tr = H.trace(op)
                out["trace"], out["trace_stderr"] = float(tr.mean), float(tr.stderr)
            elif part == "density":
                d = H.density(op, n_iter=spec["density"])
                out["density"] = {"nodes": d.nodes[0].tolist(), "weights": d.weights[0].tolist()}
                out["density_trace"] = float(d.trace)
            else:
                out["layers"] = self._layers_of(op)
        step(job, len(parts), len(parts), "curvature parts")
        return out, [torch.as_tensor(v).detach().cpu().reshape(-1) for v in r.eigenvectors]

    @staticmethod
    def _layers_of(op: Any) -> dict[str, dict]:
        from lossviz import hessian as H

        eig = H.layer_eigenvalues(op, k=1)
        traces = H.layer_traces(op)
        groups = H.parameter_groups(op.model)
        return {name: {"eigenvalues": [float(v) for v in eig[name].eigenvalues], "trace": float(traces[name].mean),
                       "trace_stderr": float(traces[name].stderr),
                       "numel": sum(op.space[n].numel for n in groups[name])} for name in groups}
