"""Resumable command-line jobs: the partial surface flushed to its file, and read back to resume.

``lossviz surface`` (and ``lossviz hessian``) hand :class:`PartialWriter` to the computation as its
per-chunk callback: it writes the partial surface (unfinished points NaN, ``done`` False) at most
every ``every`` seconds, and at once on SIGTERM / SIGINT, after which the run stops with
:class:`Interrupted`. The same command then finds the file, checks by :func:`resume_key` that it
holds the same computation (grid, center, directions, data, loss) and computes only the
unfinished points; a reference file's ``-1`` points count as unfinished (:func:`lossviz.io.h5.read_surface`).
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Interrupted", "PartialWriter", "resumable", "resume_key"]

FLUSH_SECONDS = 5.0
"""Default largest time between two writes of the partial surface."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM / SIGINT reached a running job after its partial result was written."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def resume_key(center: Any, directions: Any, **facts: Any) -> str:
    """A SHA-256 hex digest naming one computation: the center's and directions' bytes (float64)
    and the JSON of ``facts`` (grid specs, data, loss, ...)."""
    h = hashlib.sha256()
    for t in (center, *directions):
        h.update(np.ascontiguousarray(t.detach().cpu().double().numpy()).tobytes())
    h.update(json.dumps(facts, sort_keys=True, default=str).encode())
    return h.hexdigest()


def resumable(path: Path, key: str, metrics_needed: list[str], coords: tuple[np.ndarray, np.ndarray | None]):
    """The partial surface in ``path`` to resume, ``None`` when there is none, or a ``str`` saying why the
    file there cannot be resumed. Ours must carry ``key``; a reference file (no key) must have the same
    coordinates and the metrics."""
    if not path.exists():
        return None
    from lossviz.io.h5 import read_surface

    try:
        surface = read_surface(path)
    except (OSError, ValueError) as e:
        return f"it is not a surface file ({e})"
    stored = (surface.meta or {}).get("resume_key")
    if stored is not None and stored != key:
        return "it holds another computation (other grid, model, directions, data or loss)"
    x, y = coords
    same_grid = surface.x.shape == x.shape and np.allclose(surface.x, x) and (
        (surface.y is None and y is None)
        or (surface.y is not None and y is not None and surface.y.shape == y.shape and np.allclose(surface.y, y)))
    if not same_grid:
        return "its grid differs from --x/--y"
    missing = [m for m in metrics_needed if m not in surface.values]
    if missing:
        return f"it has no {missing[0]!r} values"
    return surface


class PartialWriter:
    """A computation's callback ``(surface, n_done, n_total)`` that writes the partial surface with
    ``write(surface)`` when ``every`` seconds have passed since the last write; :meth:`on_signals`
    also writes it on SIGTERM / SIGINT and then raises :class:`Interrupted`."""

    def __init__(self, write: Callable[[Any], None], every: float = FLUSH_SECONDS):
        self.write = write
        self.every = float(every)
        self.surface: Any = None
        self.writes = 0
        self._last = time.monotonic()
        self._writing = False
        self._pending: int | None = None

    def __call__(self, surface: Any, n_done: int, n_total: int) -> None:
        self.surface = surface
        if time.monotonic() - self._last >= self.every:
            self.flush()

    def flush(self) -> None:
        """Write the partial surface now (nothing before the first finished chunk)."""
        if self.surface is None:
            return
        self._writing = True
        try:
            self.write(self.surface)
            self.writes += 1
        finally:
            self._writing = False
            self._last = time.monotonic()
        if self._pending is not None:  # a signal came while writing
            signum, self._pending = self._pending, None
            raise Interrupted(signum)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._writing:
            self._pending = signum
            return
        self.flush()
        raise Interrupted(signum)

    @contextmanager
    def on_signals(self) -> Iterator[PartialWriter]:
        """Within the block, SIGTERM and SIGINT write the partial surface and raise :class:`Interrupted`."""
        if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
            yield self
            return
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
