"""The writers of a project folder: who holds the write lock, and what a writer leaves behind.

A write transaction records its process in ``index.sqlite-writer`` (:func:`record_writer`), so that a
process that waited too long can name the holder (:func:`recorded_writer`, :func:`pid_stopped`). A
writer gives a durable temporary file (``.tmp-<pid>-<random>``, :func:`lossviz.files.temporary_path`) its
final name as a second hard link inside its transaction (:func:`link_final`), and marks the file a
replaced row named by a temporary link (:func:`retire_link`). So whatever a killed writer leaves is
its temporary names and the final names linked to them: :func:`clean_folder` removes those of dead
writers that no row names, and never removes a file by its name alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import time
from pathlib import Path

from lossviz import files

__all__ = ["STALE_TMP_SECONDS", "clean_folder", "link_final", "pid_alive", "pid_stopped", "record_writer",
           "recorded_writer", "retire_link"]

_TMP_RE = re.compile(rf"^\.*{re.escape(files.TMP_PREFIX)}(\d+)-[0-9a-f]+")  # files.temporary_path's names
#: a temporary file older than this (seconds) is a leftover even when its pid is alive (a reused pid)
STALE_TMP_SECONDS = 24 * 3600


# ---------------------------------------------------------------------------------------- processes
def pid_alive(pid: int) -> bool:
    """True when process ``pid`` may still write: it exists and is no zombie (this process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a killed process its parent has not reaped yet (a zombie) writes nothing any more
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[-1][:1] != "Z"
    except OSError:
        return True


def pid_stopped(pid: int) -> bool:
    """True when process ``pid`` is stopped (SIGSTOP, a debugger): alive, but not progressing."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[-1][:1] in ("T", "t")
    except OSError:  # no /proc (macOS, Windows): unknown, said as not stopped
        return False


# ------------------------------------------------------------------------------------ the lock's record
def record_writer(path: Path, what: str) -> None:
    """Record this process as the write lock's holder (advisory: a failure to write it is ignored)."""
    with contextlib.suppress(OSError):
        path.write_text(json.dumps({"pid": os.getpid(), "what": what, "since": time.time()}))


def recorded_writer(path: Path) -> tuple[int, str, float] | None:
    """``(pid, what, since)`` of the live process recorded as the write lock's holder, else None."""
    try:
        info = json.loads(path.read_text())
        pid, what, since = int(info["pid"]), str(info["what"]), float(info["since"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return (pid, what, since) if pid > 0 and pid_alive(pid) else None


# ---------------------------------------------------------------------------------------- leftovers
def link_final(tmp: Path, final: Path) -> None:
    """Give the durable temporary file ``tmp`` its final name ``final`` as a second hard link (the
    temporary name stays until the commit: it marks the final name as this writer's until then)."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError as exc:  # a file system without hard links (FAT, some network shares): rename
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            raise
        os.replace(tmp, final)


def retire_link(final: Path) -> Path | None:
    """A second, temporary name (``.tmp-<pid>-...``) hard-linked to ``final``, a file the row being
    replaced names: it marks ``final`` as this writer's to remove once the new row commits, so a
    writer killed after the commit leaves a dead temporary whose cleaning removes ``final`` too (a
    kill before the commit leaves ``final`` named by its row: only the temporary goes). ``None``
    where ``final`` is missing or the file system has no hard links (``final`` is then removed after
    the commit, without the mark)."""
    mark = files.temporary_path(final.parent, final.suffix)
    try:
        os.link(final, mark)
    except OSError:
        return None
    return mark


def _dead_temporary(p: Path, now: float) -> bool:
    """True for a regular file named like :func:`lossviz.files.temporary_path`'s whose writer is dead
    (or that is older than a day)."""
    m = _TMP_RE.match(p.name)
    if m is None:
        return False
    try:
        st = p.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    return not pid_alive(int(m.group(1))) or now - st.st_mtime > STALE_TMP_SECONDS


def clean_folder(folder: Path, sub: str, named: set[str]) -> list[str]:
    """Remove ``folder``'s dead temporary files and the final names hard-linked to them that no row
    names (``named``: the paths the index names); returns the removed paths (``sub/name``)."""
    now = time.time()
    entries = list(folder.iterdir())
    dead = [p for p in entries if _dead_temporary(p, now)]
    if not dead:
        return []
    linked: dict[tuple[int, int], list[Path]] = {}
    for p in entries:
        if _TMP_RE.match(p.name):
            continue
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            linked.setdefault((st.st_dev, st.st_ino), []).append(p)
    removed = []
    for tmp in dead:
        try:
            st = tmp.lstat()
        except FileNotFoundError:
            continue
        for final in linked.get((st.st_dev, st.st_ino), []):
            if f"{sub}/{final.name}" not in named:  # a killed writer's new file, or the old one it retired
                final.unlink(missing_ok=True)
                removed.append(f"{sub}/{final.name}")
        tmp.unlink(missing_ok=True)
        removed.append(f"{sub}/{tmp.name}")
    return removed
