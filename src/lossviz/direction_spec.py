"""One parsed description of a surface's directions: :class:`DirectionSpec`.

What a user passes as ``directions`` (``"random"``, ``"pca"``, ``"hessian"``, a checkpoint, a
vector, a pair of those, a :class:`~lossviz.directions.DirectionSet`) is parsed once, with its rules
(normalization, ignore, seed, space kind, the trajectory's checkpoints). The description gives both
the JSON-able fields a stored result's key holds (:meth:`DirectionSpec.key`) and the direction
vectors (:meth:`DirectionSpec.vectors` for directions that need only the model,
:meth:`DirectionSpec.build` for those that need a project through a :class:`DirectionResolver`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from lossviz.directions import (
    NAMED,
    DirectionSet,
    as_direction,
    check_direction,
    check_ignore,
    check_normalization,
    pca_directions,
    random_direction,
    random_directions,
    seeded_generator,
)
from lossviz.params import ParamSpace, SpaceKind, space_kind
from lossviz.store import Checkpoint, refuse_foreign, tensor_sha
from lossviz.store import checkpoint_id as _checkpoint_id

__all__ = ["DirectionResolver", "DirectionSpec", "check_direction_set"]


class DirectionResolver(Protocol):
    """What :meth:`DirectionSpec.build` needs from a project (a :class:`~lossviz.session.Session`)."""

    @property
    def loss(self) -> Any:
        """The loss (a name or a callable) Hessian directions are computed for."""

    def vector(self, id: int, kind: SpaceKind) -> torch.Tensor:
        """Checkpoint ``id`` as a flat CPU vector of the ``kind`` space."""

    def model(self, id: int) -> nn.Module:
        """The model with checkpoint ``id``'s weights."""

    def trajectory(self, center: int) -> list[int]:
        """The checkpoints PCA directions are fitted on by default (the center's lineage)."""

    def train_data(self) -> Any:
        """The training data Hessian directions are computed on."""


def _describe(directions: Any) -> Any:
    """The JSON-able description of given directions that defines them (a stored result's key)."""
    if isinstance(directions, str):
        return directions
    tid = _checkpoint_id(directions)
    if tid is not None:
        return {"target": tid}
    if isinstance(directions, torch.Tensor):
        if directions.dim() == 2:
            return [{"vector": tensor_sha(v)} for v in directions]
        return {"vector": tensor_sha(directions)}
    if isinstance(directions, (tuple, list)) and 1 <= len(directions) <= 2:
        return [_describe(d) for d in directions]
    if isinstance(directions, DirectionSet):
        return {"set": [tensor_sha(v) for v in directions.vectors], "kind": directions.kind}
    raise TypeError(f"cannot use {type(directions).__name__} as surface directions")


def _as_tensors(value: Any) -> Any:
    """``value`` with numpy arrays (also inside a pair) as tensors."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (tuple, list)):
        return type(value)(_as_tensors(v) for v in value)
    return value


def _is_direction_like(value: Any, space: ParamSpace) -> bool:
    """Whether one item of a sequence is a whole direction (else the sequence is one direction given
    tensor by tensor)."""
    if isinstance(value, torch.Tensor):
        return value.dim() == 1 and value.shape[0] == space.numel
    return isinstance(value, (Mapping, DirectionSet)) or _checkpoint_id(value) is not None


def _parts(given: Any, space: ParamSpace) -> list[Any]:
    """Given directions as a list of parts, each one direction (a DirectionSet stays whole)."""
    if isinstance(given, torch.Tensor) and given.dim() == 2:
        return list(given)
    if isinstance(given, (tuple, list)) and 1 <= len(given) <= 2 and all(
        _is_direction_like(v, space) for v in given
    ):
        return list(given)
    return [given]


def _rules(value: Any, n: int) -> tuple[Any, ...]:
    """One normalization / ignore rule per direction (a single rule is used for all)."""
    rules = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(rules) != n:
        raise ValueError(f"{len(rules)} rules given for {n} direction(s): give one, or one per direction")
    return rules


def check_direction_set(ds: DirectionSet, space: ParamSpace, ndim: int) -> DirectionSet:
    """``ds`` if it fits ``space`` and a ``ndim``-D surface, else ValueError naming the mismatch."""
    if ds.kind != space.kind:
        raise ValueError(
            f"the directions are {ds.kind!r} directions but the surface is computed in the "
            f"{space.kind!r} space: pass kind={ds.kind!r}"
        )
    if ds.numel != space.numel:
        raise ValueError(
            f"the directions have {ds.numel} entries but the model's {space.kind} space has "
            f"{space.numel}: they belong to another architecture"
        )
    _check_count(ds.ndim, ndim)
    return ds


def _check_count(given: int, ndim: int) -> None:
    if given != ndim:
        raise ValueError(
            f"{given} direction(s) given for a {ndim}D surface: "
            + ("pass y='min:max:num' for a 2D grid" if given == 2 else "give two directions for a 2D grid")
        )


@dataclass(frozen=True, eq=False)
class DirectionSpec:
    """One parsed description of a surface's directions: where they come from and their rules.

    ``source`` is ``"random"`` (drawn, seeded ``seed``, normalized by ``normalization`` with the
    ``ignore`` rule), ``"pca"`` (of the trajectory ``checkpoints``, by default the center's lineage),
    ``"hessian"`` (the top eigenvectors at the center), ``"target"`` (towards checkpoints) or
    ``"given"`` (vectors, state dicts or a :class:`DirectionSet`, used as given). :meth:`key` is the
    JSON-able description a stored result's key holds; :meth:`vectors` builds directions that need
    only the model's space, :meth:`build` all of them through a :class:`DirectionResolver`.
    """

    source: str
    ndim: int
    kind: str = "weights"
    normalization: Any = "filter"
    ignore: Any = "biasbn"
    seed: int | None = 0
    checkpoints: tuple[int, ...] | None = None
    given: Any = None
    center: int | None = None

    @classmethod
    def parse(
        cls,
        directions: Any,
        ndim: int,
        *,
        normalization: str | Sequence[str | None] | None = "filter",
        ignore: str | Sequence[str | None] | None = "biasbn",
        seed: int | None = 0,
        kind: str = "weights",
        checkpoints: Sequence[Any] | None = None,
        center: Any = None,
    ) -> DirectionSpec:
        """The description of what a user passes as ``directions`` for an ``ndim``-D surface.

        ``directions``: ``"random"``, ``"pca"``, ``"hessian"``, a checkpoint (or its id), a vector
        (tensor or array), a ``(2, D)`` tensor, a state dict, a pair of those, or a
        :class:`DirectionSet`. ``normalization`` and ``ignore`` (one rule, or one per direction)
        apply to random directions; ``ignore`` also to PCA's. ``center`` is the checkpoint the
        surface is around (needed by :meth:`build`).
        """
        center_id = None if center is None else _checkpoint_id(center)
        if center is not None and center_id is None:
            raise TypeError(f"center must be a checkpoint or checkpoint id, got {type(center).__name__}")
        _same_project(center, directions, checkpoints)
        common: dict[str, Any] = dict(ndim=int(ndim), kind=kind, normalization=normalization, ignore=ignore,
                                      seed=seed, center=center_id)
        if isinstance(directions, str):
            if directions not in NAMED:
                raise ValueError(
                    f"unknown directions {directions!r}: use 'random', 'pca', 'hessian', a checkpoint id, "
                    "a vector, a pair of those or a DirectionSet"
                )
            if directions == "random":  # one rule, or one per direction
                _rules(normalization, ndim)
                _rules(ignore, ndim)
            ids = None
            if directions == "pca" and checkpoints is not None:
                ids = tuple(_pca_id(c) for c in checkpoints)
                _check_trajectory(ids, ndim)
            return cls(directions, checkpoints=ids, **common)
        given = _as_tensors(directions)
        parts = list(given) if isinstance(given, (tuple, list)) else [given]
        _refuse_degenerate(given, parts, center_id)
        targets = [_checkpoint_id(p) is not None for p in parts]
        source = "target" if parts and all(targets) else "given"
        return cls(source, given=given, **common)

    # ---------------------------------------------------------------------------------- the key
    def key(self, resolver: DirectionResolver | None = None) -> dict[str, Any]:
        """The JSON-able fields of a stored result's key that define these directions.

        ``{"directions", "normalization", "ignore", "seed", "kind"}``: the rules only where they
        change the directions (normalization for random ones, ignore for random and PCA ones, the
        seed for random and Hessian ones). PCA directions without ``checkpoints`` name the center's
        trajectory, which ``resolver`` gives.
        """
        if self.source in ("random", "hessian"):
            directions: Any = self.source
        elif self.source == "pca":
            directions = {"pca": list(self.trajectory(resolver)), "ignore": self.ignore}
        else:
            directions = _describe(self.given)
        return {
            "directions": directions,
            "normalization": _jsonable_rule(self.normalization) if self.source == "random" else None,
            "ignore": _jsonable_rule(self.ignore) if self.source in ("random", "pca") else None,
            "seed": _seed(self.seed) if self.source in ("random", "hessian") else None,
            "kind": self.kind,
        }

    def trajectory(self, resolver: DirectionResolver | None = None) -> tuple[int, ...]:
        """The checkpoints of PCA directions: ``checkpoints``, else the center's trajectory."""
        if self.checkpoints is not None:
            return self.checkpoints
        if resolver is None or self.center is None:
            raise ValueError("PCA directions of the center's trajectory need the center and a session")
        ids = tuple(int(i) for i in resolver.trajectory(self.center))
        _check_trajectory(ids, self.ndim)
        return ids

    # ---------------------------------------------------------------------------------- the vectors
    def vectors(self, space: ParamSpace, center: torch.Tensor) -> DirectionSet:
        """Random or given directions over ``space`` around the flat vector ``center``.

        Random directions are drawn in sequence from one generator seeded ``seed`` (x then y, like
        the reference) in ``center``'s dtype; given ones are used as given. PCA, Hessian and target
        directions need a project: see :meth:`build`.
        """
        if self.source == "random":
            return _checked(self._random(space, center))
        if self.source == "given":
            return _checked(self._given(space, center, None, keep_dtype=True)[0])
        raise ValueError(
            f"{self.source} directions need a project's checkpoints: use Session.surface, or pass "
            "'random', a DirectionSet, a vector, a pair of vectors or a state dict"
        )

    def build(
        self, resolver: DirectionResolver, *, model: nn.Module | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[DirectionSet, dict[str, Any]]:
        """The directions and the extra meta they bring (PCA: the trajectory's coordinates).

        ``model`` is the center's model when the caller has it (else ``resolver.model(center)``);
        random directions are drawn around the center in ``dtype`` (the surface's, as
        :func:`~lossviz.landscape.compute_surface` draws them).
        """
        if self.center is None:
            raise ValueError("DirectionSpec.build needs the surface's center: parse(..., center=...)")
        model = resolver.model(self.center) if model is None else model
        space = ParamSpace(model, self.kind)
        if self.source == "random":
            ds, extra = self._random(space, space.vector(model, dtype=dtype).detach().cpu()), {}
        else:
            center = space.vector(model).detach().cpu()
            if self.source == "pca":
                ds, extra = self._pca(resolver, space, center)
            elif self.source == "hessian":
                ds, extra = self._hessian(resolver, model), {}
            else:
                ds, extra = self._given(space, center, resolver, keep_dtype=False)
        return _checked(ds, extra.get("targets")), extra

    def _random(self, space: ParamSpace, center: torch.Tensor) -> DirectionSet:
        norms, ignores = _rules(self.normalization, self.ndim), _rules(self.ignore, self.ndim)
        if len(set(norms)) == 1 and len(set(ignores)) == 1:
            return random_directions(space, center, self.ndim, seed=self.seed, normalization=norms[0],
                                     ignore=ignores[0])
        g = seeded_generator(self.seed, None)
        vecs = [random_direction(space, center, generator=g, normalization=n, ignore=i)
                for n, i in zip(norms, ignores, strict=True)]
        return DirectionSet(vecs, kind=space.kind, normalization=check_normalization(norms[0]),
                            ignore=None if check_ignore(ignores[0]) == "none" else ignores[0],
                            seed=self.seed, method="random")

    def _pca(self, resolver: DirectionResolver, space: ParamSpace, center: torch.Tensor):
        ids = self.trajectory(resolver)
        vecs = torch.stack([resolver.vector(i, space_kind(self.kind)) for i in ids])
        pca = pca_directions(vecs, center=center, n_components=self.ndim,
                             ignore="biasbn" if self.ignore == "biasbn" else None, space=space)
        ds = pca.to_direction_set(kind=self.kind, ignore=self.ignore)
        return ds, {"trajectory": {"ids": list(ids), "coords": np.asarray(pca.coords).tolist()},
                    "explained_variance_ratio": np.asarray(pca.explained_variance_ratio).tolist()}

    def _hessian(self, resolver: DirectionResolver, model: nn.Module) -> DirectionSet:
        from lossviz import hessian

        if self.kind != "weights":
            raise ValueError("Hessian directions live in the weights space: pass kind='weights'")
        vecs = hessian.eigenvector_directions(model, resolver.train_data(), self.ndim, resolver.loss,
                                              seed=self.seed)
        return DirectionSet([v.detach().cpu().float() for v in vecs], kind=self.kind, normalization=None,
                            ignore=None, method="hessian")

    def _given(
        self, space: ParamSpace, center: torch.Tensor, resolver: DirectionResolver | None, *, keep_dtype: bool
    ) -> tuple[DirectionSet, dict[str, Any]]:
        """Given and target directions: each part a vector (a checkpoint: the direction to it)."""
        parts = _parts(self.given, space)
        sets = [p for p in parts if isinstance(p, DirectionSet)]
        if sets:
            if len(parts) != 1:
                raise ValueError("a DirectionSet holds all the directions: pass it alone")
            return check_direction_set(sets[0], space, self.ndim), {}
        vecs, targets = [], []
        for part in parts:
            tid = _checkpoint_id(part)
            if tid is not None:
                if resolver is None:
                    raise TypeError("a checkpoint as a direction needs a project: use Session.surface")
                vecs.append(resolver.vector(tid, space_kind(self.kind)) - center)
            else:
                vec = as_direction(space, part, dtype=None if keep_dtype else center.dtype)
                vecs.append(vec if keep_dtype else vec.cpu())
            targets.append(tid)
        _check_count(len(vecs), self.ndim)
        method = "target" if all(t is not None for t in targets) else "custom"
        ds = DirectionSet(vecs, kind=space.kind, normalization=None, ignore=None, method=method)
        return ds, ({"targets": targets} if any(t is not None for t in targets) else {})


def _same_project(center: Any, directions: Any, checkpoints: Sequence[Any] | None) -> None:
    """Refuse a Checkpoint record (a direction's target, a PCA checkpoint) of another project than
    the center's."""
    if not isinstance(center, Checkpoint):
        return
    parts = list(directions) if isinstance(directions, (tuple, list)) else [directions]
    for value in [*parts, *(checkpoints or ())]:
        refuse_foreign(value, center.project, f"the project of the surface's center (checkpoint {center.id})")


AXES = ("x", "y")


def _checked(ds: DirectionSet, targets: Sequence[int | None] | None = None) -> DirectionSet:
    """``ds`` when each of its directions is finite and non-zero (else ValueError naming it; a
    direction towards a checkpoint with the centre's weights says so)."""
    for k, vec in enumerate(ds.vectors):
        tid = targets[k] if targets is not None and k < len(targets) else None
        towards = "" if tid is None else f" (towards checkpoint {tid}, which has the centre's weights)"
        check_direction(vec, f"direction {AXES[k]}{towards}")
    return ds


def _refuse_degenerate(given: Any, parts: list[Any], center_id: int | None) -> None:
    """What :meth:`DirectionSpec.parse` can refuse before any work: a direction towards the centre
    itself, and a given tensor (flat, or ``(2, D)``) that is zero or not finite. The others (pairs,
    state dicts, DirectionSets, targets) are checked once built and fitted to the model
    (:func:`_checked`)."""
    for k, part in enumerate(parts):
        tid = _checkpoint_id(part)
        if tid is not None and tid == center_id:
            raise ValueError(
                f"direction {AXES[min(k, 1)]} points to checkpoint {tid}, the surface's centre itself: the "
                "direction to it is zero; give another checkpoint"
            )
    if isinstance(given, torch.Tensor) and given.dim() in (1, 2) and given.numel():
        for k, vec in enumerate(given if given.dim() == 2 else [given]):
            check_direction(vec, f"direction {AXES[min(k, 1)]}")


def _pca_id(value: Any) -> int:
    tid = _checkpoint_id(value)
    if tid is None:
        raise TypeError(f"expected a checkpoint or checkpoint id, got {type(value).__name__} {value!r}")
    return tid


def _check_trajectory(ids: Sequence[int], ndim: int) -> None:
    if len(ids) < max(2, ndim):
        raise ValueError(
            f"PCA directions need at least {max(2, ndim)} checkpoints, got {len(ids)}: "
            "train the branch longer or pass checkpoints=[...]"
        )


def _seed(seed: int | None) -> int | None:
    return None if seed is None else int(seed)


def _jsonable_rule(rule: Any) -> Any:
    return list(rule) if isinstance(rule, (tuple, list)) else rule
