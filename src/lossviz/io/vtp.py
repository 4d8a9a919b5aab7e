"""VTK XML PolyData (``.vtp``) surfaces that ParaView opens.

A port of the reference's ``h52vtp.py`` (tomgoldstein/loss-landscape, ``h5_to_vtp``): the grid's points
``(x, y, z)`` in ``meshgrid(x, y)`` order (flat index ``k = i * nx + j`` for ``(x[j], y[i])``), one quad
per grid cell with corners ``k, k + 1, k + nx + 1, k + nx``, point data ``zvalue`` (the height written),
cell data ``averaged zvalue`` (mean of the cell's four corners), empty Verts/Lines/Strips, ASCII
arrays, ``header_type="UInt64"`` and ``Int64`` connectivity, as the reference writes them. The height
is the metric clipped at ``zmax`` (when ``zmax > 0``; the reference's ``-1`` means no clipping) and then,
with ``log=True``, ``log(z + 0.1)``, in that order, as there.

Differences: non-square grids work (the reference assumes ``nx == ny``); points whose value is NaN (not
computed or diverged) are left out and the cells touching them skipped (the reference has no NaN); the
raw metric is written as a second point-data array (named ``value_name``); coordinates and values are
``Float64``. The reference's cubic re-interpolation (``--interp``) is a bicubic spline here
(:func:`resample`; SciPy removed ``interp2d``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from lossviz.critical import check_grid, surface_arrays
from lossviz.figures import default_metric
from lossviz.files import atomic_path

LOG_OFFSET = 0.1
"""``log=True`` writes ``log(z + LOG_OFFSET)``, the reference's ``np.log(z_array + 0.1)``."""


def transform_z(z: Any, zmax: float | None = None, log: bool = False) -> np.ndarray:
    """The height written: ``min(z, zmax)`` when ``zmax`` is a positive number, then ``log(z + 0.1)``
    when ``log``. NaN stays NaN. Raises ``ValueError`` when ``log`` meets a value ``<= -0.1``."""
    out = np.array(z, dtype=np.float64, copy=True)
    if zmax is not None and zmax > 0:
        with np.errstate(invalid="ignore"):
            out[out > zmax] = zmax
    if log:
        finite = out[np.isfinite(out)]
        if finite.size and finite.min() + LOG_OFFSET <= 0:
            raise ValueError(
                f"log=True writes log(z + {LOG_OFFSET}), but the surface has values down to "
                f"{finite.min():g}; use log=False (log scale suits losses, which are >= 0)"
            )
        with np.errstate(invalid="ignore"):
            out = np.log(out + LOG_OFFSET)
    return out


def grid_mesh(x: Any, y: Any, z: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mesh of a 2D grid without its NaN points.

    Returns ``(points, quads, kept)``: ``points`` (n, 3) float64 ``(x[j], y[i], z[i, j])`` for the finite
    values in flat order ``k = i * nx + j``; ``quads`` (m, 4) int64 indices into ``points`` of every cell
    whose four corners are finite, corners ``(i, j), (i, j+1), (i+1, j+1), (i+1, j)`` (counter-clockwise
    seen from +z when x and y increase), cells in flat order; ``kept`` (ny * nx,) bool, which grid points
    were kept.
    """
    xa, ya, za = check_grid(x, y, z)
    if ya is None:
        raise ValueError("a mesh needs a 2D surface (x, y, z[ny, nx]); this one is 1D (y is None)")
    ny, nx = za.shape
    X, Y = np.meshgrid(xa, ya)
    kept = np.isfinite(za).ravel()
    points = np.column_stack([X.ravel(), Y.ravel(), za.ravel()])[kept]
    new_index = np.full(ny * nx, -1, dtype=np.int64)
    new_index[kept] = np.arange(int(kept.sum()))
    k = (np.arange(ny - 1)[:, None] * nx + np.arange(nx - 1)[None, :]).ravel()
    corners = np.column_stack([k, k + 1, k + nx + 1, k + nx])
    full = kept[corners].all(axis=1)
    quads = new_index[corners[full]]
    return points, quads, kept


def _write_array(
    f: IO[str], name: str, values: np.ndarray, *, vtk_type: str, components: int = 1, per_line: int = 6
) -> None:
    values = np.asarray(values)
    fmt = "%d" if vtk_type.startswith("Int") else "%.17g"
    rng = ""
    if values.size:
        rng = f' RangeMin="{fmt % values.min()}" RangeMax="{fmt % values.max()}"'
    comps = f' NumberOfComponents="{components}"' if components != 1 or vtk_type.startswith("Float") else ""
    f.write(f'        <DataArray type="{vtk_type}" Name="{name}"{comps} format="ascii"{rng}>\n')
    flat = values.reshape(-1)
    per_line *= components
    for start in range(0, flat.size, per_line):
        f.write("          " + " ".join(fmt % v for v in flat[start : start + per_line]) + "\n")
    f.write("        </DataArray>\n")


def write_vtp(
    path: str | os.PathLike,
    x: Any,
    y: Any,
    z: Any,
    *,
    zmax: float | None = None,
    log: bool = False,
    value_name: str = "loss",
) -> Path:
    """Write the surface ``z[i, j] = f(x[j], y[i])`` as a ``.vtp`` file of quads (see the module doc).

    ``zmax``: clip heights above it (None or ``<= 0``: no clipping, the reference's ``-1``); ``log``: write
    ``log(z + 0.1)`` (after clipping). Point data: ``zvalue`` (the height) and ``value_name`` (the raw
    metric); cell data: ``averaged zvalue``. Returns the path written.
    """
    xa, ya, za = check_grid(x, y, z)
    if ya is None:
        raise ValueError("VTP export needs a 2D surface (x, y, z[ny, nx]); this one is 1D (y is None)")
    if value_name in ("zvalue", "averaged zvalue", "Points"):
        raise ValueError(f"value_name={value_name!r} clashes with an array the file already has; pick another")
    height = transform_z(za, zmax=zmax, log=log)
    if np.isnan(height).sum() != np.isnan(za).sum() or np.isinf(height).any():
        raise ValueError("the surface has infinite values; replace them with NaN (not computed) or clip them")
    points, quads, kept = grid_mesh(xa, ya, height)
    raw = za.ravel()[kept]
    cell_avg = points[quads, 2].mean(axis=1) if len(quads) else np.zeros(0)
    n_points, n_polys = len(points), len(quads)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="ascii") as f:
        f.write('<?xml version="1.0"?>\n')
        f.write('<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" header_type="UInt64">\n')
        f.write("  <PolyData>\n")
        f.write(
            f'    <Piece NumberOfPoints="{n_points}" NumberOfVerts="0" NumberOfLines="0" '
            f'NumberOfStrips="0" NumberOfPolys="{n_polys}">\n'
        )
        f.write('      <PointData Scalars="zvalue">\n')
        _write_array(f, "zvalue", points[:, 2], vtk_type="Float64")
        _write_array(f, value_name, raw, vtk_type="Float64")
        f.write("      </PointData>\n")
        f.write('      <CellData Scalars="averaged zvalue">\n')
        _write_array(f, "averaged zvalue", cell_avg, vtk_type="Float64")
        f.write("      </CellData>\n")
        f.write("      <Points>\n")
        _write_array(f, "Points", points, vtk_type="Float64", components=3, per_line=2)
        f.write("      </Points>\n")
        for section in ("Verts", "Lines", "Strips"):
            f.write(f"      <{section}>\n")
            _write_array(f, "connectivity", np.zeros(0, np.int64), vtk_type="Int64")
            _write_array(f, "offsets", np.zeros(0, np.int64), vtk_type="Int64")
            f.write(f"      </{section}>\n")
        f.write("      <Polys>\n")
        _write_array(f, "connectivity", quads, vtk_type="Int64", per_line=8)
        _write_array(f, "offsets", 4 * np.arange(1, n_polys + 1, dtype=np.int64), vtk_type="Int64")
        f.write("      </Polys>\n")
        f.write("    </Piece>\n")
        f.write("  </PolyData>\n")
        f.write("</VTKFile>\n")
    return path


def write_surface_vtp(
    path: str | os.PathLike, surface: Any, metric: str | None = None, **kwargs: Any
) -> Path:
    """:func:`write_vtp` of a Surface's metric (default ``train_loss``); the raw values are named after
    the metric."""
    x, y, z = surface_arrays(surface, metric)
    kwargs.setdefault("value_name", default_metric(surface, metric))
    return write_vtp(path, x, y, z, **kwargs)


def vtp_filename(surf_file: str | os.PathLike, surf_name: str = "train_loss", zmax: float = -1,
                 log: bool = False) -> str:
    """The reference's output name: ``<surf_file>_<surf_name>[_zmax=<zmax>][_log].vtp``."""
    name = f"{os.fspath(surf_file)}_{surf_name}"
    if zmax is not None and zmax > 0:
        name += f"_zmax={zmax}"
    if log:
        name += "_log"
    return name + ".vtp"


def resample(x: Any, y: Any, z: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``z`` on ``n x n`` evenly spaced points over ``x``'s and ``y``'s ranges, by a bicubic
    interpolating spline through the grid's values (``scipy.interpolate.RectBivariateSpline``, ``s=0``;
    the reference's ``interp2d(kind='cubic')``, removed from SciPy). Needs at least 4 points per axis and
    no NaN."""
    from scipy.interpolate import RectBivariateSpline

    x, y, z = (np.asarray(a, dtype=np.float64) for a in (x, y, z))
    if n < 2:
        raise ValueError(f"interp must be at least 2 points per axis, got {n}")
    if min(x.size, y.size) < 4:
        raise ValueError(f"bicubic resampling needs at least 4 points per axis, the grid has {x.size} x {y.size}")
    if not np.isfinite(z).all():
        raise ValueError("the surface has NaN points (not computed or diverged); resample only a complete surface")
    spline = RectBivariateSpline(y, x, z, kx=3, ky=3, s=0)
    xs, ys = np.linspace(x.min(), x.max(), n), np.linspace(y.min(), y.max(), n)
    return xs, ys, spline(ys, xs)


def h5_to_vtp(
    surf_file: str | os.PathLike,
    surf_name: str = "train_loss",
    log: bool = False,
    zmax: float = -1,
    out: str | os.PathLike | None = None,
    interp: int = -1,
) -> Path:
    """The reference's ``h5_to_vtp``: read a Li-layout surface file and write its ``.vtp`` next to it
    (``out=None``: the reference's file name, :func:`vtp_filename`). ``-1`` in the file (the reference's
    "not computed") is read as NaN, and ``(nx, ny)`` or ``(ny, nx)`` datasets as ``(ny, nx)``.
    ``interp > 0`` first resamples the surface to ``interp x interp`` points over the same ranges
    (:func:`resample`, the reference's cubic ``interp2d``)."""
    import h5py

    surf_file = Path(surf_file)
    if not surf_file.exists():
        raise FileNotFoundError(f"surface file {surf_file} does not exist; compute it first or fix the path")
    with h5py.File(surf_file, "r") as f:
        if "ycoordinates" not in f:
            raise ValueError(f"{surf_file} holds a 1D surface (no ycoordinates); VTP export needs a 2D one")
        if surf_name not in f:
            names = [k for k in f if k not in ("xcoordinates", "ycoordinates", "dir_file")]
            raise ValueError(f"{surf_file} has no dataset {surf_name!r}; it has {names}")
        x = np.asarray(f["xcoordinates"][:], dtype=np.float64)
        y = np.asarray(f["ycoordinates"][:], dtype=np.float64)
        vals = np.asarray(f[surf_name][:], dtype=np.float64)
    # the reference fills the dataset in meshgrid(x, y) order: flat k = i * nx + j whatever shape it declares
    if vals.size != x.size * y.size:
        raise ValueError(f"{surf_name} has {vals.size} values, expected len(x) * len(y) = {x.size * y.size}")
    z = vals.reshape(y.size, x.size)
    z[z == -1] = np.nan
    if interp > 0:
        x, y, z = resample(x, y, z, interp)
    target = Path(out) if out is not None else Path(vtp_filename(surf_file, surf_name, zmax, log))
    return write_vtp(target, x, y, z, zmax=zmax, log=log, value_name=surf_name)


__all__ = [
    "LOG_OFFSET",
    "grid_mesh",
    "h5_to_vtp",
    "resample",
    "transform_z",
    "vtp_filename",
    "write_surface_vtp",
    "write_vtp",
]
