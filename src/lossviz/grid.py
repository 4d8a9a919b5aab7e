"""Grid specifications in the reference's syntax and coarse-to-fine point orderings.

An axis is written ``"min:max:num"`` (``"-1:1:51"`` is 51 points from -1 to 1, both included), as
in ``tomgoldstein/loss-landscape``'s ``--x``/``--y`` flags. A 2D grid's values are laid out
``values[i, j] = f(x[j], y[i])`` (row = y, column = x), the reference's ``meshgrid(x, y)`` order, and
its flat index is ``k = i * nx + j``.

``"auto"`` (or ``"auto:num"``) fits an axis to the trajectory shown in the plane (:func:`auto_axis`):
its extent and the centre (0), widened by :data:`AUTO_MARGIN` of that extent on each side; without a
trajectory (random or Hessian directions) the span is :data:`AUTO_SPAN`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

AUTO_MARGIN = 0.25
"""``"auto"`` axes: the margin on each side, as a fraction of the trajectory's extent."""
AUTO_SPAN = (-1.0, 1.0)
"""``"auto"`` axes without a trajectory (random, filter-normalized directions): Li et al.'s span."""
AUTO_NUM = 21
"""``"auto"``'s number of points when not given (``"auto:51"`` gives 51)."""
MAX_POINTS = 250_000
"""Largest grid accepted (a 500x500 grid); ask for a coarser grid or evaluate tiles separately."""

AxisLike = Union[str, "Axis", Sequence[float], np.ndarray]


@dataclass(frozen=True)
class Axis:
    """``num`` evenly spaced values from ``min`` to ``max`` (``numpy.linspace``)."""

    min: float
    max: float
    num: int

    @property
    def values(self) -> np.ndarray:
        return np.linspace(self.min, self.max, self.num, dtype=np.float64)

    @property
    def spec(self) -> str:
        return f"{self.min:g}:{self.max:g}:{self.num}"

    def __len__(self) -> int:
        return self.num


def parse_axis(spec: AxisLike, name: str = "x") -> Axis:
    """Parse ``"min:max:num"`` (or an :class:`Axis`, or a ``(min, max, num)`` triple).

    Raises ``ValueError`` naming the problem and the expected form.
    """
    if isinstance(spec, Axis):
        return spec
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(
                f"grid spec {name}={spec!r} is malformed: write 'min:max:num', e.g. '-1:1:51'"
            )
        try:
            lo, hi = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(
                f"grid spec {name}={spec!r}: min and max must be numbers, e.g. '-1:1:51'"
            ) from None
        try:
            num = int(parts[2])
        except ValueError:
            raise ValueError(
                f"grid spec {name}={spec!r}: the number of points must be an integer, e.g. '-1:1:51'"
            ) from None
    else:
        vals = list(np.asarray(spec, dtype=np.float64).ravel())
        if len(vals) != 3:
            raise ValueError(
                f"grid spec {name}={spec!r}: give 'min:max:num' or a (min, max, num) triple"
            )
        lo, hi, num_f = vals
        if num_f != int(num_f):
            raise ValueError(f"grid spec {name}: the number of points must be an integer, got {num_f}")
        num = int(num_f)
    label = f"{name}={spec!r}" if isinstance(spec, str) else name
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(
            f"grid spec {label}: min and max must be finite, got {lo} and {hi}; e.g. '-1:1:51'"
        )
    if num < 1:
        raise ValueError(f"grid spec {label}: needs at least 1 point, got {num}; e.g. '-1:1:51'")
    if num > 1 and not lo < hi:
        raise ValueError(
            f"grid spec {label}: min ({lo:g}) must be below max ({hi:g}); "
            f"write e.g. '{min(lo, hi):g}:{max(lo, hi):g}:{num}'"
        )
    if num > MAX_POINTS:
        raise ValueError(
            f"grid spec {label}: {num} points is more than {MAX_POINTS}; use fewer points"
        )
    return Axis(lo, hi, num)


@dataclass(frozen=True)
class SurfaceGrid:
    """A 1D line (``y is None``) or a 2D grid of direction coefficients."""

    x: Axis
    y: Axis | None = None

    @classmethod
    def from_specs(cls, x: AxisLike, y: AxisLike | None = None) -> SurfaceGrid:
        gx = parse_axis(x, "x")
        gy = parse_axis(y, "y") if y is not None else None
        grid = cls(gx, gy)
        if grid.size > MAX_POINTS:
            raise ValueError(
                f"the grid has {grid.size} points ({gx.num} x {gy.num if gy else 1}), more than "
                f"{MAX_POINTS}; use fewer points per axis"
            )
        return grid

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        """``(nx,)`` for a line, ``(ny, nx)`` for a grid (row = y, column = x)."""
        return (self.x.num,) if self.y is None else (self.y.num, self.x.num)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def coords(self) -> np.ndarray:
        """All points as an ``(N, ndim)`` float64 array in flat order ``k = i * nx + j``."""
        xs = self.x.values
        if self.y is None:
            return xs[:, None]
        X, Y = np.meshgrid(xs, self.y.values)  # (ny, nx)
        return np.stack([X.ravel(), Y.ravel()], axis=1)

    def order(self, coarse_to_fine: bool = True) -> np.ndarray:
        """Flat indices in evaluation order; see :func:`coarse_to_fine_order`."""
        if not coarse_to_fine:
            return np.arange(self.size)
        return coarse_to_fine_order(self.shape)


def coarse_to_fine_order(shape: tuple[int, ...]) -> np.ndarray:
    """A permutation of ``range(prod(shape))`` that visits a grid coarse to fine.

    Level ``s`` (``s = 2^m, ..., 2, 1``) visits the points whose indices are all multiples of ``s``
    not visited before, so that after each level the finished points form a regular sub-grid with
    stride ``s``: any prefix of the order is already a usable, evenly spread picture. The corners and
    the last row/column are visited at the coarsest level.
    """
    shape = tuple(int(n) for n in shape)
    size = int(np.prod(shape))
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    seen = np.zeros(shape, dtype=bool)
    order: list[np.ndarray] = []
    longest = max(shape)
    stride = 1
    while stride * 2 < longest:
        stride *= 2
    while stride >= 1:
        axes = []
        for n in shape:
            idx = np.arange(0, n, stride)
            if idx[-1] != n - 1:
                idx = np.append(idx, n - 1)
            axes.append(idx)
        mesh = np.ix_(*axes)
        sub = np.zeros(shape, dtype=bool)
        sub[mesh] = True
        new = sub & ~seen
        order.append(np.flatnonzero(new))
        seen |= new
        stride //= 2
    out = np.concatenate(order)
    assert out.size == size
    return out


def is_auto(spec: object) -> bool:
    """Whether an axis spec is ``"auto"`` or ``"auto:num"``."""
    return isinstance(spec, str) and (spec.strip() == "auto" or spec.strip().startswith("auto:"))


def auto_axis(spec: str, coords: Sequence[float] | np.ndarray | None = None, name: str = "x") -> Axis:
    """The axis ``"auto"``/``"auto:num"`` stands for: from ``lo = min(min(coords), 0)`` to
    ``hi = max(max(coords), 0)`` widened by ``AUTO_MARGIN · (hi − lo)`` on each side (a zero extent: by
    ``AUTO_MARGIN`` · the largest |coordinate|, at least 0.5); :data:`AUTO_SPAN` when ``coords`` is
    None or holds no finite value. ``num`` is :data:`AUTO_NUM` unless given."""
    if not is_auto(spec):
        raise ValueError(f"grid spec {name}={spec!r} is not 'auto' or 'auto:num'")
    rest = spec.strip()[len("auto"):].lstrip(":")
    try:
        num = int(rest) if rest else AUTO_NUM
    except ValueError:
        raise ValueError(
            f"grid spec {name}={spec!r}: the number of points must be an integer, e.g. 'auto:51'") from None
    values = np.asarray([] if coords is None else coords, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return parse_axis((AUTO_SPAN[0], AUTO_SPAN[1], num), name)
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    pad = AUTO_MARGIN * (hi - lo) if hi > lo else max(0.5, AUTO_MARGIN * float(np.abs(values).max()))
    return parse_axis((lo - pad, hi + pad, num), name)


def resolve_axes(x: AxisLike | None, y: AxisLike | None,
                 coords: np.ndarray | None = None) -> tuple[AxisLike | None, AxisLike | None]:
    """``x`` and ``y`` with ``"auto"`` replaced by :func:`auto_axis` of the trajectory's plane
    coordinates ``coords`` (n, 1 or 2): column 0 for x, 1 for y; None: :data:`AUTO_SPAN`."""
    c = None if coords is None else np.asarray(coords, dtype=np.float64).reshape(len(coords), -1)

    def column(k: int) -> np.ndarray | None:
        return None if c is None or c.shape[1] <= k else c[:, k]

    rx = auto_axis(x, column(0), "x") if is_auto(x) else x  # type: ignore[arg-type]
    ry = auto_axis(y, column(1), "y") if is_auto(y) else y  # type: ignore[arg-type]
    return rx, ry
