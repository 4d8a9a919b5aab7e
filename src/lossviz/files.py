"""Durable file writes and safetensors files: the one home of both.

Every file lossviz writes goes through here. A file is written under a temporary name in its target's
folder (``.tmp-<pid>-<random><suffix>``, a name the project store's orphan cleaning recognizes),
flushed and fsynced, then renamed onto its final name and the folder fsynced, so a killed process
never leaves a half-written file under the final name::

    with atomic_path("surface.h5") as tmp:   # any writer that takes a path
        write_something(tmp)
    write_atomic("blob.bin", data)           # bytes
    write_safetensors("w.safetensors", tensors, {"format": "..."})

Safetensors files are read with :func:`read_safetensors` (or, from bytes already read and hashed,
:func:`safetensors_from_bytes`), which never unpickle. The project store gives its files their final
names inside its own transactions, so it uses the pieces: :func:`temporary_path`,
:func:`write_durably`, :func:`fsync_file`, :func:`fsync_dir`, and :func:`no_space_error` for a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "atomic_path",
    "fsync_dir",
    "fsync_file",
    "is_disk_full",
    "no_space_error",
    "read_safetensors",
    "read_safetensors_metadata",
    "safetensors_bytes",
    "safetensors_from_bytes",
    "temporary_path",
    "write_atomic",
    "write_durably",
    "write_safetensors",
]

TMP_PREFIX = ".tmp-"


# ------------------------------------------------------------------------------ durable writes
def temporary_path(folder: str | os.PathLike, suffix: str = "") -> Path:
    """A fresh temporary name in ``folder``: ``.tmp-<pid>-<32 hex><suffix>`` (the pid lets a later
    opening of a project tell a dead writer's leftovers from a live one's)."""
    return Path(folder) / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}{suffix}"


def fsync_file(path: str | os.PathLike) -> None:
    """Flush ``path``'s data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames in ``folder`` durable, where the OS allows fsyncing a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_durably(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` (a temporary name: nothing is renamed here), flush and fsync it."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success fsync it, ``os.replace`` it onto ``path``
    and fsync the folder. On an exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {str(target)!r}: folder {str(folder)!r} does not exist")
    tmp = temporary_path(folder, target.suffix)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the mode open() gives
    try:
        yield str(tmp)
        fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


# ------------------------------------------------------------------------------ a full disk
def is_disk_full(exc: BaseException) -> bool:
    """True for the OS's "no space left" (or quota) errors."""
    return isinstance(exc, OSError) and (
        exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))
        or "no space left" in str(exc).lower()  # h5py reports errno 28 in its message only
    )


def no_space_error(path: str | os.PathLike, what: str, exc: BaseException) -> OSError:
    """The error to raise when writing ``what`` under ``path`` ran out of space (nothing stored)."""
    return OSError(
        errno.ENOSPC,
        f"no space left on the disk of {path} while writing {what} ({exc}): nothing was stored; "
        "free some space (or move the project to a larger disk) and try again",
    )


# ------------------------------------------------------------------------------ safetensors
def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """``tensors`` (copied to the CPU, contiguous, unshared: tied weights are saved too) as
    safetensors bytes, with string ``metadata``."""
    from safetensors.torch import save

    clean = {str(k): v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return save(clean, metadata=dict(metadata) if metadata else None)


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Save ``tensors`` as a safetensors file, atomically and durably."""
    write_atomic(path, safetensors_bytes(tensors, metadata))


def read_safetensors(path: str | os.PathLike, *, hint: str = "") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, tensors on the CPU in file order; never
    unpickles. ``FileNotFoundError`` when it is missing, ``ValueError`` (ending with ``hint``) when
    it is not a safetensors file."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is no mapping
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError (no common base) on bad headers
        raise ValueError(
            f"{path} is not a valid safetensors file ({exc}); lossviz never unpickles files"
            + (f": {hint}" if hint else "")
        ) from None
    return tensors, meta


def safetensors_from_bytes(
    data: bytes, path: str | os.PathLike, *, hint: str = ""
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of safetensors ``data`` already read from ``path`` (parsed in memory, so
    a caller that hashes the bytes reads the file once); never unpickles. ``ValueError`` (naming
    ``path``, ending with ``hint``) when ``data`` is not a safetensors file."""
    import json

    from safetensors.torch import load

    try:
        tensors = load(data)
        meta = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")]).get("__metadata__") or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError (no common base) on bad headers
        raise ValueError(
            f"{path} is not a valid safetensors file ({exc}); lossviz never unpickles files"
            + (f": {hint}" if hint else "")
        ) from None
    return dict(tensors), {str(k): str(v) for k, v in meta.items()}


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (``{}`` when there is none), its tensors unread."""
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="pt") as f:
        return dict(f.metadata() or {})
