"""lossviz.grid: axis parsing (and its error messages), grid shapes and flat order, coarse-to-fine order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lossviz.grid import MAX_POINTS, Axis, SurfaceGrid, coarse_to_fine_order, parse_axis

# ---------------------------------------------------------------------------------------------- parse_axis


@pytest.mark.parametrize(
    "spec,lo,hi,num",
    [
        ("-1:1:51", -1.0, 1.0, 51),
        ("0:2.5:6", 0.0, 2.5, 6),
        ("-1e-2:1e-2:3", -0.01, 0.01, 3),
        (" -1 : 1 : 5 ", -1.0, 1.0, 5),  # float() and int() accept surrounding spaces
        ("0.5:0.5:1", 0.5, 0.5, 1),  # one point: min == max is allowed
        ((-2, 3, 11), -2.0, 3.0, 11),
        ([-2.0, 3.0, 11.0], -2.0, 3.0, 11),
        (np.array([0.0, 1.0, 4.0]), 0.0, 1.0, 4),
    ],
)
def test_parse_axis_accepts_the_reference_syntax_and_triples(spec, lo, hi, num):
    axis = parse_axis(spec)
    assert axis == Axis(lo, hi, num)
    assert isinstance(axis.num, int)
    assert len(axis) == num
    np.testing.assert_array_equal(axis.values, np.linspace(lo, hi, num))
    assert axis.values.dtype == np.float64


def test_axis_values_include_both_ends_evenly_spaced():
    values = parse_axis("-1:1:5").values
    np.testing.assert_array_equal(values, [-1.0, -0.5, 0.0, 0.5, 1.0])


def test_an_axis_passes_through_unchanged():
    axis = Axis(-3.0, 3.0, 7)
    assert parse_axis(axis) is axis


@pytest.mark.parametrize("spec", ["-1:1:51", "0:2.5:6", "-0.25:0.75:3", "1:1:1"])
def test_spec_text_round_trips(spec):
    axis = parse_axis(spec)
    assert axis.spec == spec
    assert parse_axis(axis.spec) == axis


@pytest.mark.parametrize(
    "spec,words",
    [
        ("1:2", "is malformed: write 'min:max:num'"),
        ("-1:1:5:7", "is malformed: write 'min:max:num'"),
        ("", "is malformed"),
        ("a:1:3", "min and max must be numbers"),
        ("-1:b:3", "min and max must be numbers"),
        ("-1:1:x", "the number of points must be an integer"),
        ("-1:1:2.5", "the number of points must be an integer"),
        ("nan:1:3", "min and max must be finite"),
        ("-1:inf:3", "min and max must be finite"),
        ("-1:1:0", "needs at least 1 point, got 0"),
        ("-1:1:-4", "needs at least 1 point, got -4"),
        ("1:-1:5", "min (1) must be below max (-1); write e.g. '-1:1:5'"),
        ("2:2:3", "min (2) must be below max (2)"),
        (f"0:1:{MAX_POINTS + 1}", f"{MAX_POINTS + 1} points is more than {MAX_POINTS}"),
        ((0, 1), "give 'min:max:num' or a (min, max, num) triple"),
        ((0, 1, 2, 3), "give 'min:max:num' or a (min, max, num) triple"),
        ((0, 1, 2.5), "the number of points must be an integer, got 2.5"),
        ((1, 0, 3), "min (1) must be below max (0)"),
        ((0, 1, 0), "needs at least 1 point"),
    ],
)
def test_parse_axis_errors_name_the_problem(spec, words):
    with pytest.raises(ValueError, match="grid spec") as info:
        parse_axis(spec)
    assert words in str(info.value)


def test_errors_name_the_axis_and_show_an_example():
    with pytest.raises(ValueError, match="is malformed") as info:
        parse_axis("1:2", "y")
    message = str(info.value)
    assert "y='1:2'" in message
    assert "'-1:1:51'" in message
    with pytest.raises(ValueError, match=r"grid spec x: needs at least 1 point"):
        parse_axis((0, 1, 0), "x")


def test_max_points_on_one_axis_is_accepted():
    assert parse_axis(f"0:1:{MAX_POINTS}").num == MAX_POINTS


# ------------------------------------------------------------------------------------------- SurfaceGrid


def test_a_line_has_one_dimension():
    grid = SurfaceGrid.from_specs("-1:1:7")
    assert grid.ndim == 1
    assert grid.y is None
    assert grid.shape == (7,)
    assert grid.size == 7
    coords = grid.coords()
    assert coords.shape == (7, 1)
    assert coords.dtype == np.float64
    np.testing.assert_array_equal(coords[:, 0], np.linspace(-1, 1, 7))


def test_a_grid_is_row_y_column_x_in_flat_order():
    grid = SurfaceGrid.from_specs("-1:1:5", "0:2:3")
    assert grid.ndim == 2
    assert grid.shape == (3, 5)  # (ny, nx)
    assert grid.size == 15
    xs, ys = grid.x.values, grid.y.values
    coords = grid.coords()
    assert coords.shape == (15, 2)
    nx = grid.x.num
    for i, j in itertools.product(range(grid.y.num), range(nx)):
        np.testing.assert_array_equal(coords[i * nx + j], [xs[j], ys[i]])


def test_from_specs_names_the_axis_in_errors():
    with pytest.raises(ValueError, match=r"grid spec y='bad'"):
        SurfaceGrid.from_specs("-1:1:3", "bad")
    with pytest.raises(ValueError, match=r"grid spec x='1:0:3'"):
        SurfaceGrid.from_specs("1:0:3", "-1:1:3")


def test_a_grid_larger_than_max_points_is_refused():
    side = int(np.sqrt(MAX_POINTS)) + 1  # each axis is fine, the product is not
    with pytest.raises(ValueError, match="the grid has") as info:
        SurfaceGrid.from_specs(f"-1:1:{side}", f"-1:1:{side}")
    message = str(info.value)
    assert f"the grid has {side * side} points ({side} x {side})" in message
    assert f"more than {MAX_POINTS}" in message
    assert SurfaceGrid.from_specs("-1:1:500", "-1:1:500").size == MAX_POINTS


def test_order_without_coarse_to_fine_is_the_flat_order():
    grid = SurfaceGrid.from_specs("-1:1:6", "-1:1:4")
    np.testing.assert_array_equal(grid.order(coarse_to_fine=False), np.arange(24))
    np.testing.assert_array_equal(grid.order(), coarse_to_fine_order((4, 6)))


# ---------------------------------------------------------------------------------- coarse_to_fine_order

SHAPES = [
    (1,),
    (2,),
    (3,),
    (5,),
    (8,),
    (9,),
    (17,),
    (51,),
    (1, 1),
    (1, 7),
    (7, 1),
    (2, 2),
    (3, 5),
    (5, 3),
    (9, 9),
    (10, 4),
    (21, 21),
    (4, 33),
    (2, 3, 4),
]


def _subgrid(shape: tuple[int, ...], stride: int) -> set[int]:
    """Flat indices of the points whose indices are multiples of ``stride`` or the last on their axis."""
    axes = [sorted(set(range(0, n, stride)) | {n - 1}) for n in shape]
    return {int(np.ravel_multi_index(idx, shape)) for idx in itertools.product(*axes)}


def _strides(shape: tuple[int, ...]) -> list[int]:
    """The levels, coarsest first: powers of two from the largest below the longest axis down to 1."""
    top = 1
    while top * 2 < max(shape):
        top *= 2
    return [top >> k for k in range(top.bit_length())]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_point_is_visited_exactly_once(shape):
    order = coarse_to_fine_order(shape)
    size = int(np.prod(shape))
    assert order.dtype == np.int64
    assert order.shape == (size,)
    np.testing.assert_array_equal(np.sort(order), np.arange(size))


@pytest.mark.parametrize("shape", SHAPES)
def test_each_level_completes_a_regular_subgrid(shape):
    order = coarse_to_fine_order(shape)
    done = 0
    for stride in _strides(shape):
        expected = _subgrid(shape, stride)
        assert len(expected) > done  # every level adds points
        done = len(expected)
        assert set(order[:done].tolist()) == expected, f"stride {stride}"
    assert done == order.size


@pytest.mark.parametrize("shape", [(9,), (5, 5), (3, 8), (21, 21)])
def test_the_corners_and_last_lines_are_in_the_coarsest_level(shape):
    order = coarse_to_fine_order(shape)
    first = set(order[: len(_subgrid(shape, _strides(shape)[0]))].tolist())
    corners = {int(np.ravel_multi_index(c, shape)) for c in itertools.product(*[(0, n - 1) for n in shape])}
    assert corners <= first
    if len(shape) == 2:  # the last row and column at the coarsest stride
        top = _strides(shape)[0]
        ny, nx = shape
        assert {(ny - 1) * nx + j for j in range(0, nx, top)} <= first
        assert {i * nx + nx - 1 for i in range(0, ny, top)} <= first


def test_a_known_line_order():
    # 9 points: stride 8 -> 0, 8; stride 4 -> 4; stride 2 -> 2, 6; stride 1 -> the odd ones
    np.testing.assert_array_equal(coarse_to_fine_order((9,)), [0, 8, 4, 2, 6, 1, 3, 5, 7])
    # 6 points: stride 4 -> 0, 4 and the last (5); stride 2 -> 2; stride 1 -> 1, 3
    np.testing.assert_array_equal(coarse_to_fine_order((6,)), [0, 4, 5, 2, 1, 3])


def test_an_empty_grid_has_an_empty_order():
    assert coarse_to_fine_order((0,)).size == 0
    assert coarse_to_fine_order((0, 5)).size == 0


def test_auto_axis_fits_the_coordinates_and_the_centre_with_a_margin():
    from lossviz.grid import AUTO_MARGIN, AUTO_NUM, AUTO_SPAN, auto_axis, is_auto, resolve_axes

    a = auto_axis("auto:11", [2.0, 5.0, 3.0])  # the centre (0) is always inside
    assert (a.min, a.max, a.num) == (pytest.approx(-AUTO_MARGIN * 5), pytest.approx(5 + AUTO_MARGIN * 5), 11)
    b = auto_axis("auto", [-22.0, 5.0])
    assert b.num == AUTO_NUM and b.min == pytest.approx(-22 - AUTO_MARGIN * 27)
    assert b.max == pytest.approx(5 + AUTO_MARGIN * 27)
    assert (auto_axis("auto").min, auto_axis("auto").max) == AUTO_SPAN
    assert (auto_axis("auto", [np.nan]).min, auto_axis("auto", [np.nan]).max) == AUTO_SPAN
    z = auto_axis("auto", [0.0, 0.0])  # a path that never leaves the centre: a span around it
    assert z.min < 0 < z.max
    assert is_auto("auto:5") and is_auto("auto") and not is_auto("-1:1:5") and not is_auto(None)
    x, y = resolve_axes("auto:3", "-1:1:5", np.array([[1.0, 9.0], [2.0, 9.0]]))
    assert y == "-1:1:5" and x.max == pytest.approx(2 + AUTO_MARGIN * 2)
    with pytest.raises(ValueError, match="integer"):
        auto_axis("auto:x")
