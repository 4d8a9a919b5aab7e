"""The Explorer's file exports of the surface on screen: ParaView's VTP, PLY meshes and a GIF of the
trajectory over the contour, written by :mod:`lossviz.io` into the project's ``exports/`` folder.

The widget's ``export_file`` message names the format and, optionally, the metric; everything else comes
from the surface shown (:class:`~lossviz.landscape.Surface`) and the trajectory in its plane.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lossviz.figures import default_metric
from lossviz.widget.payloads import PayloadError, choice

__all__ = ["EXPORT_FORMATS", "GIF_FRAMES", "branch_paths", "export_name", "write_export"]

EXPORT_FORMATS: dict[str, str] = {
    "vtp": "application/xml",  # ParaView PolyData (the reference's h52vtp.py)
    "ply": "application/octet-stream",  # binary PLY triangle mesh (Blender, MeshLab)
    "gif": "image/gif",  # the trajectory drawn point by point over the contour
}
"""Formats of :func:`write_export` and the MIME type of their downloads."""

NO_SURFACE = "there is no surface to export: compute one with the Surface button first"
GIF_FRAMES = 60  # frames of an exported GIF at most (a longer trajectory is sampled evenly)


def check_exportable(surface: Any, fmt: str, metric: str | None) -> str:
    """The metric to export (``metric`` if the surface has it, else its default); a
    :class:`PayloadError` naming the fix when there is no complete 2-D surface or the format is unknown."""
    choice(fmt, tuple(sorted(EXPORT_FORMATS)), "export format")
    if surface is None:
        raise PayloadError(NO_SURFACE)
    if getattr(surface, "y", None) is None:
        raise PayloadError(f"a {fmt.upper()} export needs a 2-D surface; this one is 1-D: compute one with a y range")
    done = getattr(surface, "done", None)
    if done is not None and not np.asarray(done, dtype=bool).all():
        raise PayloadError("the surface is still being computed: export it once it is complete")
    values = getattr(surface, "values", {}) or {}
    return default_metric(surface, metric if metric in values else None)


def export_name(surface: Any, fmt: str, metric: str) -> str:
    """``surface_<center>_<metric>_<time>.<fmt>``: a new file for each export."""
    center = (getattr(surface, "meta", None) or {}).get("center", "")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"surface_{center}_{metric}_{stamp}.{fmt}" if center != "" else f"surface_{metric}_{stamp}.{fmt}"


def branch_paths(ids: Sequence[int], coords: Any, branch_of: Mapping[int, int]) -> tuple[list[np.ndarray], list[str]]:
    """The trajectory's ``(n, 2)`` plane coordinates split into one path per branch (points in id order,
    as the checkpoints were made), labelled ``branch b``; ids without a branch share one path."""
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    groups: dict[int, list[int]] = {}
    for row, ckpt in enumerate(ids):
        groups.setdefault(int(branch_of.get(int(ckpt), -1)), []).append(row)
    paths, labels = [], []
    for branch in sorted(groups):
        rows = sorted(groups[branch], key=lambda r: int(ids[r]))
        paths.append(xy[rows])
        labels.append(f"branch {branch}" if branch >= 0 else "checkpoints")
    return paths, labels


def write_export(path: Path, surface: Any, fmt: str, metric: str,
                 trajectory: tuple[list[np.ndarray], list[str]] | None = None) -> Path:
    """Write ``surface``'s ``metric`` to ``path`` as ``fmt``: VTP (:func:`lossviz.io.vtp.write_surface_vtp`),
    PLY (:func:`lossviz.io.ply.write_surface_ply`) or a GIF of ``trajectory`` (paths and labels in the
    surface's plane) over the contour (:func:`lossviz.io.animation.animate_surface_paths`, PCA axes
    labelled with their explained variance; a frame per point of the longest path, at most
    :data:`GIF_FRAMES`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "vtp":
        from lossviz.io.vtp import write_surface_vtp

        return write_surface_vtp(path, surface, metric)
    if fmt == "ply":
        from lossviz.io.ply import write_surface_ply

        return write_surface_ply(path, surface, metric)
    from lossviz.io.animation import animate_surface_paths

    if trajectory is None or not any(len(p) for p in trajectory[0]):
        raise PayloadError("the GIF draws the trajectory over the surface, and this surface has none yet: "
                           "wait until its checkpoints are placed in its plane, then export again")
    paths, labels = trajectory
    frames = min(GIF_FRAMES, max(len(p) for p in paths))  # a frame per point of a short trajectory
    return animate_surface_paths(path, surface, paths, metric, labels=labels, frames=frames,
                                 title=f"{metric} around checkpoint {(surface.meta or {}).get('center', '')}")
