"""A project on disk: the checkpoint tree and everything computed on it, crash-safe.

Layout of a project folder::

    index.sqlite                  the index (SQLite, WAL mode): checkpoints, branches, results, meta
    weights/<id>.safetensors      a checkpoint's model state dict
    optim/<id>.safetensors        its optimizer state (tensors; the non-tensor structure as JSON metadata)
    results/<key>.<ext>           surfaces, projections, Hessian results, keyed by a hash of their spec

Crash safety: a file is written under a temporary name (``.tmp-<pid>-<random>``, by
:mod:`lossviz.files`), flushed and fsynced; then, inside one ``BEGIN IMMEDIATE`` transaction, its row
is inserted, the file hard-linked to its final name, the folder fsynced, and the transaction
committed; the temporary name is removed after the commit. A process killed at any instant leaves
either a committed row with its complete file, or no row; what it leaves besides is its temporary file
and, between the link and the commit, a final name linked to that same file. A result stored again
under its key gets a new file; the file the old row named is marked inside the transaction by a second,
temporary name and removed after the commit, so a kill just after the commit leaves that mark, and one
file per key survives the cleaning. The next :class:`Store` opening removes a dead writer's temporary
files and the final names linked to them that no row names: it never removes a file by its name alone,
so a file it did not write (or one a row names) stays.
Orphan cleaning runs inside a write transaction, so it never races another process's insert.

A project folder is untrusted input: a missing, empty or unreadable index next to project files is
refused (nothing is changed), every path read from the index is confined to its own sub-folder
(:meth:`Store.stored_path`), and weight and optimizer files are checked against the sha256 recorded
when they were written. Several processes may open one project; SQLite serializes the writes, ``database
is locked`` errors are retried, and a writer that holds the lock past ``timeout`` is named by its pid
(each write transaction records it in ``index.sqlite-writer``): :class:`ProjectLockedError`.

Nothing is ever unpickled: weights and optimizer states are safetensors files (the optimizer state's
structure by :mod:`lossviz.optim_state`). The writers' side (the lock's record, giving final names,
cleaning a dead writer's leftovers) is :mod:`lossviz.writers`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import numbers
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch

from lossviz import files
from lossviz.jsonable import dumps
from lossviz.optim_state import decode_optimizer_state, encode_optimizer_state
from lossviz.writers import (
    clean_folder,
    link_final,
    pid_stopped,
    record_writer,
    recorded_writer,
    retire_link,
)

CHECKPOINT_KINDS = ("init", "train", "disturb", "interpolate", "import")
RESULT_KINDS = ("surface", "projection", "hessian", "connect")
SCHEMA_VERSION = 1
INDEX_NAME = "index.sqlite"
#: who holds the write lock: ``{"pid", "what", "since"}``, written when a write transaction starts and
#: removed before it ends (so a waiter that gives up can name the holder)
WRITER_INFO = INDEX_NAME + "-writer"
SUBFOLDERS = ("weights", "optim", "results")
_RESTORE = "restore index.sqlite from a copy of the project; nothing was changed"
_LOW_SPACE = 1 << 20  # bytes: on a disk with less free space, SQLite's "disk I/O error" is a full disk

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS branches (
    id INTEGER PRIMARY KEY,
    parent INTEGER,
    created REAL NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    parent INTEGER,
    branch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    epoch REAL NOT NULL,
    step INTEGER NOT NULL,
    hparams TEXT NOT NULL,
    metrics TEXT NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    note TEXT NOT NULL,
    weights TEXT NOT NULL,
    optim TEXT,
    weights_sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_parent ON checkpoints(parent);
CREATE INDEX IF NOT EXISTS checkpoints_branch ON checkpoints(branch);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    file TEXT,
    meta TEXT NOT NULL,
    complete INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
"""


# ---------------------------------------------------------------------------------------- records
@dataclass
class Checkpoint:
    """One point of the checkpoint tree (the row of the index; weights live in their own file)."""

    id: int
    parent: int | None
    branch: int
    kind: str
    epoch: float
    step: int
    hparams: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: float = 0.0
    status: str = "ok"
    note: str = ""
    #: the identity of the project it belongs to (:attr:`Store.project_id`); empty for a record made by hand
    project: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def spec_key(spec: Mapping[str, Any]) -> str:
    """A stable hash (sha256 hex) of a json-able spec: everything that defines a result."""
    return hashlib.sha256(dumps(dict(spec)).encode()).hexdigest()


def tensor_sha(*tensors: torch.Tensor) -> str:
    """sha256 of tensors' shapes, dtypes and bytes (how a stored key names given data or vectors)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checkpoint_id(value: Any) -> int | None:
    """The id of a :class:`Checkpoint` or an integer; ``None`` for anything else (booleans are not ids)."""
    if isinstance(value, Checkpoint):
        return value.id
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return None


def refuse_foreign(value: Any, project: str, here: str) -> None:
    """Refuse (ValueError) ``value`` when it is a :class:`Checkpoint` record of another project than
    the one whose identity is ``project`` (``here``: words naming that project)."""
    if isinstance(value, Checkpoint) and value.project and project and value.project != project:
        raise ValueError(
            f"checkpoint {value.id} belongs to another project (identity {value.project[:12]}), not to "
            f"{here}: pass an id or one of this project's checkpoints()"
        )


class ProjectLockedError(RuntimeError):
    """Another process held a project's write lock for longer than the :class:`Store`'s ``timeout``."""


# ---------------------------------------------------------------------------------------- files
def _disk_full(exc: BaseException, folder: Path) -> bool:
    """True for "no space left" errors of the OS or of SQLite ("database or disk is full"), and for
    SQLite's "disk I/O error" while ``folder``'s disk has almost no free space (how SQLite reports
    that it could not grow its shared-memory file)."""
    if files.is_disk_full(exc):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    msg = str(exc).lower()
    return "full" in msg or ("disk i/o error" in msg and _free_bytes(folder) < _LOW_SPACE)


def _free_bytes(folder: Path) -> int:
    """The free space on ``folder``'s disk in bytes (unknown: said as plenty)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 62


def _project_files(folder: Path) -> list[str]:
    """The files under ``folder``'s weights/, optim/ and results/ (relative names, sorted)."""
    found = []
    for sub in SUBFOLDERS:
        with contextlib.suppress(OSError):
            found += [f"{sub}/{p.name}" for p in (folder / sub).iterdir()]
    return sorted(found)


def _inserted_id(cur: sqlite3.Cursor) -> int:
    """The row id the cursor's last INSERT gave."""
    if cur.lastrowid is None:  # pragma: no cover - sqlite sets it after every INSERT
        raise RuntimeError("sqlite reported no row id after an INSERT")
    return int(cur.lastrowid)


def _read_verified(path: Path, sha256: str | None, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of the safetensors file ``path``, read once: the bytes are hashed and
    checked against ``sha256`` (when one is recorded), then parsed from memory."""
    hint = "restore the file from a copy of the project or remove the checkpoint"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{what} {path} is missing; the project was modified by hand: {hint}"
        ) from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        files.safetensors_from_bytes(data, path, hint=hint)  # a file that is no safetensors is named so
        raise ValueError(
            f"{what} {path} was changed after lossviz wrote it (its sha256 differs from the one the "
            f"index recorded): {hint}"
        )
    return files.safetensors_from_bytes(data, path, hint=hint)


# ---------------------------------------------------------------------------------------- store
class Store:
    """A project folder: SQLite index + safetensors weight files. Thread-safe; multi-process safe.

    Parameters
    ----------
    path:
        The project folder (created when missing unless ``create=False``).
    timeout:
        Seconds to wait for another process's write lock before giving up with a
        :class:`ProjectLockedError` that names the holder.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True, timeout: float = 60.0):
        self.path = Path(path)
        index = self.path / INDEX_NAME
        made_folder: Path | None = None  # the first folder this call created (removed on failure)
        if not self.path.exists():
            if not create:
                raise FileNotFoundError(
                    f"no lossviz project at {self.path}: pass create=True or check the path"
                )
            made_folder = next(
                (p for p in reversed([self.path, *self.path.parents]) if not p.exists()), self.path
            )
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise ValueError(f"{self.path} is a file, not a project folder: choose another path")
        elif not index.exists():
            self._refuse_lost_index(index, "is missing")
            foreign = sorted(
                p.name for p in self.path.iterdir()
                if p.name not in SUBFOLDERS
                and not p.name.startswith((".", INDEX_NAME))
            )
            if foreign:
                raise ValueError(
                    f"{self.path} is not a lossviz project (it has no {INDEX_NAME}) and is not empty "
                    f"(it holds {', '.join(map(repr, foreign[:3]))}{', ...' if len(foreign) > 3 else ''}): "
                    "open an existing project folder, or give a new or empty folder to create one"
                )
        if not os.access(self.path, os.W_OK) or (index.exists() and not os.access(index, os.W_OK)):
            raise PermissionError(
                f"project folder {self.path} is read-only: lossviz writes its index and weight files "
                "there; make it writable (chmod -R u+w) or copy the project to a writable folder"
            )
        #: True when this call created the project (its index); see :meth:`discard_if_created`.
        self.created = not index.exists()
        self._made_folder = made_folder
        self._made_subs: list[str] = []
        self.timeout = float(timeout)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            conn = self._conn = sqlite3.connect(
                str(index),
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            self._retry(lambda: conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}"))
            tables = {r[0] for r in self._retry(lambda: conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'").fetchall())}
            if not tables:  # a new index, or one emptied (0 bytes: a partial copy, a full disk)
                self._refuse_lost_index(index, "is empty (0 bytes)" if index.stat().st_size == 0 else "holds no tables")
            if tables and not {"meta", "checkpoints"} <= tables:
                raise ValueError(
                    f"{index} is a SQLite database of something else (tables {sorted(tables)[:5]}), "
                    "not a lossviz index: choose another folder for the project"
                )
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = FULL")
            with self.transaction() as cur:
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    cur.execute(stmt)
                columns = {r[1] for r in cur.execute("PRAGMA table_info(checkpoints)")}
                if "optim_sha256" not in columns:  # an index written before optimizer files were hashed
                    cur.execute("ALTER TABLE checkpoints ADD COLUMN optim_sha256 TEXT")
                row = cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    cur.execute(
                        "INSERT INTO meta(key, value) VALUES ('schema_version', ?)",
                        (dumps(SCHEMA_VERSION),),
                    )
                    cur.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES ('created', ?)",
                        (dumps(time.time()),),
                    )
                if cur.execute("SELECT 1 FROM meta WHERE key='project'").fetchone() is None:
                    cur.execute("INSERT INTO meta(key, value) VALUES ('project', ?)", (dumps(uuid.uuid4().hex),))
                project = json.loads(cur.execute("SELECT value FROM meta WHERE key='project'").fetchone()[0])
            #: the project's identity (a random id its index keeps; a copy shares it): its checkpoints carry it
            self.project_id = str(project)
            for sub in SUBFOLDERS:
                if not (self.path / sub).is_dir():
                    (self.path / sub).mkdir()
                    self._made_subs.append(sub)
            self.cleaned = self.clean_orphans()
        except sqlite3.DatabaseError as exc:
            self.discard_if_created()
            if _disk_full(exc, self.path):
                raise files.no_space_error(self.path, "its index", exc) from None
            msg = str(exc).lower()
            if "locked" in msg or "busy" in msg:
                raise self._locked_error() from None
            if "readonly" in msg or "read-only" in msg or "unable to open" in msg:
                raise PermissionError(
                    f"project folder {self.path} cannot be written ({exc}): make it writable "
                    "(chmod -R u+w) or copy the project to a writable folder"
                ) from None
            if "disk i/o error" in msg:  # the disk failed, not the index's content
                raise OSError(
                    errno.EIO,
                    f"the disk of {self.path} failed while lossviz opened the project's index ({exc}): "
                    "check the disk (its free space, its connection) and try again; nothing was changed",
                ) from None
            raise ValueError(
                f"{index} is not a readable lossviz index ({exc}): the folder is not a lossviz "
                "project or its index is damaged; restore index.sqlite from a copy of the project or "
                "choose another folder (nothing was changed)"
            ) from None
        except BaseException:
            self.discard_if_created()
            raise

    def _refuse_lost_index(self, index: Path, state: str) -> None:
        """Refuse a folder whose index ``state`` (is missing, is empty) while it holds project files:
        opening it would start a new, empty index beside them."""
        held = _project_files(self.path)
        if held:
            raise ValueError(
                f"the index {index} {state}, but the folder holds project files "
                f"({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}; {len(held)} in all): the "
                f"index was lost or only partly copied; {_RESTORE}"
            )

    def discard_if_created(self) -> None:
        """Close; if this Store created the project (a failed opening, e.g. a Session given bad
        arguments), remove what it created so the folder is as it was."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self.close()
        for sub in self._made_subs:
            with contextlib.suppress(OSError):
                (self.path / sub).rmdir()  # only when empty
        self._made_subs = []
        if not getattr(self, "created", False):
            return
        for name in (INDEX_NAME, INDEX_NAME + "-wal", INDEX_NAME + "-shm", INDEX_NAME + "-journal", WRITER_INFO):
            (self.path / name).unlink(missing_ok=True)
        folder = self._made_folder
        if folder is not None:
            for p in [self.path, *self.path.parents]:
                try:
                    p.rmdir()
                except OSError:
                    break
                if p == folder:
                    break
        self.created = False

    # ----------------------------------------------------------------- sqlite plumbing
    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"{self} is not open")
        return self._conn

    def _retry(self, fn: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                msg = str(exc).lower()
                if "locked" not in msg and "busy" not in msg:
                    raise
                if time.monotonic() > deadline:
                    raise self._locked_error() from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _locked_error(self) -> ProjectLockedError:
        """The error for a write lock held past ``timeout``, naming its holder where it is known."""
        holder = recorded_writer(self.path / WRITER_INFO)
        if holder is None:
            return ProjectLockedError(
                f"project {self.path} is locked by another process for more than {self.timeout:g} s: "
                "wait for it or stop it"
            )
        pid, what, since = holder
        doing = f"{what}, stopped" if pid_stopped(pid) else what
        return ProjectLockedError(
            f"project {self.path} is locked by process {pid} ({doing}) for {max(0.0, time.time() - since):.0f} s: "
            f"wait for it or stop it (kill {pid})"
        )

    @contextmanager
    def transaction(self, what: str = "writing") -> Iterator[sqlite3.Cursor]:
        """One write transaction (``BEGIN IMMEDIATE``): committed on success, rolled back on error.
        While it runs, ``index.sqlite-writer`` names this process and ``what`` it is doing."""
        with self._lock:
            cur = self._db.cursor()
            self._retry(lambda: cur.execute("BEGIN IMMEDIATE"))
            info = self.path / WRITER_INFO
            record_writer(info, what)
            try:
                yield cur
            except BaseException:
                info.unlink(missing_ok=True)  # removed while the lock is held: never the next holder's
                self._db.execute("ROLLBACK")
                raise
            else:
                info.unlink(missing_ok=True)
                self._retry(lambda: cur.execute("COMMIT"))

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._retry(lambda: self._db.execute(sql, args).fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ----------------------------------------------------------------- orphans
    def clean_orphans(self) -> list[str]:
        """Remove what writers that died left behind: their temporary files (``.tmp-<pid>-...``, pid
        dead, or older than a day) and the final names hard-linked to those that no row names.

        Never removes a file by its name alone: a file no row names that is not a dead writer's stays.
        Runs inside a write transaction so that no other process can be between its link and its
        commit. Returns the removed paths (relative to the project)."""
        removed: list[str] = []
        with self.transaction("cleaning temporary files") as cur:
            named = {
                r[0] for r in cur.execute(
                    "SELECT weights FROM checkpoints UNION SELECT optim FROM checkpoints "
                    "UNION SELECT file FROM results"
                ) if isinstance(r[0], str)
            }
            for sub in SUBFOLDERS:
                removed += clean_folder(self.path / sub, sub, named)
        return removed

    # ----------------------------------------------------------------- paths from the index
    def stored_path(self, rel: Any, sub: str, row: str) -> Path:
        """The file ``rel`` (a path read from the index, in ``row``) names inside the project's
        ``sub`` folder (weights, optim or results).

        Refused (``ValueError`` naming the row) unless ``rel`` is ``<sub>/<name>``: no absolute path,
        no ``..``, no other folder, no symbolic link that leads out of ``sub``."""
        def refused(why: str) -> ValueError:
            return ValueError(
                f"{row} in {self.path / INDEX_NAME} names the file {rel!r}, which {why}: lossviz only "
                f"uses files inside the project's {sub}/ folder; the index was altered: {_RESTORE}"
            )

        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise refused("is no path")
        if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive:
            raise refused("is an absolute path")
        parts = rel.replace("\\", "/").split("/")
        if ".." in parts:
            raise refused("leads out of the project (..)")
        if len(parts) != 2 or parts[0] != sub or parts[1] in ("", "."):
            raise refused(f"is not a file directly inside {sub}/")
        home = self.path.resolve() / sub
        path = self.path / sub / parts[1]
        if path.resolve().parent != home:
            raise refused(f"is a symbolic link that leads out of {sub}/ (or {sub}/ is one)")
        return path

    # ----------------------------------------------------------------- meta
    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM meta WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, dumps(value)),
            )

    def set_meta_if_absent(self, key: str, value: Any) -> Any:
        """Set ``key`` unless present; return the stored value (atomic across processes)."""
        with self.transaction() as cur:
            row = cur.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            if row is not None:
                return json.loads(row[0])
            cur.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (key, dumps(value)))
            return value

    # ----------------------------------------------------------------- checkpoints
    def _row_to_checkpoint(self, row: sqlite3.Row) -> Checkpoint:
        return Checkpoint(
            id=int(row["id"]),
            parent=None if row["parent"] is None else int(row["parent"]),
            branch=int(row["branch"]),
            kind=row["kind"],
            epoch=float(row["epoch"]),
            step=int(row["step"]),
            hparams=json.loads(row["hparams"]),
            metrics=json.loads(row["metrics"]),
            created=float(row["created"]),
            status=row["status"],
            note=row["note"],
            project=self.project_id,
        )

    def add_checkpoint(
        self,
        state_dict: Mapping[str, torch.Tensor],
        *,
        parent: int | None,
        branch: int | str = "auto",
        kind: str = "train",
        epoch: float = 0.0,
        step: int = 0,
        hparams: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        status: str = "ok",
        note: str = "",
        optim_state: Mapping[str, Any] | None = None,
        branch_note: str = "",
    ) -> Checkpoint:
        """Write a checkpoint's files durably, then enter it in the index in one transaction.

        ``branch``: an existing branch id; ``"new"`` for a new branch forked at ``parent``; or
        ``"auto"``: ``parent``'s branch if ``parent`` has no successor yet, else a new branch (decided
        inside the transaction, so two writers never both continue one branch).
        """
        return self.add_checkpoints([dict(
            state_dict=state_dict, parent=parent, branch=branch, kind=kind, epoch=epoch, step=step,
            hparams=hparams, metrics=metrics, status=status, note=note, optim_state=optim_state,
            branch_note=branch_note,
        )])[0]

    def add_checkpoints(self, entries: Sequence[Mapping[str, Any]]) -> list[Checkpoint]:
        """Add several checkpoints in ONE transaction: all of them, or (an error, a kill) none.

        Each entry holds :meth:`add_checkpoint`'s arguments (``state_dict``, or a function returning
        it, called when its file is written, and the keywords); an entry's ``parent_entry`` (the index
        of an earlier entry) makes that entry's checkpoint its parent. Every file is written durably
        before the transaction, so the write lock is held only for the inserts and links."""
        for e in entries:
            if e.get("kind", "train") not in CHECKPOINT_KINDS:
                raise ValueError(f"unknown checkpoint kind {e.get('kind')!r}: use one of {CHECKPOINT_KINDS}")
            branch = e.get("branch", "auto")
            if not isinstance(branch, int) and branch not in ("auto", "new"):
                raise ValueError(f"branch must be a branch id, 'auto' or 'new', not {branch!r}")
        staged: list[tuple[Path, str, Path | None, str | None]] = []  # (weights tmp, sha, optim tmp, sha)
        linked: list[Path] = []  # final names given in the transaction: removed unless it commits
        try:
            for e in entries:
                sd = e["state_dict"]
                staged.append(self._stage_checkpoint(sd() if callable(sd) else sd, e.get("optim_state")))
            created = time.time()
            rows: list[sqlite3.Row] = []
            what = "adding a checkpoint" if len(entries) == 1 else f"adding {len(entries)} checkpoints"
            with self.transaction(what) as cur:
                for e, files_of in zip(entries, staged, strict=True):
                    parent = rows[e["parent_entry"]]["id"] if e.get("parent_entry") is not None else e.get("parent")
                    rows.append(self._insert_checkpoint(cur, e, parent, files_of, created, linked))
                for sub in sorted({p.parent.name for p in linked}):  # the links are durable before the commit
                    files.fsync_dir(self.path / sub)
            linked = []  # committed: the final names are the rows' now
            return [self._row_to_checkpoint(row) for row in rows]
        except (OSError, sqlite3.OperationalError) as exc:
            if _disk_full(exc, self.path):
                raise files.no_space_error(self.path, "a checkpoint", exc) from exc
            raise
        finally:
            for p in [*linked, *(t for s in staged for t in (s[0], s[2]))]:
                if p is not None:
                    p.unlink(missing_ok=True)

    def _stage_checkpoint(self, state_dict: Mapping[str, torch.Tensor],
                          optim_state: Mapping[str, Any] | None) -> tuple[Path, str, Path | None, str | None]:
        """A checkpoint's weight (and optimizer) file written durably under temporary names, with their sha256."""
        weights_bytes = files.safetensors_bytes(state_dict, {"format": "lossviz-weights"})
        sha = hashlib.sha256(weights_bytes).hexdigest()
        tmp_w = files.temporary_path(self.path / "weights")
        tmp_o: Path | None = None
        optim_sha: str | None = None
        try:
            files.write_durably(tmp_w, weights_bytes)
            del weights_bytes
            if optim_state is not None:
                tensors, structure = encode_optimizer_state(optim_state)
                optim_bytes = files.safetensors_bytes(tensors, {"format": "lossviz-optimizer", "structure": structure})
                optim_sha = hashlib.sha256(optim_bytes).hexdigest()
                tmp_o = files.temporary_path(self.path / "optim")
                files.write_durably(tmp_o, optim_bytes)
        except BaseException:
            for p in (tmp_w, tmp_o):
                if p is not None:
                    p.unlink(missing_ok=True)
            raise
        return tmp_w, sha, tmp_o, optim_sha

    def _insert_checkpoint(self, cur: sqlite3.Cursor, e: Mapping[str, Any], parent: int | None,
                           staged: tuple[Path, str, Path | None, str | None], created: float,
                           linked: list[Path]) -> sqlite3.Row:
        """Inside a write transaction: the branch decided, the row inserted and its files linked to
        their final names (appended to ``linked``; the caller fsyncs their folders); returns the row."""
        tmp_w, sha, tmp_o, optim_sha = staged
        branch = e.get("branch", "auto")
        prow = None
        if parent is not None:
            prow = cur.execute("SELECT branch FROM checkpoints WHERE id=?", (parent,)).fetchone()
            if prow is None:
                raise ValueError(f"parent checkpoint {parent} does not exist in {self.path}")
        if isinstance(branch, int):
            if cur.execute("SELECT 1 FROM branches WHERE id=?", (branch,)).fetchone() is None:
                raise ValueError(f"branch {branch} does not exist in {self.path}")
            branch_id = branch
        else:
            continued = prow is not None and branch == "auto" and cur.execute(
                "SELECT 1 FROM checkpoints WHERE parent=? LIMIT 1", (parent,)).fetchone() is None
            if prow is not None and continued:
                branch_id = int(prow["branch"])
            else:
                cur.execute(
                    "INSERT INTO branches(parent, created, note) VALUES (?, ?, ?)",
                    (parent, created, e.get("branch_note", "")),
                )
                branch_id = _inserted_id(cur)
        cur.execute(
            "INSERT INTO checkpoints(parent, branch, kind, epoch, step, hparams, metrics, "
            "created, status, note, weights, optim, weights_sha256, optim_sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?)",
            (
                parent,
                branch_id,
                e.get("kind", "train"),
                float(e.get("epoch", 0.0)),
                int(e.get("step", 0)),
                dumps(dict(e.get("hparams") or {})),
                dumps({k: float(v) for k, v in (e.get("metrics") or {}).items()}),
                created,
                e.get("status", "ok"),
                e.get("note", ""),
                None if tmp_o is None else "",
                sha,
                optim_sha,
            ),
        )
        cid = _inserted_id(cur)
        wrel = self._free_name("weights", cid)
        orel = None if tmp_o is None else self._free_name("optim", cid)
        cur.execute("UPDATE checkpoints SET weights=?, optim=? WHERE id=?", (wrel, orel, cid))
        for tmp, rel, sub in ((tmp_w, wrel, "weights"), (tmp_o, orel, "optim")):
            if tmp is not None and rel is not None:
                final = self.stored_path(rel, sub, f"checkpoint {cid}'s {sub}")
                link_final(tmp, final)
                linked.append(final)
        return cur.execute("SELECT * FROM checkpoints WHERE id=?", (cid,)).fetchone()

    def _free_name(self, sub: str, cid: int) -> str:
        """``<sub>/<cid>.safetensors``, or a unique variant when a file (one no row names: the row is
        new) already has that name; such a file is left alone."""
        rel = f"{sub}/{cid}.safetensors"
        if os.path.lexists(self.path / rel):
            rel = f"{sub}/{cid}-{uuid.uuid4().hex[:12]}.safetensors"
        return rel

    def checkpoint(self, id: int | Checkpoint) -> Checkpoint:
        """Checkpoint ``id`` (an id, or a :class:`Checkpoint` record of this project).

        A record of another project is refused (ValueError), and so is one of a copy of this project
        that went its own way (its checkpoint of that id was created at another time)."""
        given = id if isinstance(id, Checkpoint) else None
        if isinstance(id, Checkpoint):
            refuse_foreign(id, self.project_id, f"the project {self.path}")
            cid = id.id
        else:
            cid = int(id)
        rows = self._read("SELECT * FROM checkpoints WHERE id=?", (cid,))
        if not rows:
            raise KeyError(f"no checkpoint {cid} in {self.path}; list them with checkpoints()")
        found = self._row_to_checkpoint(rows[0])
        if given is not None and given.project and given.created != found.created:
            raise ValueError(
                f"the checkpoint {cid} given is not checkpoint {cid} of {self.path} (it was created at another "
                "time: it comes from a copy of this project that went its own way): pass an id or one of "
                "this project's checkpoints()"
            )
        return found

    def delete_checkpoints(self, ids: Sequence[int]) -> list[str]:
        """Remove checkpoints ``ids`` from the index and the files lossviz wrote for them.

        Refused (ValueError, nothing changed) when an id is unknown or a checkpoint has a child that
        is not deleted with it (delete the subtree from there). The rows go in one write transaction;
        after the commit each file a row named is removed only if it lies in its own sub-folder
        (:meth:`stored_path`) and its sha256 is the one recorded when lossviz wrote it: a file changed
        or put there by someone else stays, and so does one whose hash was never recorded. A process
        killed between the commit and the removal leaves files no row names (never a row without its
        file). Results computed on the checkpoints stay (their keys name the ids). Returns the removed
        paths, relative to the project."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        doomed: list[tuple[str, str, str | None, int]] = []
        with self.transaction(f"deleting {len(wanted)} checkpoint(s)") as cur:
            marks = ",".join("?" * len(wanted))
            rows = cur.execute(f"SELECT id, weights, weights_sha256, optim, optim_sha256 FROM checkpoints "
                               f"WHERE id IN ({marks})", wanted).fetchall()
            missing = sorted(set(wanted) - {int(r[0]) for r in rows})
            if missing:
                raise KeyError(f"no checkpoint {', '.join(map(str, missing))} in {self.path}; nothing was deleted")
            kids = cur.execute(f"SELECT id, parent FROM checkpoints WHERE parent IN ({marks})", wanted).fetchall()
            kept_kids = sorted({int(k[0]) for k in kids} - set(wanted))
            if kept_kids:
                raise ValueError(
                    f"checkpoint(s) {', '.join(map(str, kept_kids))} grew from the ones to delete: delete them too "
                    "(the whole subtree), or keep their parents; nothing was deleted")
            for r in rows:
                doomed.append((r[1], "weights", r[2], int(r[0])))
                if r[3] is not None:
                    doomed.append((r[3], "optim", r[4], int(r[0])))
            cur.execute(f"DELETE FROM checkpoints WHERE id IN ({marks})", wanted)
        removed = []
        for rel, sub, sha, cid in doomed:
            try:
                path = self.stored_path(rel, sub, f"checkpoint {cid}'s {sub}")
                if sha is not None and path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha:
                    path.unlink()
                    removed.append(rel)
            except (OSError, ValueError):  # a path that leads elsewhere, a file in use: left where it is
                continue
        return removed

    def checkpoints(self, branch: int | None = None) -> list[Checkpoint]:
        if branch is None:
            rows = self._read("SELECT * FROM checkpoints ORDER BY id")
        else:
            rows = self._read("SELECT * FROM checkpoints WHERE branch=? ORDER BY id", (int(branch),))
        return [self._row_to_checkpoint(r) for r in rows]

    def children(self, id: int) -> list[int]:
        return [int(r[0]) for r in self._read("SELECT id FROM checkpoints WHERE parent=? ORDER BY id", (int(id),))]

    def n_checkpoints(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM checkpoints")[0][0])

    def branches(self) -> list[dict]:
        """Branches: id, parent checkpoint (where it forked), root (first id), last id, n."""
        rows = self._read(
            "SELECT b.id, b.parent, b.created, b.note, MIN(c.id) AS root, MAX(c.id) AS last, "
            "COUNT(c.id) AS n FROM branches b LEFT JOIN checkpoints c ON c.branch = b.id "
            "GROUP BY b.id ORDER BY b.id"
        )
        return [
            {
                "id": int(r["id"]),
                "parent": None if r["parent"] is None else int(r["parent"]),
                "root": None if r["root"] is None else int(r["root"]),
                "last": None if r["last"] is None else int(r["last"]),
                "n": int(r["n"]),
                "created": float(r["created"]),
                "note": r["note"],
            }
            for r in rows
            if r["n"] > 0
        ]

    def weights_path(self, id: int) -> Path:
        """The weight file of checkpoint ``id`` (the path its row names, confined to weights/)."""
        rows = self._read("SELECT weights FROM checkpoints WHERE id=?", (int(id),))
        if not rows:
            raise KeyError(f"no checkpoint {id} in {self.path}; list them with checkpoints()")
        return self.stored_path(rows[0][0], "weights", f"checkpoint {id}'s weights")

    def load_state_dict(self, id: int) -> dict[str, torch.Tensor]:
        """The checkpoint's model state dict (safetensors; never unpickles), its file checked against
        the sha256 recorded when it was written."""
        rows = self._read("SELECT weights, weights_sha256 FROM checkpoints WHERE id=?", (int(id),))
        if not rows:
            raise KeyError(f"no checkpoint {id} in {self.path}; list them with checkpoints()")
        path = self.stored_path(rows[0][0], "weights", f"checkpoint {id}'s weights")
        tensors, meta = _read_verified(path, rows[0][1], f"the weight file of checkpoint {id}")
        if meta.get("format") != "lossviz-weights":
            raise ValueError(f"{path} is not a lossviz weight file (metadata {meta!r})")
        return tensors

    def load_optim_state(self, id: int) -> dict | None:
        """The optimizer state saved with checkpoint ``id``, or None when it has none; its file is
        checked against the sha256 recorded when it was written (where one was)."""
        rows = self._read("SELECT optim, optim_sha256 FROM checkpoints WHERE id=?", (int(id),))
        if not rows:
            raise KeyError(f"no checkpoint {id} in {self.path}")
        if rows[0][0] is None:
            return None
        path = self.stored_path(rows[0][0], "optim", f"checkpoint {id}'s optim")
        tensors, meta = _read_verified(path, rows[0][1], f"the optimizer-state file of checkpoint {id}")
        if meta.get("format") != "lossviz-optimizer" or "structure" not in meta:
            raise ValueError(f"{path} is not a lossviz optimizer-state file")
        return decode_optimizer_state(tensors, meta["structure"])

    def verify(self, id: int) -> bool:
        """True when checkpoint ``id``'s weight file hashes to the sha256 recorded at write time."""
        rows = self._read("SELECT weights, weights_sha256 FROM checkpoints WHERE id=?", (int(id),))
        if not rows:
            raise KeyError(f"no checkpoint {id} in {self.path}")
        path = self.stored_path(rows[0][0], "weights", f"checkpoint {id}'s weights")
        if not path.is_file():
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() == rows[0][1]

    def modified(self) -> float:
        rows = self._read("SELECT MAX(created) FROM checkpoints")
        last = rows[0][0]
        return float(last) if last is not None else float(self.get_meta("created", 0.0))

    # ----------------------------------------------------------------- results
    def result_path(self, key: str, suffix: str) -> Path:
        return self.path / "results" / f"{key}{suffix}"

    def find_result(self, key: str) -> dict | None:
        """The stored result row for ``key`` (dict with kind, spec, path, meta, complete) or None."""
        rows = self._read("SELECT * FROM results WHERE key=?", (key,))
        if not rows:
            return None
        r = rows[0]
        return {
            "key": r["key"],
            "kind": r["kind"],
            "spec": json.loads(r["spec"]),
            "path": None if r["file"] is None else self.stored_path(r["file"], "results", f"result {key}'s file"),
            "meta": json.loads(r["meta"]),
            "complete": bool(r["complete"]),
            "created": float(r["created"]),
            "updated": float(r["updated"]),
        }

    def results(self, kind: str | None = None) -> list[dict]:
        sql = "SELECT key FROM results" + (" WHERE kind=?" if kind else "") + " ORDER BY created"
        found = (self.find_result(r[0]) for r in self._read(sql, (kind,) if kind else ()))
        return [r for r in found if r is not None]

    def put_result(
        self,
        key: str,
        kind: str,
        spec: Mapping[str, Any],
        *,
        write: Callable[[Path], None] | None = None,
        suffix: str = "",
        meta: Mapping[str, Any] | None = None,
        complete: bool = True,
    ) -> dict:
        """Store (or update) a result: ``write(tmp_path)`` writes its file, which is fsynced and
        linked to ``results/<key>-<version><suffix>`` inside the transaction that upserts the row.

        One file per key: the file the previous row named is marked (:func:`retire_link`) inside the
        transaction and removed after the commit; a writer killed at any instant leaves either the old
        row and its file or the new ones, plus temporaries the next opening cleans."""
        if kind not in RESULT_KINDS:
            raise ValueError(f"unknown result kind {kind!r}: use one of {RESULT_KINDS}")
        tmp: Path | None = None
        rel: str | None = None
        linked: list[Path] = []  # the final name given in the transaction: removed unless it commits
        replaced: Path | None = None  # the previous version's file: removed once the new row commits
        mark: Path | None = None  # its temporary second name (see retire_link)
        try:
            if write is not None:
                tmp = files.temporary_path(self.path / "results", suffix)
                write(tmp)
                files.fsync_file(tmp)
                # a new name for every version: the row points to the old file until the commit, so a
                # kill between the link and the commit leaves the old pair intact
                rel = f"results/{key}-{uuid.uuid4().hex[:12]}{suffix}"
            now = time.time()
            with self.transaction(f"storing a {kind} result") as cur:
                prev = cur.execute("SELECT file FROM results WHERE key=?", (key,)).fetchone()
                if prev is not None and prev[0] is not None and prev[0] != rel:
                    replaced = self.stored_path(prev[0], "results", f"result {key}'s file")
                    mark = retire_link(replaced)
                cur.execute(
                    "INSERT INTO results(key, kind, spec, file, meta, complete, created, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "file=excluded.file, meta=excluded.meta, complete=excluded.complete, "
                    "updated=excluded.updated",
                    (key, kind, dumps(dict(spec)), rel, dumps(dict(meta or {})), int(complete), now, now),
                )
                if tmp is not None and rel is not None:
                    final = self.stored_path(rel, "results", f"result {key}'s file")
                    link_final(tmp, final)
                    linked.append(final)
                if linked or mark is not None:
                    files.fsync_dir(self.path / "results")
            linked = []  # committed
            if replaced is not None:
                replaced.unlink(missing_ok=True)  # committed: the old version goes (its mark next)
        except (OSError, sqlite3.OperationalError) as exc:
            if _disk_full(exc, self.path):
                raise files.no_space_error(self.path, f"a {kind} result", exc) from exc
            raise
        finally:
            for p in [*linked, tmp, mark]:
                if p is not None:
                    p.unlink(missing_ok=True)
        stored = self.find_result(key)
        if stored is None:  # pragma: no cover - another process removed it since the commit
            raise KeyError(f"result {key} was removed from {self.path} while it was stored")
        return stored


# ---------------------------------------------------------------------------------------- projects
def read_summary(folder: str | os.PathLike) -> dict | None:
    """What a project folder's index says about it without opening it for writing: path, name,
    model, data, n_checkpoints, modified (unix time of the last checkpoint, else of the index);
    ``None`` when its index cannot be read."""
    folder = Path(folder)
    index = folder / INDEX_NAME
    try:
        conn = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='spec'").fetchone()
            n, last = conn.execute("SELECT COUNT(*), MAX(created) FROM checkpoints").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    spec = json.loads(row[0]) if row else {}
    return {
        "path": str(folder),
        "name": folder.name,
        "model": spec.get("model"),
        "data": spec.get("data"),
        "n_checkpoints": int(n),
        "modified": float(last) if last is not None else index.stat().st_mtime,
    }


def list_projects(root: str | os.PathLike) -> list[dict]:
    """The summaries (:func:`read_summary`) of the projects (folders with an index) directly under
    ``root``, by name; unreadable ones are left out."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; give the folder that holds the projects")
    found = (read_summary(sub) for sub in sorted(p for p in root.iterdir() if (p / INDEX_NAME).is_file()))
    return [summary for summary in found if summary is not None]
