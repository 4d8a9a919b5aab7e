"""Files: Li-compatible HDF5 surfaces and directions (:mod:`lossviz.io.h5`) and checkpoints
(:mod:`lossviz.io.checkpoints`). Every writer is atomic: it writes a temporary file in the target's
directory, flushes and fsyncs it, and renames it over the target, so a killed process never leaves a
half-written file under the final name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success fsync it and ``os.replace`` it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {str(target)!r}: folder {str(folder)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


from lossviz.io.checkpoints import (  # noqa: E402
    load_checkpoint_into,
    load_state_dict,
    save_state_dict,
)
from lossviz.io.h5 import (  # noqa: E402
    read_directions,
    read_surface,
    write_directions,
    write_surface,
)

__all__ = [
    "atomic_path",
    "load_checkpoint_into",
    "load_state_dict",
    "read_directions",
    "read_surface",
    "save_state_dict",
    "write_directions",
    "write_surface",
]
