"""Surface and direction files in the HDF5 layout of ``tomgoldstein/loss-landscape``.

Surface files
-------------
Root datasets ``xcoordinates`` (and ``ycoordinates``), float64 ``linspace``; one float64 dataset
per metric (``train_loss``, ``train_acc`` in percent, ``test_loss``, ``test_acc``, and any other
metric named the same way, ``<split>_<metric>``: ``train_perplexity`` of ``lossviz surface
--metrics loss,acc,perplexity``); ``dir_file``, a scalar string naming the direction file.

What the reference does (read in its code):

* ``plot_surface.py`` ``setup_surface_file``: ``f['dir_file'] = dir_file``,
  ``f['xcoordinates'] = np.linspace(xmin, xmax, num=xnum)`` (and ``ycoordinates``).
* ``plot_surface.py`` ``crunch``: a metric is created as ``-np.ones(shape)`` with
  ``shape = (len(xcoordinates), len(ycoordinates))`` (1D: ``xcoordinates.shape``), and filled by
  ``losses.ravel()[ind] = loss``, where ``scheduler.get_unplotted_indices`` takes ``ind`` as a flat
  index into ``np.meshgrid(xcoordinates, ycoordinates)`` (whose arrays are ``(ny, nx)``) and selects
  unfinished points as ``vals <= 0``. So flat index ``k = i * nx + j`` holds the point
  ``(x[j], y[i])``: for a square grid ``dataset[i, j] = L(x[j], y[i])``; for a non-square grid the
  declared ``(nx, ny)`` shape is only meaningful after ``reshape(ny, nx)``.
* ``plot_2D.py`` ``plot_2d_contour``: ``X, Y = np.meshgrid(x, y); contour(X, Y, Z)`` with ``Z`` the
  dataset as stored (row = y, column = x), and ``h52vtp.py`` ravels the dataset in the same meshgrid
  order.

Here values are ``(ny, nx)`` with ``values[i, j] = f(x[j], y[i])``. Square grids are written exactly
like the reference; non-square grids are written ``(ny, nx)`` (attribute ``lossviz_layout``). Both are
read. Unfinished points: ``-1`` in the reference's files (read as NaN, ``done=False``), NaN in ours
(with a ``lossviz_done`` mask dataset to tell "diverged" from "not computed"). Our metadata is JSON in
the root attribute ``lossviz_meta``. Estimated errors of adaptive surfaces (``Surface.errors``,
from :mod:`lossviz.refine` / :mod:`lossviz.subsample`) are float64 datasets ``<metric>_err`` in the
metric's layout (NaN where unknown) with the attributes ``lossviz_role = "error"`` and
``lossviz_error_of = <metric>``; only datasets so marked are read back as errors, never as metrics.

Direction files
---------------
Groups ``xdirection`` (and ``ydirection``) with datasets ``"0"``, ``"1"``, ... one per tensor in
``parameters()`` order (weights) or ``state_dict()`` order (states, with zero-filled 0-d
``num_batches_tracked`` entries so the indices line up), float32 (``h5_util.write_list`` /
``read_list`` and ``net_plotter.setup_direction``). PCA files add root datasets
``explained_variance_ratio_``, ``singular_values_``, ``explained_variance_``
(``projection.setup_PCA_directions``).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np
import torch

from lossviz.directions import DirectionSet
from lossviz.files import write_atomic
from lossviz.params import ParamSpace

LAYOUT_YX = "yx"  # values[i, j] = f(x[j], y[i]), dataset shape (ny, nx)
_RESERVED = {"xcoordinates", "ycoordinates", "dir_file", "lossviz_done"}
_PCA_KEYS = ("explained_variance_ratio_", "singular_values_", "explained_variance_")
_FORMAT = "lossviz-surface-1"
_ERROR_SUFFIX = "_err"
_ERROR_ROLE = "error"  # value of the dataset attribute "lossviz_role" on an error-estimate dataset
#: the most grid points a surface file read may declare (200 MB per float64 metric): lossviz computes at
#: most :data:`lossviz.grid.MAX_POINTS`; a larger declaration is refused before anything is read
MAX_READ_POINTS = 25_000_000


# ---------------------------------------------------------------------------------------- helpers
def _open_read(path: str | os.PathLike) -> h5py.File:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path!r} is not a readable HDF5 file ({exc})") from None


def _json(obj: Any) -> str:
    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (np.floating, np.integer, np.bool_)):
            return o.item()
        if isinstance(o, torch.Tensor):
            return o.detach().cpu().tolist()
        return str(o)

    return json.dumps(obj, default=default, allow_nan=True)


def _surface_class():
    from lossviz.landscape import Surface  # lazy: surface.py imports the engine

    return Surface


def _coords(f: h5py.File, name: str, path: str) -> np.ndarray:
    ds = f[name]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.shape[0] < 1:
        raise ValueError(
            f"{path!r}: dataset {name!r} must be a non-empty 1-D array of coordinates, "
            f"found shape {getattr(ds, 'shape', 'a group')}"
        )
    _refuse_huge(path, f"dataset {name!r}", ds.shape)
    try:
        return np.asarray(ds[()], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path!r}: dataset {name!r} is not numeric") from None


# ---------------------------------------------------------------------------------------- surfaces
def hdf5_bytes(build: Callable[[h5py.File], None]) -> bytes:
    """The bytes of an HDF5 file that ``build(f)`` fills, built in memory.

    Writing those bytes is then one plain write: a full disk is an ordinary ``OSError`` (ENOSPC),
    and no h5py handle is ever left on a file the disk could not take (h5py's "Can't destroy cache"
    and a crash at exit)."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        build(f)
    return buf.getvalue()


def surface_bytes(surface, dir_file: str | None = None,
                  extend: Callable[[h5py.File], None] | None = None) -> bytes:
    """``surface`` as the bytes of a Li-compatible surface file (see :func:`write_surface`);
    ``extend(f)`` adds the caller's own datasets and attributes (the session's direction vectors)."""
    x = np.asarray(surface.x, dtype=np.float64)
    y = None if surface.y is None else np.asarray(surface.y, dtype=np.float64)
    shape = (len(x),) if y is None else (len(y), len(x))
    meta = dict(getattr(surface, "meta", None) or {})
    if dir_file is None:
        dir_file = str(meta.get("dir_file", "") or "")
    values = dict(surface.values)
    for name, arr in values.items():
        if not isinstance(name, str) or not name or "/" in name or name in _RESERVED:
            raise ValueError(
                f"metric name {name!r} cannot be a dataset name: use e.g. 'train_loss' (no '/', "
                f"not one of {sorted(_RESERVED)})"
            )
        if np.shape(arr) != shape:
            raise ValueError(
                f"metric {name!r} has shape {np.shape(arr)}, expected {shape} for a grid of "
                f"{len(x)} x-values" + ("" if y is None else f" and {len(y)} y-values")
            )
    errors = _error_datasets(dict(getattr(surface, "errors", None) or {}), values, shape)
    done = getattr(surface, "done", None)
    if done is None:
        done = np.ones(shape, dtype=bool)
        for arr in values.values():
            done &= ~np.isnan(np.asarray(arr, dtype=np.float64))
    done = np.asarray(done, dtype=bool)
    if done.shape != shape:
        raise ValueError(f"surface.done has shape {done.shape}, expected {shape}")
    directions = getattr(surface, "directions", None)

    def build(f: h5py.File) -> None:
        f["dir_file"] = dir_file  # scalar string, as in setup_surface_file
        f["xcoordinates"] = x
        if y is not None:
            f["ycoordinates"] = y
        for name, arr in values.items():
            # (ny, nx): for square grids byte-identical to the reference's layout
            f.create_dataset(name, data=np.asarray(arr, dtype=np.float64))
        for ds_name, (metric, arr) in errors.items():
            ds = f.create_dataset(ds_name, data=arr)
            ds.attrs["lossviz_role"] = _ERROR_ROLE
            ds.attrs["lossviz_error_of"] = metric
        f.create_dataset("lossviz_done", data=done.astype(np.uint8))
        f.attrs["lossviz_format"] = _FORMAT
        f.attrs["lossviz_meta"] = _json(meta)
        if y is not None:
            f.attrs["lossviz_layout"] = LAYOUT_YX
        if directions is not None and hasattr(directions, "describe"):
            f.attrs["lossviz_directions"] = _json(directions.describe())
        if extend is not None:
            extend(f)

    return hdf5_bytes(build)


def write_surface(path: str | os.PathLike, surface, dir_file: str | None = None) -> None:
    """Write ``surface`` as a Li-compatible surface file (atomically; built in memory, so a full
    disk raises a plain ``OSError``).

    ``dir_file`` (default ``surface.meta["dir_file"]`` or ``""``) is stored as the scalar string
    dataset ``dir_file``.
    """
    write_atomic(path, surface_bytes(surface, dir_file))


def read_surface(path: str | os.PathLike):
    """Read a surface file written by lossviz or by the reference (``plot_surface.py``).

    Returns a :class:`lossviz.landscape.Surface` with ``values`` ``(nx,)`` or ``(ny, nx)`` float64,
    NaN where a point was not computed (the reference's ``-1``), ``done`` the computed points and
    ``directions=None`` (the vectors live in the direction file named by ``meta["dir_file"]``).
    """
    spath = os.fspath(path)
    with _open_read(spath) as f:
        if "xcoordinates" not in f:
            raise ValueError(
                f"{spath!r} has no 'xcoordinates' dataset: not a loss surface file (expected "
                "xcoordinates, optional ycoordinates and metric datasets such as train_loss)"
            )
        x = _coords(f, "xcoordinates", spath)
        y = _coords(f, "ycoordinates", spath) if "ycoordinates" in f else None
        _refuse_huge(spath, "the grid (ycoordinates x xcoordinates)", (len(x),) if y is None else (len(y), len(x)))
        ours = f.attrs.get("lossviz_format") is not None
        nx = len(x)
        ny = None if y is None else len(y)
        shape = (nx,) if y is None else (ny, nx)
        values: dict[str, np.ndarray] = {}
        errors: dict[str, np.ndarray] = {}
        for name, ds in f.items():
            if name in _RESERVED or name.startswith("lossviz_") or not isinstance(ds, h5py.Dataset):
                continue
            if ds.dtype.kind not in "fiu":
                continue
            if _is_error_dataset(ds):
                errors[_error_of(ds, name, spath)] = _grid_values(ds, name, x, y, spath)
                continue
            values[name] = _grid_values(ds, name, x, y, spath)
        for metric in errors:
            if metric not in values:
                raise ValueError(
                    f"{spath!r}: holds an error estimate for metric {metric!r} but no dataset "
                    f"{metric!r}; the file is damaged: re-create it"
                )
        if not values:
            raise ValueError(
                f"{spath!r} has coordinates but no metric dataset of shape {shape} (expected e.g. "
                "'train_loss'); the surface was set up but never computed"
            )
        if ours:
            if "lossviz_done" in f:
                done_ds = f["lossviz_done"]
                if done_ds.shape != shape:
                    raise ValueError(
                        f"{spath!r}: dataset 'lossviz_done' has shape {done_ds.shape}, expected {shape}"
                    )
                done = np.asarray(done_ds[()], dtype=bool)
            else:
                done = np.logical_and.reduce([~np.isnan(v) for v in values.values()])
            meta = _json_attr(f, "lossviz_meta", spath)
        else:
            # the reference marks unfinished points with -1 (crunch: -np.ones(shape))
            unfinished = np.logical_or.reduce([v == -1 for v in values.values()])
            for name in values:
                values[name] = np.where(unfinished, np.nan, values[name])
            done = ~unfinished
            meta = {}
        dir_file = _dir_file(f)
    if dir_file:
        meta.setdefault("dir_file", dir_file)
    Surface = _surface_class()
    return Surface(x=x, y=y, values=values, done=done, directions=None, meta=meta, errors=errors)


def _error_datasets(
    errors: dict[str, Any], values: dict[str, Any], shape: tuple[int, ...]
) -> dict[str, tuple[str, np.ndarray]]:
    """``{dataset name: (metric, float64 array)}`` for ``surface.errors``, checked against the
    metrics (each error belongs to a metric, has its shape, and its ``<metric>_err`` name is free)."""
    out: dict[str, tuple[str, np.ndarray]] = {}
    for metric, arr in errors.items():
        if metric not in values:
            raise ValueError(
                f"surface.errors has an entry for {metric!r} but there is no such metric (metrics: "
                f"{sorted(values)}); key each error estimate by the metric it belongs to"
            )
        if np.shape(arr) != shape:
            raise ValueError(
                f"surface.errors[{metric!r}] has shape {np.shape(arr)}, expected {shape} (the shape "
                "of the metric it belongs to)"
            )
        ds_name = metric + _ERROR_SUFFIX
        if ds_name in values:
            raise ValueError(
                f"cannot store the error estimate of {metric!r} as dataset {ds_name!r}: a metric "
                f"of that name exists; rename the metric"
            )
        out[ds_name] = (metric, np.asarray(arr, dtype=np.float64))
    return out


def _is_error_dataset(ds: h5py.Dataset) -> bool:
    role = ds.attrs.get("lossviz_role")
    return role is not None and isinstance(role, (str, bytes)) and _attr_str(role) == _ERROR_ROLE


def _error_of(ds: h5py.Dataset, name: str, path: str) -> str:
    """The metric an error-estimate dataset belongs to (its ``lossviz_error_of`` attribute)."""
    raw = ds.attrs.get("lossviz_error_of")
    if raw is None and name.endswith(_ERROR_SUFFIX):
        return name[: -len(_ERROR_SUFFIX)]
    if not isinstance(raw, (str, bytes)) or not _attr_str(raw):
        raise ValueError(
            f"{path!r}: dataset {name!r} is marked as an error estimate but its attribute "
            "'lossviz_error_of' does not name a metric; the file is damaged: re-create it"
        )
    return _attr_str(raw)


def read_json_attr(f: h5py.File | h5py.Dataset, name: str, path: str) -> dict:
    """A JSON-object attribute (``{}`` when absent); anything else is refused in words naming
    ``path`` (never unpickled: h5py returns opaque bytes as numpy voids)."""
    raw = f.attrs.get(name, "{}")
    if not isinstance(raw, (str, bytes)):
        raise ValueError(
            f"{path!r}: attribute {name!r} is not JSON text (it holds {type(raw).__name__} data); "
            "the file was not written by lossviz or is damaged: re-create it"
        )
    try:
        value = json.loads(_attr_str(raw) or "{}")
    except ValueError:
        raise ValueError(
            f"{path!r}: attribute {name!r} is not valid JSON; the file was not written by lossviz or "
            "is damaged: re-create it"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{path!r}: attribute {name!r} must be a JSON object, got {type(value).__name__}; the file "
            "was not written by lossviz or is damaged: re-create it"
        )
    return value


_json_attr = read_json_attr


def _attr_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _dir_file(f: h5py.File) -> str:
    if "dir_file" not in f or not isinstance(f["dir_file"], h5py.Dataset):
        return ""
    ds = f["dir_file"]
    if ds.size == 0:
        return ""
    raw = ds[()] if ds.ndim == 0 else ds[(0,) * ds.ndim]  # the first string only: never a huge read
    if isinstance(raw, bytes):
        return raw.decode()
    if isinstance(raw, np.ndarray):
        raw = raw.reshape(-1)[0] if raw.size else b""
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    return str(raw)


def _refuse_huge(path: str, what: str, shape: tuple[int, ...]) -> None:
    """Refuse ``what`` (a dataset, the grid) declaring more than :data:`MAX_READ_POINTS` values,
    before anything of it is read."""
    n = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if n > MAX_READ_POINTS:
        raise ValueError(
            f"{path!r}: {what} declares {' x '.join(map(str, shape))} = {n:.3g} values, more than the "
            f"{MAX_READ_POINTS:,} a surface file may hold ({8 * n / 1e9:,.0f} GB as float64): the file is "
            "damaged or not a loss surface; nothing was read"
        )


def _grid_values(ds: h5py.Dataset, name: str, x: np.ndarray, y: np.ndarray | None, path: str):
    nx = len(x)
    expected = [(nx,)] if y is None else [(len(y), nx), (nx, len(y))]
    if tuple(ds.shape) not in expected:  # checked on the declared shape: nothing is read before
        _refuse_huge(path, f"dataset {name!r}", tuple(ds.shape))
    arr = np.asarray(ds[()], dtype=np.float64)
    if y is None:
        if arr.shape != (nx,):
            raise ValueError(
                f"{path!r}: dataset {name!r} has shape {arr.shape}, expected ({nx},) to match "
                "xcoordinates"
            )
        return arr
    ny = len(y)
    if arr.shape == (ny, nx):  # ours, or any square grid (identical to the reference's fill order)
        return arr
    if arr.shape == (nx, ny):  # the reference's declared shape, filled in meshgrid (ny, nx) order
        return arr.reshape(ny, nx)
    raise ValueError(
        f"{path!r}: dataset {name!r} has shape {arr.shape}, expected ({ny}, {nx}) (or the reference's "
        f"({nx}, {ny})) for {nx} xcoordinates and {ny} ycoordinates"
    )


# ---------------------------------------------------------------------------------------- directions
def _file_names(space: ParamSpace) -> list[str]:
    """Tensor names in the order of the reference's direction lists."""
    return space.names if space.kind == "weights" else list(space.state_names)


def write_directions(path: str | os.PathLike, directions: DirectionSet, space: ParamSpace) -> None:
    """Write ``directions`` in the reference's layout (atomically); see the module docstring."""
    if directions.kind != space.kind:
        raise ValueError(
            f"directions are {directions.kind!r} vectors but the space is {space.kind!r}; build the "
            f"space with ParamSpace(model, {directions.kind!r})"
        )
    for k, v in enumerate(directions.vectors):
        if v.dim() != 1 or v.numel() != space.numel:
            raise ValueError(
                f"direction {k} has shape {tuple(v.shape)}, expected ({space.numel},) for this space"
            )
    shapes = getattr(space, "state_shapes", {}) or {}
    entry_of = {e.name: e for e in space.entries}
    names = _file_names(space)

    def build(f: h5py.File) -> None:
        # a 1D set has only the x direction
        for group, vec in zip(("xdirection", "ydirection"), directions.vectors, strict=False):
            grp = f.create_group(group)
            vec = vec.detach().cpu().to(torch.float32)
            for i, name in enumerate(names):
                if name in entry_of:
                    e = entry_of[name]
                    data = vec[e.slice].reshape(e.shape).numpy()
                else:  # e.g. num_batches_tracked: present in the reference's lists, unused
                    data = np.zeros(shapes.get(name, ()), dtype=np.float32)
                grp.create_dataset(str(i), data=data)
        for key in _PCA_KEYS:
            if key in directions.meta:
                f[key] = np.asarray(directions.meta[key], dtype=np.float64)
        f.attrs["lossviz_directions"] = _json(directions.describe())
        f.attrs["lossviz_names"] = _json(names)

    write_atomic(path, hdf5_bytes(build))


def read_directions(path: str | os.PathLike, space: ParamSpace) -> DirectionSet:
    """Read a direction file (ours or the reference's) against ``space``.

    Order is the only key: dataset ``"i"`` is the ``i``-th tensor of ``parameters()`` (weights) or of
    ``state_dict()`` (states; a file without the ``num_batches_tracked`` entries is accepted too).
    Shapes are checked tensor by tensor.
    """
    spath = os.fspath(path)
    with _open_read(spath) as f:
        if "xdirection" not in f or not isinstance(f["xdirection"], h5py.Group):
            raise ValueError(
                f"{spath!r} has no 'xdirection' group: not a direction file (expected groups "
                "xdirection [and ydirection] with datasets '0', '1', ...)"
            )
        info = _json_attr(f, "lossviz_directions", spath)
        if info.get("kind") and info["kind"] != space.kind:
            raise ValueError(
                f"{spath!r} holds {info['kind']!r} directions but the space is {space.kind!r}; use "
                f"ParamSpace(model, {info['kind']!r})"
            )
        groups = ["xdirection"] + (["ydirection"] if "ydirection" in f else [])
        vectors = [_read_group(f[g], g, space, spath) for g in groups]
        meta = {k: v for k, v in info.items() if k not in
                ("kind", "normalization", "ignore", "seed", "method", "ndim", "numel")}
        for key in _PCA_KEYS:
            if key in f:
                meta[key] = np.asarray(f[key][()], dtype=np.float64).tolist()
    method = info.get("method") or ("pca" if "explained_variance_ratio_" in meta else "custom")
    return DirectionSet(
        vectors=vectors,
        kind=space.kind,
        normalization=info.get("normalization"),
        ignore=info.get("ignore"),
        seed=info.get("seed"),
        method=method,
        meta=meta,
    )


def _read_group(grp: h5py.Group, gname: str, space: ParamSpace, path: str) -> torch.Tensor:
    count = len(grp)
    full = _file_names(space)
    if count == len(full):
        names = full
    elif count == len(space.entries):
        names = space.names
    else:
        raise ValueError(
            f"{path!r}: group {gname!r} holds {count} tensors but this {space.kind} space has "
            f"{len(full)} (in {'parameters()' if space.kind == 'weights' else 'state_dict()'} "
            "order); the file belongs to another model or direction type (weights/states)"
        )
    entry_of = {e.name: e for e in space.entries}
    parts: dict[str, torch.Tensor] = {}
    for i, name in enumerate(names):
        key = str(i)
        if key not in grp:
            raise ValueError(
                f"{path!r}: group {gname!r} has no dataset {key!r} (expected '0'..'{count - 1}')"
            )
        ds = grp[key]
        if name not in entry_of:
            continue  # num_batches_tracked and other non-float state entries
        e = entry_of[name]
        if tuple(ds.shape) != e.shape:
            raise ValueError(
                f"{path!r}: dataset '{gname}/{key}' has shape {list(ds.shape)} but the model's "
                f"tensor {name!r} has shape {list(e.shape)}; the file belongs to another architecture"
            )
        parts[name] = torch.from_numpy(np.asarray(ds[()], dtype=np.float32)).reshape(-1)
    if not space.entries:
        return torch.zeros(0)
    return torch.cat([parts[e.name] for e in space.entries])
