"""PLY (Stanford polygon) meshes of a 2D surface, as OpenGL renderers load them.

Vertices are ``(x[j], y[i], z[i, j])`` for the finite grid values in flat order ``k = i * nx + j``;
faces are two triangles per grid cell, ``(a, b, c)`` and ``(a, c, d)`` for the cell's corners
``a = (i, j), b = (i, j+1), c = (i+1, j+1), d = (i+1, j)`` (counter-clockwise seen from +z when x and y
increase), cells with a NaN corner skipped. The height may be clipped (``zmax``) and log-scaled as in the
VTP export. ``fmt="ascii"`` (default) or ``"binary_little_endian"``; vertex coordinates ``float``
(float32, what renderers expect) or ``double``; faces ``list uchar int vertex_indices``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lossviz.critical import check_grid, surface_arrays
from lossviz.files import atomic_path
from lossviz.io.vtp import grid_mesh, transform_z

FORMATS = ("ascii", "binary_little_endian")
_VERTEX_TYPES: dict[str, np.dtype] = {"float": np.dtype("<f4"), "double": np.dtype("<f8")}


def grid_triangles(x: Any, y: Any, z: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices (n, 3) float64, faces (m, 3) int64)`` of the surface without its NaN points:
    two triangles per cell whose four corners are finite (see the module doc)."""
    points, quads, _ = grid_mesh(x, y, z)
    faces = np.empty((2 * len(quads), 3), dtype=np.int64)
    faces[0::2] = quads[:, [0, 1, 2]]
    faces[1::2] = quads[:, [0, 2, 3]]
    return points, faces


def write_ply(
    path: str | os.PathLike,
    x: Any,
    y: Any,
    z: Any,
    *,
    fmt: str = "ascii",
    zmax: float | None = None,
    log: bool = False,
    vertex_type: str = "float",
    comment: str | None = None,
) -> Path:
    """Write the surface ``z[i, j] = f(x[j], y[i])`` as a PLY mesh (see the module doc); returns the path.

    ``zmax`` (clip above; None or ``<= 0``: none) and ``log`` (``log(z + 0.1)``) act on the height as in
    :func:`lossviz.io.vtp.write_vtp`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r}: choose one of {FORMATS}")
    if vertex_type not in _VERTEX_TYPES:
        raise ValueError(f"vertex_type={vertex_type!r}: choose 'float' (float32) or 'double' (float64)")
    xa, ya, za = check_grid(x, y, z)
    if ya is None:
        raise ValueError("PLY export needs a 2D surface (x, y, z[ny, nx]); this one is 1D (y is None)")
    height = transform_z(za, zmax=zmax, log=log)
    if np.isinf(height).any():
        raise ValueError("the surface has infinite values; replace them with NaN (not computed) or clip them")
    vertices, faces = grid_triangles(xa, ya, height)
    if len(vertices) >= 2**31:
        raise ValueError("too many vertices for int32 face indices; export a coarser grid")
    header = ["ply", f"format {fmt} 1.0", "comment lossviz surface: vertices (x, y, loss), 2 triangles per cell"]
    if comment:
        header += [f"comment {line}" for line in str(comment).splitlines()]
    header += [
        f"element vertex {len(vertices)}",
        f"property {vertex_type} x",
        f"property {vertex_type} y",
        f"property {vertex_type} z",
        f"element face {len(faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    path = Path(path)
    vdtype = _VERTEX_TYPES[vertex_type]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if fmt == "ascii":
            vfmt = "%.9g" if vertex_type == "float" else "%.17g"
            v = vertices.astype(vdtype)
            f.write("".join(f"{vfmt % a} {vfmt % b} {vfmt % c}\n" for a, b, c in v.tolist()).encode("ascii"))
            f.write("".join(f"3 {a} {b} {c}\n" for a, b, c in faces.tolist()).encode("ascii"))
        else:
            f.write(np.ascontiguousarray(vertices, dtype=vdtype).tobytes())
            rec = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
            rec["n"] = 3
            rec["v"] = faces
            f.write(rec.tobytes())
    return path


def write_surface_ply(path: str | os.PathLike, surface: Any, metric: str | None = None, **kwargs: Any) -> Path:
    """:func:`write_ply` of a Surface's metric (default ``train_loss``); keyword options as there."""
    x, y, z = surface_arrays(surface, metric)
    return write_ply(path, x, y, z, **kwargs)


__all__ = ["FORMATS", "grid_triangles", "write_ply", "write_surface_ply"]
