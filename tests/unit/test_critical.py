"""Critical points of sampled surfaces, checked against functions whose critical points are known."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from lossviz.critical import (
    RING,
    critical_point_masks,
    critical_points,
    refine_critical_point,
    ring_sign_changes,
    surface_critical_points,
)


def grid(x, y, f):
    X, Y = np.meshgrid(x, y)  # X[i, j] = x[j], Y[i, j] = y[i]
    return f(X, Y)


def kinds_at(points):
    return sorted((p.kind, p.i, p.j) for p in points)


# grids that contain the origin exactly (odd counts over symmetric ranges) and grids that do not
GRID_WITH_ORIGIN = (np.linspace(-1, 1, 21), np.linspace(-1.2, 1.2, 25))
GRID_WITHOUT_ORIGIN = (np.linspace(-1, 1.1, 20), np.linspace(-1.2, 1.3, 24))
GRIDS = [GRID_WITH_ORIGIN, GRID_WITHOUT_ORIGIN]


def nearest(a, v):
    return int(np.argmin(np.abs(np.asarray(a) - v)))


@pytest.mark.parametrize("x,y", GRIDS)
@pytest.mark.parametrize(
    "f,kind,hess",
    [
        (lambda X, Y: X**2 + Y**2, "minimum", "minimum"),
        (lambda X, Y: -(X**2 + Y**2), "maximum", "maximum"),
        (lambda X, Y: X**2 - Y**2, "saddle", "saddle"),
        (lambda X, Y: 3 * X * Y + 0.5 * X**2, "saddle", "saddle"),  # rotated saddle, ties on diagonals
    ],
)
def test_quadratics_have_one_critical_point_at_the_origin(x, y, f, kind, hess):
    z = grid(x, y, f)
    pts = critical_points(x, y, z)
    assert len(pts) == 1, pts
    p = pts[0]
    assert p.kind == kind
    # the discrete point is the grid point nearest the origin
    assert (p.i, p.j) == (nearest(y, 0.0), nearest(x, 0.0))
    assert p.x == x[p.j] and p.y == y[p.i] and p.value == z[p.i, p.j]
    assert p.order == (1 if kind == "saddle" else 0)
    # second-order differences are exact for quadratics: the refined point is the true one
    assert p.hessian_kind == hess
    assert p.refined
    assert abs(p.x_refined) < 1e-12 and abs(p.y_refined) < 1e-12 and abs(p.value_refined) < 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refinement_is_exact_for_quadratics_on_uneven_grids(seed):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.uniform(0.05, 0.15, 30)) - 1.5
    y = np.cumsum(rng.uniform(0.05, 0.15, 28)) - 1.4
    cx, cy, c0 = rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), rng.normal()
    for a, b, c, kind in [(2.0, 0.4, 1.0, "minimum"), (-1.5, 0.3, -0.7, "maximum"), (1.0, 0.2, -2.0, "saddle")]:
        z = grid(x, y, lambda X, Y, a=a, b=b, c=c: a * (X - cx) ** 2 + b * (X - cx) * (Y - cy) + c * (Y - cy) ** 2 + c0)
        pts = critical_points(x, y, z)
        assert [p.kind for p in pts] == [kind]
        p = pts[0]
        assert p.hessian_kind == kind
        np.testing.assert_allclose([p.x_refined, p.y_refined, p.value_refined], [cx, cy, c0], atol=1e-9)
        # the Hessian eigenvalues are those of [[2a, b], [b, 2c]]
        np.testing.assert_allclose(p.eigenvalues, np.linalg.eigvalsh([[2 * a, b], [b, 2 * c]]), atol=1e-8)


SIN_MINIMA = [(math.pi / 2, -math.pi / 2), (-math.pi / 2, math.pi / 2)]
SIN_MAXIMA = [(math.pi / 2, math.pi / 2), (-math.pi / 2, -math.pi / 2)]
SIN_SADDLES = [(a, b) for a in (-math.pi, 0.0, math.pi) for b in (-math.pi, 0.0, math.pi)]


@pytest.mark.parametrize("n", [81, 80, 57, 40, 33])
def test_sin_sin_finds_every_known_critical_point_once(n):
    # on [-4, 4]^2 sin(x) sin(y) has 2 minima, 2 maxima and 9 saddles; odd n put x = 0 on the grid,
    # even n do not, and no n puts +-pi/2 or +-pi on it
    x = np.linspace(-4, 4, n)
    h = x[1] - x[0]
    z = grid(x, x, lambda X, Y: np.sin(X) * np.sin(Y))
    pts = critical_points(x, x, z)
    by_kind = {k: [p for p in pts if p.kind == k] for k in ("minimum", "maximum", "saddle")}
    for kind, truth in [("minimum", SIN_MINIMA), ("maximum", SIN_MAXIMA), ("saddle", SIN_SADDLES)]:
        found = by_kind[kind]
        assert len(found) == len(truth), (kind, [(p.x, p.y) for p in found])
        for tx, ty in truth:
            # exactly one discrete point within one grid step (diagonal) of each true critical point
            close = [p for p in found if abs(p.x - tx) <= h * 1.0001 and abs(p.y - ty) <= h * 1.0001]
            assert len(close) == 1, (kind, tx, ty)
            p = close[0]
            assert p.hessian_kind == kind
            # the refined location is far closer than the grid step
            assert math.hypot(p.x_refined - tx, p.y_refined - ty) < 0.05 * h
            assert abs(p.value - math.sin(p.x) * math.sin(p.y)) < 1e-15
    assert all(p.order == 1 for p in by_kind["saddle"])


@pytest.mark.parametrize("x,y", GRIDS)
def test_monkey_saddle_is_one_saddle_of_order_two(x, y):
    z = grid(x, y, lambda X, Y: X**3 - 3 * X * Y**2)
    pts = critical_points(x, y, z)
    assert len(pts) == 1, pts
    p = pts[0]
    assert p.kind == "saddle" and p.order == 2  # 6 sign changes around it
    assert abs(p.x) <= np.max(np.abs(np.diff(x))) and abs(p.y) <= np.max(np.abs(np.diff(y)))
    if 0.0 in x and 0.0 in y:
        assert (p.x, p.y) == (0.0, 0.0)
        # the Hessian vanishes at a monkey saddle: no quadratic model, no sub-grid location
        assert p.hessian_kind == "degenerate" and not p.refined


def test_monkey_saddle_ring_has_six_sign_changes_without_merging():
    x = y = np.linspace(-1, 1, 21)
    z = grid(x, y, lambda X, Y: X**3 - 3 * X * Y**2)
    assert ring_sign_changes(z)[10, 10] == 6
    masks = critical_point_masks(z, merge_saddles=False)
    assert masks["saddle"][10, 10] and masks["order"][10, 10] == 2


def test_constant_and_linear_surfaces_have_no_critical_points():
    x, y = np.linspace(0, 1, 9), np.linspace(0, 2, 7)
    assert critical_points(x, y, np.zeros((7, 9))) == []
    assert critical_points(x, y, grid(x, y, lambda X, Y: 2 * X - Y)) == []


def test_boundary_extrema_only_on_request():
    x, y = np.linspace(0, 1, 9), np.linspace(0, 2, 7)
    z = grid(x, y, lambda X, Y: X + 0.1 * Y)
    assert critical_points(x, y, z) == []
    pts = critical_points(x, y, z, include_boundary=True)
    assert kinds_at(pts) == [("maximum", 6, 8), ("minimum", 0, 0)]
    assert all(not p.refined for p in pts)  # no 3x3 block at a corner


# ------------------------------------------------------------------------------------------ NaN rule


def test_nan_point_is_never_critical_and_a_nan_neighbour_disqualifies_nothing():
    x, y = np.linspace(-1, 1, 21), np.linspace(-1, 1, 21)
    z = grid(x, y, lambda X, Y: (X - 0.03) ** 2 + (Y - 0.02) ** 2)
    (p,) = critical_points(x, y, z)
    i0, j0 = p.i, p.j
    # a NaN neighbour of the minimum: the minimum stays, and it is not refined (3x3 block not finite)
    z1 = z.copy()
    z1[i0 + 1, j0 - 1] = np.nan
    (q,) = critical_points(x, y, z1)
    assert (q.kind, q.i, q.j) == ("minimum", i0, j0) and not q.refined
    # the minimum itself NaN: it is not reported; the lowest finite value, next to it, becomes the
    # minimum because the NaN neighbour is skipped
    z2 = z.copy()
    z2[i0, j0] = np.nan
    pts = critical_points(x, y, z2)
    assert all((r.i, r.j) != (i0, j0) for r in pts)
    (r,) = [r for r in pts if r.kind == "minimum"]
    assert (r.i, r.j) == np.unravel_index(np.nanargmin(z2), z2.shape)
    assert max(abs(r.i - i0), abs(r.j - j0)) == 1


def test_nan_in_saddle_ring_is_skipped():
    x = y = np.linspace(-1, 1, 11)
    z = grid(x, y, lambda X, Y: X**2 - Y**2)
    z[5, 6] = np.nan  # the (0, 1) ring neighbour: above the saddle; the ring keeps 4 sign changes
    assert kinds_at(critical_points(x, y, z)) == [("saddle", 5, 5)]
    z[5, 5] = np.nan  # the saddle itself: gone
    assert [p for p in critical_points(x, y, z) if max(abs(p.i - 5), abs(p.j - 5)) <= 1] == []


def test_all_nan_and_isolated_points():
    x, y = np.linspace(0, 1, 5), np.linspace(0, 1, 4)
    assert critical_points(x, y, np.full((4, 5), np.nan)) == []
    z = np.full((4, 5), np.nan)
    z[1, 2] = 1.0  # no finite neighbour: says nothing
    assert critical_points(x, y, z) == []
    z[2, 2] = 3.0
    assert kinds_at(critical_points(x, y, z)) == [("maximum", 2, 2), ("minimum", 1, 2)]
    assert critical_points(x, y, z, min_neighbours=2) == []


def _ring_changes_bruteforce(z):
    """Independent per-point loop: ring signs with index tie-breaking, NaN skipped, circular count."""
    ny, nx = z.shape
    out = np.zeros(z.shape, dtype=int)
    for i in range(ny):
        for j in range(nx):
            if not np.isfinite(z[i, j]):
                continue
            signs = []
            for di, dj in RING:
                a, b = i + di, j + dj
                if not (0 <= a < ny and 0 <= b < nx) or not np.isfinite(z[a, b]):
                    continue
                if z[a, b] != z[i, j]:
                    signs.append(1 if z[a, b] > z[i, j] else -1)
                else:
                    signs.append(1 if a * nx + b > i * nx + j else -1)
            out[i, j] = sum(signs[k] != signs[k - 1] for k in range(len(signs))) if len(signs) > 1 else 0
    return out


@pytest.mark.parametrize("seed", range(4))
def test_ring_sign_changes_match_a_bruteforce_loop(seed):
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 4, size=(9, 11)).astype(float)  # many ties
    z[rng.random(z.shape) < 0.15] = np.nan
    np.testing.assert_array_equal(ring_sign_changes(z), _ring_changes_bruteforce(z))
    # minima / maxima against a direct check of the rule
    masks = critical_point_masks(z)
    for i in range(1, 8):
        for j in range(1, 10):
            nb = z[i - 1 : i + 2, j - 1 : j + 2].ravel()
            nb = np.delete(nb, 4)
            nb = nb[np.isfinite(nb)]
            ok = np.isfinite(z[i, j]) and nb.size >= 1
            assert masks["minimum"][i, j] == (ok and bool(np.all(nb > z[i, j])))
            assert masks["maximum"][i, j] == (ok and bool(np.all(nb < z[i, j])))


# ----------------------------------------------------------------------------------- 1D and wrappers


def test_1d_cosine():
    x = np.linspace(-4, 4, 60)  # 0 falls between two grid points whose values tie exactly
    strict = critical_points(x, None, np.cos(x))
    assert [p.kind for p in strict] == ["minimum", "minimum"]  # the tied pair is no strict maximum
    pts = critical_points(x, None, np.cos(x), ties="index")
    assert [p.kind for p in pts] == ["minimum", "minimum", "maximum"]
    assert [p.y for p in pts] == [None, None, None]
    np.testing.assert_allclose(sorted(p.x_refined for p in pts), [-math.pi, 0.0, math.pi], atol=2e-3)
    assert all(abs(p.x - p.x_refined) <= x[1] - x[0] for p in pts)


def test_surface_wrapper_and_json():
    x, y = np.linspace(-1, 1, 11), np.linspace(-1, 1, 9)
    z = grid(x, y, lambda X, Y: X**2 + Y**2)
    surf = SimpleNamespace(x=x, y=y, values={"train_loss": z, "train_acc": -z}, done=np.ones_like(z, bool))
    (p,) = surface_critical_points(surf)
    assert p.kind == "minimum"
    (q,) = surface_critical_points(surf, metric="train_acc")
    assert q.kind == "maximum"
    d = json.loads(json.dumps(p.to_dict()))
    assert d["kind"] == "minimum" and d["i"] == 4 and d["j"] == 5
    with pytest.raises(ValueError, match="test_loss"):
        surface_critical_points(surf, metric="test_loss")
    with pytest.raises(TypeError, match="Surface"):
        surface_critical_points(z)


def test_bad_input_names_the_problem():
    x, y = np.linspace(0, 1, 5), np.linspace(0, 1, 4)
    with pytest.raises(ValueError, match="transposed"):
        critical_points(x, y, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="strictly increasing"):
        critical_points(np.array([0, 1, 1, 2, 3.0]), y, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="unknown kinds"):
        critical_points(x, y, np.zeros((4, 5)), kinds=("minima",))


@pytest.mark.parametrize(
    "f,kind", [(lambda X, Y: X**2 + Y**2, "minimum"), (lambda X, Y: -np.hypot(X, Y), "maximum")]
)
def test_symmetric_extremum_between_grid_points_ties(f, kind):
    x = y = (np.arange(20) - 9.5) / 10  # exactly symmetric: the four points around the origin tie
    z = grid(x, y, f)
    assert critical_points(x, y, z) == []  # strictly below all 8 neighbours: none of the four is
    (p,) = critical_points(x, y, z, ties="index")
    assert p.kind == kind and {p.i, p.j} <= {9, 10}
    if kind == "minimum":  # quadratic: the refinement lands on the true point from any of the four
        assert abs(p.x_refined) < 1e-12 and abs(p.y_refined) < 1e-12
    with pytest.raises(ValueError, match="ties"):
        critical_points(x, y, z, ties="sos")


def test_refine_off_and_kinds_filter():
    x = y = np.linspace(-4, 4, 41)
    z = grid(x, y, lambda X, Y: np.sin(X) * np.sin(Y))
    pts = critical_points(x, y, z, kinds=("saddle",), refine=False)
    assert len(pts) == 9 and all(p.kind == "saddle" and not p.refined for p in pts)
    _, _, _, kind, eig = refine_critical_point(x, y, z, pts[0].i, pts[0].j)
    assert kind == "saddle" and eig[0] < 0 < eig[1]
