"""Critical points (minima, maxima, saddles) of a sampled 2D (or 1D) surface.

The surface is a grid of values ``z[i, j] = f(x[j], y[i])`` (row = y, column = x), NaN where a point was
not computed or diverged.

Discrete rules (on the grid values only):

- **minimum** / **maximum**: ``z[p]`` is strictly below / above every *finite* neighbour among its 8
  neighbours (``i±1``, ``j±1`` and the diagonals). A NaN neighbour disqualifies nothing (it is skipped),
  but a NaN point is never critical, and a point needs at least ``min_neighbours`` finite neighbours
  (default 1: a point with no computed neighbour says nothing). Grid-edge points are only considered
  with ``include_boundary=True`` (then compared with the neighbours they have); by default they are
  left out, because the function may keep falling outside the grid. A neighbour equal to ``z[p]``
  disqualifies ``p`` (``ties="strict"``, the default, as the rule says); ``ties="index"`` breaks ties as
  the saddle rule does (the larger flat index counts as above), so a symmetric minimum that falls
  between grid points, where two or four points tie, is still reported, once.
- **saddle**: an interior point whose ring of 8 neighbours, walked in circular order, has at least 4
  sign changes of ``z[q] - z[p]`` (a regular point has 2: one arc above, one below; an extremum 0).
  A tie ``z[q] == z[p]`` is broken by simulation of simplicity: ``q`` counts as above ``p`` when its flat
  index ``i * nx + j`` is larger (so a saddle centred in a cell, whose four corners tie in pairs, is
  still found, once). NaN neighbours carry no sign and are skipped (removing an entry from a circular
  sequence never adds sign changes, so a NaN can hide a saddle but never invents one); at least 4
  neighbours must be finite. ``order = changes / 2 - 1`` is 1 for an ordinary saddle, 2 for a monkey
  saddle, and so on.
- **merging saddles** (``merge_saddles=True``, the default): the 8-neighbour ring is not the link of a
  triangulation, so when a saddle falls between grid points (``sin(x) sin(y)`` around ``(0, pi)`` on
  most grids), or is degenerate (a monkey saddle), two or three touching grid points can each show
  >= 4 sign changes. Saddle points that touch
  (8-connected) are one saddle region, reported once: at its point of smallest finite-difference
  gradient norm (then highest order), with ``n_merged`` the region's size.

Refinement (``refine=True``, the default): at every discrete critical point whose 3x3 block is finite,
second-order finite differences (three-point Lagrange stencils, exact for quadratics, valid on uneven
spacing) give the gradient ``g`` and Hessian ``H``; one Newton step ``d = -H^{-1} g`` gives the sub-grid
location ``(x + d_x, y + d_y)`` and value ``z + g.d / 2`` of the quadratic model's stationary point, kept
when it lies within one grid step. The Hessian's eigenvalues give ``hessian_kind`` ("minimum",
"maximum", "saddle", or "degenerate" when the smaller eigenvalue magnitude is below ``1e-6`` times the
larger or ``1e-8`` times the 3x3 block's value range over the squared step, as at a monkey saddle, where
``H = 0``; then no sub-grid location is given).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lossviz.figures import default_metric

KINDS = ("minimum", "maximum", "saddle")

# The 8 neighbours as (di, dj) = (row offset, column offset), in circular order around the point.
RING = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))

# Whether each ring neighbour has a larger flat index i * nx + j than the centre (tie-breaking).
_TIE_ABOVE = np.array([di > 0 or (di == 0 and dj > 0) for di, dj in RING])

_DEGENERATE_RTOL = 1e-6


@dataclass(frozen=True)
class CriticalPoint:
    """One critical point: grid indices ``(i, j)`` (``y[i]``, ``x[j]``), its grid location and value,
    and, when refined, the sub-grid location and value of the local quadratic model's stationary point.

    For a 1D surface ``i`` is 0 and ``y`` / ``y_refined`` are None.
    """

    kind: str
    i: int
    j: int
    x: float
    y: float | None
    value: float
    order: int = 0
    x_refined: float = float("nan")
    y_refined: float | None = float("nan")
    value_refined: float = float("nan")
    hessian_kind: str = ""
    eigenvalues: tuple[float, ...] = ()
    n_merged: int = 1

    @property
    def refined(self) -> bool:
        """Whether the sub-grid location is available."""
        return bool(np.isfinite(self.x_refined))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN stays NaN; json.dumps writes it as NaN)."""
        d = asdict(self)
        d["eigenvalues"] = list(self.eigenvalues)
        return d


# --------------------------------------------------------------------------------------------- inputs


def _check_axis(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1:
        raise ValueError(f"{name} must be a 1-D array of coordinates, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} coordinates must be finite; remove NaN/inf from {name}")
    if arr.size > 1:
        d = np.diff(arr)
        if not (np.all(d > 0) or np.all(d < 0)):
            raise ValueError(f"{name} coordinates must be strictly increasing (or decreasing)")
    return arr


def check_grid(x: Any, y: Any, z: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Validate and convert a grid: ``x`` (nx,), ``y`` (ny,) or None, ``z`` (ny, nx) or (nx,) float64.

    Raises ``ValueError`` naming the mismatch (e.g. a transposed ``z``).
    """
    xa = _check_axis(x, "x")
    za = np.asarray(z, dtype=np.float64)
    if y is None:
        if za.shape != xa.shape:
            raise ValueError(
                f"1D surface: z must have shape (nx,) = {xa.shape}, got {za.shape}; "
                "for a 2D surface pass y as well"
            )
        return xa, None, za
    ya = _check_axis(y, "y")
    expected = (ya.size, xa.size)
    if za.shape != expected:
        hint = (
            " (it looks transposed: pass z.T, since z[i, j] = f(x[j], y[i]))"
            if za.shape == expected[::-1]
            else ""
        )
        raise ValueError(f"z must have shape (len(y), len(x)) = {expected}, got {za.shape}{hint}")
    return xa, ya, za


def _check_surface_like(surface: Any) -> None:
    for attr in ("x", "y", "values"):
        if not hasattr(surface, attr):
            raise TypeError(
                f"expected a lossviz Surface (with .x, .y and .values), got {type(surface).__name__} "
                f"without .{attr}; pass plain arrays to the array functions instead"
            )


def surface_arrays(surface: Any, metric: str | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(x, y, z)`` of a Surface-like object (``.x``, ``.y``, ``.values[metric]``); ``metric`` as
    :func:`lossviz.figures.default_metric` chooses it."""
    _check_surface_like(surface)
    name = default_metric(surface, metric)
    return check_grid(surface.x, surface.y, surface.values[name])


# ------------------------------------------------------------------------------------ discrete rules


def _neighbours(z: np.ndarray) -> np.ndarray:
    """(8, ny, nx) values of the 8 neighbours in RING order; NaN outside the grid."""
    ny, nx = z.shape
    p = np.full((ny + 2, nx + 2), np.nan)
    p[1:-1, 1:-1] = z
    return np.stack([p[1 + di : 1 + di + ny, 1 + dj : 1 + dj + nx] for di, dj in RING])


def ring_sign_changes(z: Any) -> np.ndarray:
    """Number of sign changes of ``z[q] - z[p]`` around the circular 8-neighbour ring of every point.

    Neighbours that are NaN or outside the grid carry no sign and are skipped; a neighbour equal to
    ``z[p]`` counts as above it when its flat index is larger (simulation of simplicity).
    Returns an int array of ``z``'s shape (0 where ``z`` is NaN).
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"z must be 2-D (ny, nx), got shape {z.shape}")
    with np.errstate(invalid="ignore"):
        diff = _neighbours(z) - z
        signs = np.sign(diff)
        tie_sign = np.where(_TIE_ABOVE, 1.0, -1.0)
        signs = np.where(diff == 0, tie_sign[:, None, None], signs)
        signs = np.nan_to_num(signs, nan=0.0)
    changes = np.zeros(z.shape, dtype=np.int64)
    last = np.zeros(z.shape)  # last nonzero sign seen, walking the ring twice (the first lap seeds it)
    for lap in range(2):
        for s in signs:
            nonzero = s != 0
            if lap == 1:
                changes += (nonzero & (last != 0) & (s != last)).astype(np.int64)
            last = np.where(nonzero, s, last)
    return changes


def critical_point_masks(
    z: Any,
    *,
    include_boundary: bool = False,
    min_neighbours: int = 1,
    merge_saddles: bool = True,
    ties: str = "strict",
    x: Any = None,
    y: Any = None,
) -> dict[str, np.ndarray]:
    """Boolean masks ``{"minimum", "maximum", "saddle"}`` of ``z``'s shape, by the discrete rules above.

    Also returns ``"order"`` (int array: saddle order ``changes / 2 - 1`` where a saddle, else 0) and
    ``"n_merged"`` (int array: size of the merged saddle region at its representative, else 0).
    ``x``, ``y`` (coordinates, default unit spacing) only matter for choosing a merged region's point.
    """
    if ties not in ("strict", "index"):
        raise ValueError(f"ties={ties!r}: choose 'strict' (equal neighbours disqualify) or 'index'")
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        return _masks_1d(z, include_boundary=include_boundary, min_neighbours=min_neighbours, ties=ties)
    if z.ndim != 2:
        raise ValueError(f"z must be 1-D (nx,) or 2-D (ny, nx), got shape {z.shape}")
    nb = _neighbours(z)
    finite_nb = np.isfinite(nb)
    n_finite = finite_nb.sum(axis=0)
    later = _TIE_ABOVE[:, None, None] if ties == "index" else np.zeros((8, 1, 1), dtype=bool)
    with np.errstate(invalid="ignore"):
        above = (nb > z) | ((nb == z) & later) | ~finite_nb
        below = (nb < z) | ((nb == z) & ~later & (ties == "index")) | ~finite_nb
    ok = np.isfinite(z) & (n_finite >= max(1, min_neighbours))
    interior = np.zeros(z.shape, dtype=bool)
    interior[1:-1, 1:-1] = True
    region = ok if include_boundary else ok & interior
    changes = ring_sign_changes(z)
    saddle = ok & interior & (n_finite >= 4) & (changes >= 4)
    order = np.where(saddle, changes // 2 - 1, 0)
    n_merged = saddle.astype(np.int64)
    if merge_saddles and saddle.any():
        saddle, n_merged = _merge_saddle_regions(saddle, order, z, x, y)
    return {
        "minimum": region & above.all(axis=0),
        "maximum": region & below.all(axis=0),
        "saddle": saddle,
        "order": np.where(saddle, order, 0),
        "n_merged": n_merged,
    }


def _merge_saddle_regions(
    saddle: np.ndarray, order: np.ndarray, z: np.ndarray, x: Any, y: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Keep one point per 8-connected saddle region: smallest gradient norm, then highest order."""
    from scipy import ndimage

    ny, nx = z.shape
    xa = np.arange(nx, dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    ya = np.arange(ny, dtype=np.float64) if y is None else np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        gy, gx = np.gradient(z, ya, xa)
    gnorm = np.nan_to_num(np.hypot(gx, gy), nan=np.inf)
    labels, n = ndimage.label(saddle, structure=np.ones((3, 3), dtype=bool))
    kept = np.zeros_like(saddle)
    n_merged = np.zeros(z.shape, dtype=np.int64)
    for lab in range(1, n + 1):
        ii, jj = np.nonzero(labels == lab)
        best = min(range(ii.size), key=lambda k: (gnorm[ii[k], jj[k]], -order[ii[k], jj[k]], ii[k], jj[k]))
        kept[ii[best], jj[best]] = True
        n_merged[ii[best], jj[best]] = ii.size
    return kept, n_merged


def _masks_1d(
    z: np.ndarray, *, include_boundary: bool, min_neighbours: int, ties: str
) -> dict[str, np.ndarray]:
    n = z.size
    p = np.full(n + 2, np.nan)
    p[1:-1] = z
    nb = np.stack([p[:-2], p[2:]])  # left (smaller index), right (larger index)
    finite_nb = np.isfinite(nb)
    idx = ties == "index"
    later = np.array([False, True])[:, None]
    with np.errstate(invalid="ignore"):
        above = (nb > z) | ((nb == z) & later & idx) | ~finite_nb
        below = (nb < z) | ((nb == z) & ~later & idx) | ~finite_nb
    ok = np.isfinite(z) & (finite_nb.sum(axis=0) >= max(1, min(min_neighbours, 2)))
    if not include_boundary:
        ok[[0, -1]] = False
    return {
        "minimum": ok & above.all(axis=0),
        "maximum": ok & below.all(axis=0),
        "saddle": np.zeros(n, dtype=bool),
        "order": np.zeros(n, dtype=np.int64),
        "n_merged": np.zeros(n, dtype=np.int64),
    }


# ---------------------------------------------------------------------------------------- refinement


def _stencils(a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """First- and second-derivative weights at ``a[k]`` on ``a[k-1], a[k], a[k+1]`` (Lagrange), and the
    larger of the two spacings."""
    h1, h2 = a[k] - a[k - 1], a[k + 1] - a[k]
    s = h1 + h2
    d1 = np.array([-h2 / (h1 * s), (h2 - h1) / (h1 * h2), h1 / (h2 * s)])
    d2 = np.array([2.0 / (h1 * s), -2.0 / (h1 * h2), 2.0 / (h2 * s)])
    return d1, d2, max(abs(h1), abs(h2))


def _classify(eig: np.ndarray, scale: float) -> str:
    """Type of a stationary point from its Hessian eigenvalues; an eigenvalue counts as zero when below
    ``1e-6`` times the largest or ``1e-8 * scale`` (the block's value range over the squared step)."""
    big = np.max(np.abs(eig))
    if np.min(np.abs(eig)) <= max(_DEGENERATE_RTOL * big, 1e-8 * scale):
        return "degenerate"
    if np.all(eig > 0):
        return "minimum"
    if np.all(eig < 0):
        return "maximum"
    return "saddle"


def refine_critical_point(
    x: Any, y: Any, z: Any, i: int, j: int
) -> tuple[float, float | None, float, str, tuple[float, ...]]:
    """Sub-grid stationary point of the local quadratic model at grid point ``(i, j)``.

    Returns ``(x_refined, y_refined, value_refined, hessian_kind, eigenvalues)``; the location and value
    are NaN (and ``hessian_kind`` "") when the 3x3 (or 3-point) block is not finite or ``(i, j)`` is on
    the edge; the location is NaN also when the Hessian is degenerate or the Newton step leaves the
    neighbouring cells. Exact for quadratic functions.
    """
    xa, ya, za = check_grid(x, y, z)
    nan = float("nan")
    if ya is None:
        if not (0 < j < xa.size - 1):
            return nan, None, nan, "", ()
        block = za[j - 1 : j + 2]
        if not np.all(np.isfinite(block)):
            return nan, None, nan, "", ()
        d1, d2, hx = _stencils(xa, j)
        g, h = float(d1 @ block), float(d2 @ block)
        kind = _classify(np.array([h]), float(np.ptp(block)) / hx**2)
        if kind == "degenerate":
            return nan, None, nan, kind, (h,)
        step = -g / h
        if abs(step) > hx:
            return nan, None, nan, kind, (h,)
        return float(xa[j] + step), None, float(za[j] + 0.5 * g * step), kind, (h,)
    if not (0 < i < ya.size - 1 and 0 < j < xa.size - 1):
        return nan, nan, nan, "", ()
    block = za[i - 1 : i + 2, j - 1 : j + 2]  # block[a, b] = z[i-1+a, j-1+b]
    if not np.all(np.isfinite(block)):
        return nan, nan, nan, "", ()
    dx1, dx2, hx = _stencils(xa, j)
    dy1, dy2, hy = _stencils(ya, i)
    gx = float(block[1] @ dx1)
    gy = float(block[:, 1] @ dy1)
    hxx = float(block[1] @ dx2)
    hyy = float(block[:, 1] @ dy2)
    hxy = float(dy1 @ block @ dx1)
    hess = np.array([[hxx, hxy], [hxy, hyy]])
    eig = np.linalg.eigvalsh(hess)
    kind = _classify(eig, float(np.ptp(block)) / (hx * hy))
    eigenvalues = (float(eig[0]), float(eig[1]))
    if kind == "degenerate":
        return nan, nan, nan, kind, eigenvalues
    grad = np.array([gx, gy])
    offset = -np.linalg.solve(hess, grad)
    if abs(offset[0]) > hx or abs(offset[1]) > hy:
        return nan, nan, nan, kind, eigenvalues
    value = float(za[i, j] + 0.5 * grad @ offset)
    return float(xa[j] + offset[0]), float(ya[i] + offset[1]), value, kind, eigenvalues


# ------------------------------------------------------------------------------------------- public


def critical_points(
    x: Any,
    y: Any,
    z: Any,
    *,
    kinds: tuple[str, ...] = KINDS,
    include_boundary: bool = False,
    min_neighbours: int = 1,
    merge_saddles: bool = True,
    ties: str = "strict",
    refine: bool = True,
) -> list[CriticalPoint]:
    """Minima, maxima and saddles of the surface ``z[i, j] = f(x[j], y[i])`` (``y=None``: 1D ``z[j]``).

    See the module docstring for the rules (NaN handling, boundary, saddle order, refinement).
    Returned sorted by kind (minima, maxima, saddles), then by value, then by ``(i, j)``.
    """
    xa, ya, za = check_grid(x, y, z)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}: choose from {KINDS}")
    masks = critical_point_masks(
        za,
        include_boundary=include_boundary,
        min_neighbours=min_neighbours,
        merge_saddles=merge_saddles,
        ties=ties,
        x=xa,
        y=ya,
    )
    out: list[CriticalPoint] = []
    for kind in kinds:
        idx = np.argwhere(masks[kind]) if za.ndim == 2 else [(0, j) for j in np.flatnonzero(masks[kind])]
        for i, j in idx:
            i, j = int(i), int(j)
            value = float(za[i, j]) if za.ndim == 2 else float(za[j])
            extra: dict[str, Any] = {}
            if refine:
                xr, yr, vr, hk, eig = refine_critical_point(xa, ya, za, i, j)
                extra = dict(x_refined=xr, y_refined=yr, value_refined=vr, hessian_kind=hk, eigenvalues=eig)
            elif ya is None:
                extra = dict(y_refined=None)
            out.append(
                CriticalPoint(
                    kind=kind,
                    i=i,
                    j=j,
                    x=float(xa[j]),
                    y=None if ya is None else float(ya[i]),
                    value=value,
                    order=int(masks["order"][i, j]) if za.ndim == 2 else 0,
                    n_merged=int(masks["n_merged"][i, j]) if kind == "saddle" else 1,
                    **extra,
                )
            )
    order = {k: n for n, k in enumerate(KINDS)}
    out.sort(key=lambda p: (order[p.kind], p.value, p.i, p.j))
    return out


def surface_critical_points(surface: Any, metric: str | None = None, **kwargs: Any) -> list[CriticalPoint]:
    """:func:`critical_points` of a Surface's metric (default ``train_loss``); keyword options as there."""
    x, y, z = surface_arrays(surface, metric)
    return critical_points(x, y, z, **kwargs)


__all__ = [
    "KINDS",
    "RING",
    "CriticalPoint",
    "check_grid",
    "critical_point_masks",
    "critical_points",
    "refine_critical_point",
    "ring_sign_changes",
    "surface_arrays",
    "surface_critical_points",
]
