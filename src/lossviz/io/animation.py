"""Animated optimization paths over the contour of a 2D surface: GIF (Pillow) or MP4 (imageio-ffmpeg).

Frames are drawn with matplotlib's Agg canvas (no pyplot, no display, no system ImageMagick): the contour
and legend are drawn once, and each frame redraws only the paths' trails, their current markers and the
step / epoch caption (blitting). One frame per path point by default; with several paths of different
lengths every path advances in proportion, so all reach their end on the last frame.

GIF delays are stored in hundredths of a second, so a frame lasts ``10 * round(100 / fps)`` ms
(``fps=10`` → 100 ms, ``fps=25`` → 40 ms); viewers slow delays under 20 ms down, so GIFs take
``fps <= 50``. All frames share one palette (no flicker).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lossviz.critical import check_grid, surface_arrays
from lossviz.files import atomic_path

DEFAULT_COLORS = ("#e41a1c", "#ffffff", "#ff7f00", "#f781bf", "#000000", "#00e5ff")
"""Path colours, chosen to stand out on viridis: red, white, orange, pink, black, cyan."""

MAX_GIF_FPS = 50


@dataclass
class PathFrames:
    """Rendered frames and how to find things in them.

    ``images``: RGB ``PIL.Image`` frames; ``indices[f, k]``: the point of path ``k`` shown (as its marker)
    in frame ``f``; ``paths``: the paths (n_k, 2) in data coordinates; ``colors``: each path's RGB colour
    (0..255); ``labels``; ``affine``: the 3x3 data → display transform of the axes (display origin at the
    bottom-left, in pixels), used by :meth:`data_to_pixel`; ``meta``: ``log``, ``levels`` and the axis and
    colour bar labels drawn (``colorbar_label`` None without a colour bar).
    """

    images: list
    indices: np.ndarray
    paths: list[np.ndarray]
    colors: list[tuple[int, int, int]]
    labels: list[str]
    affine: np.ndarray
    size: tuple[int, int]
    meta: dict = field(default_factory=dict)

    def data_to_pixel(self, points: Any) -> np.ndarray:
        """(n, 2) data coordinates → (n, 2) float pixel coordinates ``(column, row)`` in a frame, row 0 at
        the top (``int(...)`` of them indexes ``np.asarray(image)[row, column]``)."""
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        disp = pts @ self.affine[:2, :2].T + self.affine[:2, 2]
        return np.column_stack([disp[:, 0], self.size[1] - disp[:, 1]])


def _as_paths(paths: Any, labels: Sequence[str] | None) -> tuple[list[np.ndarray], list[str], bool]:
    """Normalize ``paths`` (one (n, 2) array, a list of them, or a dict label → array)."""
    if isinstance(paths, Mapping):
        names, arrays = [str(k) for k in paths], list(paths.values())
        explicit = True
    else:
        if isinstance(paths, np.ndarray):
            arrays = [paths] if paths.ndim != 3 else list(paths)  # (n, 2): one path; (k, n, 2): k paths
        else:
            seq = list(paths)
            # a list of (x, y) pairs is one path; a list of (n, 2) arrays is several
            arrays = [seq] if seq and all(np.ndim(p) == 1 for p in seq) else seq
        names = [f"path {k + 1}" for k in range(len(arrays))]
        explicit = False
    if labels is not None:
        labels = [str(s) for s in labels]
        if len(labels) != len(arrays):
            raise ValueError(f"got {len(labels)} labels for {len(arrays)} paths; give one label per path")
        names, explicit = labels, True
    if not arrays:
        raise ValueError("no path given: pass an (n, 2) array of coordinates, or a list / dict of them")
    out = []
    for name, a in zip(names, arrays, strict=True):
        a = np.asarray(a, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 1:
            raise ValueError(
                f"{name}: a path must be an (n, 2) array of (x, y) coordinates, got shape {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: the path has NaN/inf coordinates; drop those points")
        out.append(a)
    return out, names, explicit


def frame_indices(lengths: Sequence[int], frames: int | None = None) -> np.ndarray:
    """``(F, n_paths)`` index of each path's point shown in each frame.

    The longest path (length ``n``) sets the pace: frame ``f`` shows its point ``r_f = round(f (n-1)/(F-1))``
    (``F = frames``, default ``n``; 1 <= F <= n), and a path of length ``m`` its point
    ``round(r_f (m-1)/(n-1))``.
    """
    n = max(lengths)
    F = n if frames is None else int(frames)
    if not 1 <= F <= n:
        raise ValueError(f"frames={frames}: choose between 1 and the longest path's length ({n})")
    r = np.array([n - 1]) if F == 1 else np.rint(np.arange(F) * (n - 1) / (F - 1)).astype(np.int64)
    cols = [np.zeros_like(r) if n == 1 else np.rint(r * (m - 1) / (n - 1)).astype(np.int64) for m in lengths]
    return np.column_stack(cols)


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("animations are drawn with matplotlib: pip install matplotlib") from e
    return Figure, FigureCanvasAgg


def render_path_frames(
    x: Any,
    y: Any,
    z: Any,
    paths: Any,
    *,
    labels: Sequence[str] | None = None,
    epochs: Sequence[float] | None = None,
    frames: int | None = None,
    size: tuple[int, int] = (640, 480),
    dpi: int = 100,
    levels: int | Sequence[float] = 30,
    log: bool = False,
    filled: bool = True,
    cmap: str = "viridis",
    colors: Sequence[Any] | None = None,
    title: str | None = None,
    xlabel: str = "x",
    ylabel: str = "y",
    zlabel: str = "value",
    marker_size: float = 9.0,
    line_width: float = 2.0,
    colorbar: bool = True,
) -> PathFrames:
    """Draw the frames: contour of ``z[i, j] = f(x[j], y[i])`` (NaN left blank), each path's trail up to
    its current point and a marker there, a caption ``step r`` (and ``epoch e`` when ``epochs``, one
    per point of the longest path, are given), a legend when there are several paths or ``labels``.

    ``log``: contour ``log10(z)`` (values must be > 0). ``levels``: number of contour levels or their
    values (in ``log10`` units when ``log``). ``size``: frame (width, height) in pixels. ``zlabel``: the
    colour bar's label (``log10 zlabel`` when ``log``).
    """
    Figure, FigureCanvasAgg = _matplotlib()
    from matplotlib.colors import to_rgb
    from PIL import Image

    xa, ya, za = check_grid(x, y, z)
    if ya is None:
        raise ValueError("an animation over a contour needs a 2D surface (x, y, z[ny, nx]); y is None")
    if xa.size < 2 or ya.size < 2:
        raise ValueError("a contour needs at least 2 points along x and along y")
    plist, names, explicit = _as_paths(paths, labels)
    idx = frame_indices([len(p) for p in plist], frames)
    ref = int(np.argmax([len(p) for p in plist]))
    n_max = len(plist[ref])
    epoch_of = None if epochs is None else np.asarray(epochs, dtype=np.float64).ravel()
    if epoch_of is not None and epoch_of.size != n_max:
        raise ValueError(
            f"epochs has {epoch_of.size} values; give one per point of the longest path ({n_max})"
        )
    w, h = (int(v) for v in size)
    if w < 64 or h < 64:
        raise ValueError(f"size={size}: frames must be at least 64x64 pixels")
    if colors is None:
        colors = [DEFAULT_COLORS[k % len(DEFAULT_COLORS)] for k in range(len(plist))]
    colors = list(colors)
    if len(colors) < len(plist):
        raise ValueError(f"got {len(colors)} colors for {len(plist)} paths")

    zc = za
    if log:
        finite = za[np.isfinite(za)]
        if finite.size and finite.min() <= 0:
            raise ValueError(f"log=True contours log10(z), but z goes down to {finite.min():g}; use log=False")
        with np.errstate(invalid="ignore", divide="ignore"):
            zc = np.log10(za)
    zm = np.ma.masked_invalid(zc)
    if zm.count() < 2:
        raise ValueError("the surface has fewer than 2 finite values; compute it before animating")

    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if filled:
        cs = ax.contourf(xa, ya, zm, levels=levels, cmap=cmap)
    else:
        cs = ax.contour(xa, ya, zm, levels=levels, cmap=cmap)
    bar_label = None
    if colorbar:
        bar = fig.colorbar(cs, ax=ax)
        bar.set_label(f"log10 {zlabel}" if log else zlabel)
        bar_label = bar.ax.get_ylabel()
    ax.set_xlim(xa.min(), xa.max())
    ax.set_ylim(ya.min(), ya.max())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    trails, markers = [], []
    for p, name, c in zip(plist, names, colors, strict=False):  # extra colours are unused
        (trail,) = ax.plot(p[:1, 0], p[:1, 1], "-", color=c, lw=line_width, label=name)
        (marker,) = ax.plot(p[:1, 0], p[:1, 1], "o", color=c, ms=marker_size, mec="black", mew=0.8)
        trails.append(trail)
        markers.append(marker)
    if len(plist) > 1 or explicit:
        ax.legend(handles=trails, loc="upper right", fontsize="small", framealpha=0.8)
    caption = ax.text(
        0.02, 0.97, "", transform=ax.transAxes, va="top", ha="left", fontsize="small",
        bbox=dict(boxstyle="round", fc="white", alpha=0.8, lw=0),
    )
    dynamic = [*trails, *markers, caption]
    for a in dynamic:
        a.set_animated(True)
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    renderer = canvas.get_renderer()
    width, height = int(renderer.width), int(renderer.height)
    affine = ax.transData.get_affine().get_matrix().copy()

    images = []
    for f in range(idx.shape[0]):
        canvas.restore_region(background)
        for k, p in enumerate(plist):
            i = idx[f, k]
            trails[k].set_data(p[: i + 1, 0], p[: i + 1, 1])
            markers[k].set_data(p[i : i + 1, 0], p[i : i + 1, 1])
        r = idx[f, ref]
        text = f"step {r}"
        if epoch_of is not None:
            text += f"  ·  epoch {epoch_of[r]:g}"
        caption.set_text(text)
        for a in dynamic:
            a.axes.draw_artist(a)
        rgba = np.asarray(canvas.buffer_rgba())
        images.append(Image.fromarray(np.ascontiguousarray(rgba[..., :3])))
    return PathFrames(
        images=images,
        indices=idx,
        paths=plist,
        colors=[_rgb255(to_rgb(c)) for c in colors[: len(plist)]],
        labels=names,
        affine=affine,
        size=(width, height),
        meta={"log": log, "levels": levels if isinstance(levels, int) else list(levels),
              "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "colorbar_label": bar_label},
    )


def _rgb255(rgb: tuple[float, float, float]) -> tuple[int, int, int]:
    """An RGB colour of floats in [0, 1] as bytes."""
    r, g, b = rgb
    return round(255 * r), round(255 * g), round(255 * b)


def gif_frame_duration_ms(fps: float) -> int:
    """Frame delay stored in a GIF for ``fps``: a whole number of hundredths of a second."""
    if not (np.isfinite(fps) and 0 < fps <= MAX_GIF_FPS):
        raise ValueError(
            f"fps={fps}: GIFs take 0 < fps <= {MAX_GIF_FPS} (viewers slow shorter delays down); "
            "for faster playback write .mp4"
        )
    return 10 * max(1, round(100.0 / float(fps)))


def _shared_palette(images: Sequence[Any]):
    """One 256-colour palette for all frames, from a montage of up to 16 of them."""
    from PIL import Image

    pick = np.unique(np.linspace(0, len(images) - 1, min(16, len(images))).round().astype(int))
    montage = np.concatenate([np.asarray(images[k].convert("RGB")) for k in pick], axis=0)
    return Image.fromarray(montage).quantize(
        colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )


def save_gif(path: str | os.PathLike, images: Sequence[Any], fps: float = 10, loop: int = 0) -> Path:
    """Write RGB frames as an animated GIF with Pillow (shared palette, ``loop=0`` repeats forever)."""
    from PIL import Image

    if not images:
        raise ValueError("no frames to write")
    duration = gif_frame_duration_ms(fps)
    palette = _shared_palette(images)
    frames = [im.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    path = Path(path)
    with atomic_path(path) as tmp:
        frames[0].save(
            tmp, format="GIF", save_all=True, append_images=frames[1:], duration=duration, loop=loop,
            optimize=False,
        )
    return path


def _imageio_ffmpeg():
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise RuntimeError(
            "MP4 export needs an ffmpeg encoder, which was not found: pip install imageio-ffmpeg "
            "(it ships ffmpeg), or save the animation as .gif"
        ) from e
    return imageio_ffmpeg


def save_mp4(path: str | os.PathLike, images: Sequence[Any], fps: float = 10, quality: int = 8) -> Path:
    """Write RGB frames as H.264 MP4 (yuv420p, plays everywhere) through imageio-ffmpeg; frames with odd
    width or height get one edge row / column repeated. ``quality`` 0..10."""
    if not images:
        raise ValueError("no frames to write")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps={fps}: give a positive number of frames per second")
    iio = _imageio_ffmpeg()
    arrays = [np.asarray(im.convert("RGB")) for im in images]
    hgt, wid = arrays[0].shape[:2]
    pad = ((0, hgt % 2), (0, wid % 2), (0, 0))
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError("all frames must have the same size")
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = iio.write_frames(
            tmp, (wid + wid % 2, hgt + hgt % 2), fps=fps, codec="libx264", pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p", quality=quality, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-f", "mp4"],  # the temporary name has no .mp4 suffix
        )
        writer.send(None)
        try:
            for a in arrays:
                writer.send(np.ascontiguousarray(np.pad(a, pad, mode="edge")))
        finally:
            writer.close()
    return path


def save_animation(path: str | os.PathLike, frames: PathFrames | Sequence[Any], fps: float = 10) -> Path:
    """Write frames (a :class:`PathFrames` or a list of images) as ``.gif`` or ``.mp4`` by the suffix."""
    images = frames.images if isinstance(frames, PathFrames) else list(frames)
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return save_gif(path, images, fps=fps)
    if suffix == ".mp4":
        return save_mp4(path, images, fps=fps)
    raise ValueError(f"cannot write {suffix or 'a file without suffix'}: name the file .gif or .mp4")


def animate_paths(
    path: str | os.PathLike, x: Any, y: Any, z: Any, paths: Any, *, fps: float = 10, **kwargs: Any
) -> Path:
    """Render the paths over the surface's contour (:func:`render_path_frames` options) and write the
    animation to ``path`` (``.gif`` or ``.mp4``). Returns the path written."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"cannot write {suffix or 'a file without suffix'}: name the file .gif or .mp4")
    if suffix == ".gif":
        gif_frame_duration_ms(fps)  # fail before rendering
    else:
        _imageio_ffmpeg()
    return save_animation(path, render_path_frames(x, y, z, paths, **kwargs), fps=fps)


def animate_surface_paths(
    path: str | os.PathLike, surface: Any, paths: Any = None, metric: str | None = None, **kwargs: Any
) -> Path:
    """:func:`animate_paths` over a Surface's metric (default ``train_loss``). ``paths=None`` uses the
    trajectory the surface carries (``surface.meta["trajectory"]["coords"]``, as PCA surfaces have). The
    axes are labelled by :func:`lossviz.figures.surface_axis_labels` (PCA: with explained variance), the
    colour bar by the metric's name."""
    from lossviz.figures import default_metric, surface_axis_labels

    metric = default_metric(surface, metric)
    x, y, z = surface_arrays(surface, metric)
    if paths is None:
        traj = (getattr(surface, "meta", None) or {}).get("trajectory")
        if not traj or "coords" not in traj:
            raise ValueError("this surface carries no trajectory: pass paths=(n, 2) coordinates in its plane")
        paths = np.asarray(traj["coords"], dtype=np.float64)
    xlabel, ylabel = surface_axis_labels(surface)  # "PC1: 91.8 %" for PCA directions
    kwargs.setdefault("xlabel", xlabel)
    kwargs.setdefault("ylabel", ylabel)
    kwargs.setdefault("zlabel", metric)
    return animate_paths(path, x, y, z, paths, **kwargs)


__all__ = [
    "DEFAULT_COLORS",
    "MAX_GIF_FPS",
    "PathFrames",
    "animate_paths",
    "animate_surface_paths",
    "frame_indices",
    "gif_frame_duration_ms",
    "render_path_frames",
    "save_animation",
    "save_gif",
    "save_mp4",
]
