"""Directions in parameter space: random (filter-normalized), target, PCA, custom.

All directions are flat 1-D tensors over a :class:`~lossviz.params.ParamSpace` (the same layout as a
point of that space). The rules follow ``tomgoldstein/loss-landscape`` (``net_plotter.py``,
``projection.py``):

* a random direction draws ``torch.randn(shape)`` per tensor, in ``parameters()`` order (weights) or
  ``state_dict()`` order (states, the integer ``num_batches_tracked`` counters included in the draw so
  that the random stream lines up), then normalizes each tensor;
* every tensor with ``dim <= 1`` (biases, BatchNorm parameters and running statistics) is zeroed when
  ``ignore="biasbn"``, and otherwise set to the center's own value (what the reference does);
* ``filter`` normalization: for each slice ``f`` along dimension 0 of a weight tensor,
  ``d_f <- d_f * ||w_f|| / (||d_f|| + 1e-10)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lossviz.jsonable import to_builtin
from lossviz.params import ParamSpace
from lossviz.pca import pca_gram

Normalization = Literal["filter", "layer", "model", "weight", "dfilter", "dlayer", "none"]
NORMALIZATIONS: tuple[str, ...] = ("filter", "layer", "model", "weight", "dfilter", "dlayer", "none")
IGNORES: tuple[str, ...] = ("biasbn", "none")
METHODS: tuple[str, ...] = ("random", "pca", "target", "hessian", "custom")
SOURCES: tuple[str, ...] = ("random", "pca", "hessian", "target", "given")
NAMED: tuple[str, ...] = ("random", "pca", "hessian")  # the directions a name gives

_FILTER_EPS = 1e-10  # the reference's epsilon in d_f * ||w_f|| / (||d_f|| + 1e-10)


# ---------------------------------------------------------------------------------------- containers
@dataclass
class DirectionSet:
    """One or two directions (flat vectors over a space of ``kind``) and how they were made."""

    vectors: list[torch.Tensor]
    kind: str = "weights"
    normalization: str | None = "filter"
    ignore: str | None = "biasbn"
    seed: int | None = None
    method: str = "random"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.vectors, torch.Tensor):
            self.vectors = list(self.vectors) if self.vectors.dim() == 2 else [self.vectors]
        else:
            self.vectors = list(self.vectors)
        if not 1 <= len(self.vectors) <= 2:
            raise ValueError(f"a DirectionSet holds 1 or 2 directions, got {len(self.vectors)}")
        n = {int(v.numel()) for v in self.vectors}
        if len(n) != 1 or any(v.dim() != 1 for v in self.vectors):
            raise ValueError(
                "directions of a DirectionSet must be flat vectors of one length, got shapes "
                f"{[tuple(v.shape) for v in self.vectors]}"
            )
        if self.kind not in ("weights", "states"):
            raise ValueError(f"unknown direction kind {self.kind!r}: use 'weights' or 'states'")
        if self.method not in METHODS:
            raise ValueError(f"unknown direction method {self.method!r}: use one of {METHODS}")

    @property
    def ndim(self) -> int:
        return len(self.vectors)

    @property
    def numel(self) -> int:
        return int(self.vectors[0].numel())

    def stacked(self) -> torch.Tensor:
        """The directions as a ``(ndim, D)`` tensor."""
        return torch.stack(self.vectors)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (everything but the vectors)."""
        return {
            "kind": self.kind,
            "normalization": self.normalization,
            "ignore": self.ignore,
            "seed": self.seed,
            "method": self.method,
            "ndim": self.ndim,
            "numel": self.numel,
            **{k: to_builtin(v) for k, v in self.meta.items()},
        }


@dataclass
class PCADirections:
    """PCA of a trajectory around ``center`` (rows ``w_i - center``), as the reference computes it.

    ``directions`` is ``(k, D)`` (sklearn's ``components_``, biasbn entries zeroed when asked),
    ``coords`` is ``(n, k)``: each ``w_i - center`` projected onto the directions (least squares).
    """

    directions: torch.Tensor
    explained_variance_ratio: np.ndarray
    singular_values: np.ndarray
    explained_variance: np.ndarray
    coords: np.ndarray
    center: torch.Tensor

    def to_direction_set(self, kind: str = "weights", ignore: str | None = None) -> DirectionSet:
        return DirectionSet(
            vectors=list(self.directions),
            kind=kind,
            normalization=None,
            ignore=ignore,
            method="pca",
            meta={
                "explained_variance_ratio_": self.explained_variance_ratio.tolist(),
                "singular_values_": self.singular_values.tolist(),
                "explained_variance_": self.explained_variance.tolist(),
            },
        )


# ---------------------------------------------------------------------------------------- checks
def _check_vector(space: ParamSpace, v: torch.Tensor, what: str) -> None:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(v).__name__}")
    if v.dim() != 1 or v.numel() != space.numel:
        raise ValueError(
            f"{what} has shape {tuple(v.shape)} but this {space.kind} space is a flat vector of "
            f"{space.numel} entries; build it with space.vector(model) or as_direction(space, ...)"
        )


def check_direction(vec: torch.Tensor, what: str) -> torch.Tensor:
    """``vec`` when it can span an axis of a surface (finite, not zero); else ValueError saying why,
    naming the direction as ``what`` (e.g. ``"direction x"``)."""
    # a finite sum has finite entries (a NaN or an infinity makes the sum one); the entries are counted, a
    # pass 50x slower on a large model, only when it is not (it may only have overflowed)
    bad = int((~torch.isfinite(vec)).sum()) if vec.is_floating_point() and not torch.isfinite(vec.sum()) else 0
    if bad:
        raise ValueError(f"{what} has {bad} NaN or infinite entries (of {vec.numel()}): give a finite direction")
    if not bool(vec.any()):
        raise ValueError(
            f"{what} is zero (all {vec.numel()} entries are 0): a surface along it would be flat by "
            "construction; give a non-zero direction"
        )
    return vec


def check_normalization(normalization: str | None) -> str:
    norm = "none" if normalization in (None, "") else normalization
    if norm not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}: use one of {NORMALIZATIONS}")
    return norm


def check_ignore(ignore: str | None) -> str:
    ig = "none" if ignore in (None, "") else ignore
    if ig not in IGNORES:
        raise ValueError(f"unknown ignore rule {ignore!r}: use 'biasbn' or None")
    return ig


# ---------------------------------------------------------------------------------------- normalization
@torch.no_grad()
def normalize_direction(
    direction: torch.Tensor,
    center: torch.Tensor,
    space: ParamSpace,
    normalization: str | None = "filter",
    ignore: str | None = "biasbn",
) -> torch.Tensor:
    """Rescale ``direction`` tensor by tensor against ``center`` (returns a new vector).

    For tensors with ``dim > 1`` (``w`` the center's tensor, ``d`` the direction's, ``f`` a slice
    along dimension 0):

    * ``filter``: ``d_f <- d_f * ||w_f|| / (||d_f|| + 1e-10)``
    * ``layer``: ``d <- d * ||w|| / ||d||``
    * ``model``: all weight tensors together scaled so that ``||d|| = ||w||`` over them
    * ``weight``: ``d <- d * w`` (elementwise)
    * ``dfilter``: ``d_f <- d_f / (||d_f|| + 1e-10)``
    * ``dlayer``: ``d <- d / ||d||``
    * ``none``: unchanged.

    Tensors with ``dim <= 1``: ``ignore="biasbn"`` sets them to 0, otherwise to the center's values
    (``net_plotter.normalize_directions_for_weights``). ``model`` is not in the reference.
    Norms are accumulated in float64.
    """
    norm = check_normalization(normalization)
    ig = check_ignore(ignore)
    _check_vector(space, direction, "direction")
    _check_vector(space, center, "center")
    out = direction.detach().clone()
    center = center.detach().to(device=out.device, dtype=out.dtype)
    for e in space.entries:
        d = out[e.slice]
        w = center[e.slice]
        if e.dim <= 1:
            if ig == "biasbn":
                d.zero_()
            else:
                d.copy_(w)
            continue
        if norm in ("none", "model"):
            continue
        d2 = d.view(e.shape[0], -1)
        w2 = w.view(e.shape[0], -1)
        if norm == "filter":
            wn = w2.double().norm(dim=1)
            dn = d2.double().norm(dim=1)
            d2.mul_((wn / (dn + _FILTER_EPS)).to(d2.dtype).unsqueeze(1))
        elif norm == "dfilter":
            dn = d2.double().norm(dim=1)
            d2.mul_((1.0 / (dn + _FILTER_EPS)).to(d2.dtype).unsqueeze(1))
        elif norm == "layer":
            dn = float(d.double().norm())
            d.mul_(float(w.double().norm()) / dn if dn > 0 else 0.0)
        elif norm == "dlayer":
            dn = float(d.double().norm())
            d.mul_(1.0 / dn if dn > 0 else 0.0)
        elif norm == "weight":
            d.mul_(w)
    if norm == "model":
        multi = ~space.mask("1d").to(out.device)
        dn = float(out[multi].double().norm())
        wn = float(center[multi].double().norm())
        out[multi] *= wn / dn if dn > 0 else 0.0
    return out


def filter_normalize(
    direction: torch.Tensor, center: torch.Tensor, space: ParamSpace, ignore: str | None = "biasbn"
) -> torch.Tensor:
    """``normalize_direction(direction, center, space, "filter", ignore)``."""
    return normalize_direction(direction, center, space, "filter", ignore)


# ---------------------------------------------------------------------------------------- random
def seeded_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        if seed is not None:
            raise ValueError("give either seed or generator, not both")
        return generator
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def random_gaussian(
    space: ParamSpace, *, seed: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Unnormalized Gaussian vector, drawn tensor by tensor exactly as the reference does.

    ``seed=s`` gives what ``torch.manual_seed(s); [torch.randn(t.size()) for t in tensors]`` gives,
    with ``tensors`` = ``parameters()`` (weights) or ``state_dict().values()`` (states: the integer
    ``num_batches_tracked`` entries are drawn too, then dropped). Drawn on the CPU in float32.
    """
    g = seeded_generator(seed, generator)
    if space.kind == "weights":
        return torch.cat([torch.randn(e.shape, generator=g).reshape(-1) for e in space.entries]) \
            if space.entries else torch.zeros(0)
    shapes = getattr(space, "state_shapes", None) or {}
    in_space = {e.name: e.shape for e in space.entries}
    drawn: dict[str, torch.Tensor] = {}
    for name in space.state_names:
        shape = in_space[name] if name in in_space else shapes.get(name, ())
        drawn[name] = torch.randn(shape, generator=g)
    if not space.entries:
        return torch.zeros(0)
    return torch.cat([drawn[e.name].reshape(-1) for e in space.entries])


def random_direction(
    space: ParamSpace,
    center: torch.Tensor,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    normalization: str | None = "filter",
    ignore: str | None = "biasbn",
) -> torch.Tensor:
    """A normalized random direction around ``center`` (same dtype and device as ``center``).

    Draw with :func:`random_gaussian` (reproduces the reference's draw for the same seed), then
    :func:`normalize_direction`. Pass one ``generator`` to draw several directions in sequence (the
    reference draws x then y from one stream).
    """
    check_normalization(normalization)
    check_ignore(ignore)
    _check_vector(space, center, "center")
    d = random_gaussian(space, seed=seed, generator=generator)
    d = d.to(device=center.device, dtype=center.dtype)
    return normalize_direction(d, center, space, normalization, ignore)


def random_directions(
    space: ParamSpace,
    center: torch.Tensor,
    n: int = 2,
    *,
    seed: int | None = None,
    normalization: str | None = "filter",
    ignore: str | None = "biasbn",
) -> DirectionSet:
    """``n`` (1 or 2) random directions drawn in sequence from one generator seeded ``seed``."""
    g = seeded_generator(seed, None)
    vecs = [
        random_direction(space, center, generator=g, normalization=normalization, ignore=ignore)
        for _ in range(n)
    ]
    return DirectionSet(
        vecs, kind=space.kind, normalization=check_normalization(normalization),
        ignore=None if check_ignore(ignore) == "none" else ignore, seed=seed, method="random",
    )


# ---------------------------------------------------------------------------------------- others
def target_direction(
    space: ParamSpace | None, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """The direction from point ``a`` to point ``b``: ``b - a`` (weights or states vectors)."""
    if space is not None:
        _check_vector(space, a, "start point a")
        _check_vector(space, b, "end point b")
    elif a.shape != b.shape:
        raise ValueError(f"points have different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return b.detach() - a.detach().to(device=b.device, dtype=b.dtype)


def orthogonalize(d2: torch.Tensor, d1: torch.Tensor) -> torch.Tensor:
    """Gram–Schmidt: ``d2 - (<d2, d1> / <d1, d1>) d1`` (dot products in float64)."""
    if d1.shape != d2.shape:
        raise ValueError(f"directions have different shapes {tuple(d1.shape)} and {tuple(d2.shape)}")
    a = d1.detach().double()
    nn_ = float(a @ a)
    if nn_ == 0.0:
        raise ValueError("cannot orthogonalize against a zero direction")
    coef = float(d2.detach().double() @ a) / nn_
    return (d2.detach().double() - coef * a).to(d2.dtype)


def as_direction(
    space: ParamSpace, value: Any, *, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """A user-given direction as a flat vector of ``space``.

    Accepts a flat vector (tensor or array), a mapping name -> tensor (a full ``state_dict``
    included: entries outside the space are ignored), or a sequence of tensors in the space's order
    (for states also the reference's full ``state_dict()`` order with ``num_batches_tracked``).
    Errors name the first tensor that is missing or whose shape differs, with both shapes.
    """
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or value.numel() != space.numel:
            raise ValueError(
                f"direction vector has shape {tuple(value.shape)}, expected ({space.numel},) for this "
                f"{space.kind} space; pass a flat vector, a name->tensor mapping or a list of tensors"
            )
        out = value.detach()
        return out.to(dtype) if dtype is not None else out
    if isinstance(value, Mapping):
        missing = [e.name for e in space.entries if e.name not in value]
        if missing:
            raise ValueError(
                f"direction has no tensor {missing[0]!r} ({len(missing)} of {len(space.entries)} "
                f"missing); it must name every {space.kind} tensor of the model"
            )
        tensors = [value[e.name] for e in space.entries]
        names = space.names
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        seq = list(value)
        if len(seq) == len(space.entries):
            tensors, names = seq, space.names
        elif space.kind == "states" and len(seq) == len(space.state_names):
            keep = set(space.names)
            pairs = [(n, t) for n, t in zip(space.state_names, seq, strict=True) if n in keep]
            names = [n for n, _ in pairs]
            tensors = [t for _, t in pairs]
        else:
            raise ValueError(
                f"direction has {len(seq)} tensors but this {space.kind} space has "
                f"{len(space.entries)}; give one tensor per entry in space.names order"
            )
    else:
        raise TypeError(
            f"cannot make a direction from {type(value).__name__}: pass a flat tensor, a mapping "
            "name->tensor (e.g. a state_dict) or a list of tensors"
        )
    parts = []
    for name, e, t in zip(names, space.entries, tensors, strict=True):
        t = torch.as_tensor(np.asarray(t)) if not isinstance(t, torch.Tensor) else t
        if tuple(t.shape) != e.shape:
            raise ValueError(
                f"direction tensor {name!r} has shape {list(t.shape)} but the model's is "
                f"{list(e.shape)}; the direction belongs to another architecture"
            )
        parts.append(t.detach().reshape(-1))
    if not parts:
        return torch.zeros(0, dtype=dtype or torch.float32)
    out_dtype = dtype or (parts[0].dtype if parts[0].is_floating_point() else torch.float32)
    return torch.cat([p.to(device=parts[0].device, dtype=out_dtype) for p in parts])


# ---------------------------------------------------------------------------------------- PCA
def pca_directions(
    vectors: torch.Tensor | Sequence[torch.Tensor],
    center: torch.Tensor | None = None,
    n_components: int = 2,
    *,
    ignore: torch.Tensor | str | None = None,
    space: ParamSpace | None = None,
) -> PCADirections:
    """PCA directions of a trajectory (``projection.setup_PCA_directions`` in the reference).

    Rows ``m_i = w_i - center`` (``center`` defaults to the last vector, the final model); entries
    selected by ``ignore`` (a boolean mask, or ``"biasbn"`` with ``space``: every ``dim <= 1``
    tensor) are set to 0 in the rows and in the directions. The directions are the principal axes
    of the rows centered on their mean (what sklearn ``PCA(n_components).components_`` gives, with
    its sign rule), computed exactly in float64 from the rows' Gram matrix by
    :func:`lossviz.pca.pca_gram`. ``coords[i]`` solves ``min_c ||directions.T c - m_i||``
    (least squares; the plain dot product when the directions are orthonormal).
    """
    mat = _stacked_rows(vectors)
    n, dim = mat.shape
    if n < 2:
        raise ValueError(f"PCA needs at least 2 trajectory points, got {n}")
    if not 1 <= n_components <= min(n, dim):
        raise ValueError(
            f"n_components={n_components} must be between 1 and min(points, dimensions)="
            f"{min(n, dim)}"
        )
    out_dtype = mat.dtype if mat.is_floating_point() else torch.float32
    c = mat[-1] if center is None else center.detach().reshape(-1)
    if c.numel() != dim:
        raise ValueError(f"center has {c.numel()} entries, trajectory vectors have {dim}")
    rows = (mat.double().cpu() - c.double().cpu()).numpy()
    mask = _ignore_mask(ignore, space, dim)
    if mask is not None:
        rows[:, mask] = 0.0
    pca = pca_gram(rows, n_components, return_components=True, sign="sklearn", method="gram")  # exact, as documented
    comps = np.array(pca.components, dtype=np.float64)
    if mask is not None:
        comps[:, mask] = 0.0
    coords = np.linalg.lstsq(comps.T, rows.T, rcond=None)[0].T
    return PCADirections(
        directions=torch.from_numpy(comps).to(out_dtype),
        explained_variance_ratio=np.asarray(pca.explained_variance_ratio, dtype=np.float64),
        singular_values=np.asarray(pca.singular_values, dtype=np.float64),
        explained_variance=np.asarray(pca.explained_variance, dtype=np.float64),
        coords=coords,
        center=c.to(out_dtype),
    )


def _stacked_rows(vectors: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """A trajectory as one ``(n, D)`` tensor (rows: the flat vectors)."""
    if isinstance(vectors, torch.Tensor):
        if vectors.dim() != 2:
            raise ValueError(f"vectors must be (n, D), got shape {tuple(vectors.shape)}")
        return vectors.detach()
    vs = [v.detach().reshape(-1) for v in vectors]
    if len({v.numel() for v in vs}) > 1:
        raise ValueError(f"trajectory vectors have different lengths {sorted({v.numel() for v in vs})}")
    return torch.stack(vs) if vs else torch.zeros(0, 0)


def _ignore_mask(ignore, space: ParamSpace | None, dim: int) -> np.ndarray | None:
    if ignore is None or (isinstance(ignore, str) and ignore in ("", "none")):
        return None
    if isinstance(ignore, str):
        if ignore != "biasbn":
            raise ValueError(f"unknown ignore rule {ignore!r}: use 'biasbn', a boolean mask or None")
        if space is None:
            raise ValueError("ignore='biasbn' needs space= to know which entries are 1-D")
        m = space.mask("1d").numpy()
    else:
        m = np.asarray(ignore.cpu() if isinstance(ignore, torch.Tensor) else ignore, dtype=bool)
    if m.shape != (dim,):
        raise ValueError(f"ignore mask has shape {m.shape}, expected ({dim},)")
    return m


def project_onto(
    points: torch.Tensor, center: torch.Tensor, directions: torch.Tensor | Sequence[torch.Tensor]
) -> np.ndarray:
    """Coordinates ``c`` of ``points - center`` in the plane of ``directions`` (least squares).

    ``points`` is ``(n, D)`` or ``(D,)``; returns ``(n, k)`` float64 (the reference's ``lstsq``
    projection; equal to its ``cos`` projection for orthonormal directions).
    """
    dirs = torch.stack(list(directions)) if not isinstance(directions, torch.Tensor) else directions
    pts = points.reshape(-1, dirs.shape[-1]).detach().double().cpu()
    rows = (pts - center.detach().reshape(1, -1).double().cpu()).numpy()
    a = dirs.detach().double().cpu().numpy().T
    return np.linalg.lstsq(a, rows.T, rcond=None)[0].T
