"""The Explorer's trajectory projection: one computation at a time, the newest request wins, results
cached by what defines them.

Checkpoints arrive many times a second while a job trains; each asks for the projection again. A
:class:`ProjectionRequests` runs one computation at a time: a request arriving while one runs waits
in a single slot (a newer one replaces it), and a result is shown only if its view (method, outlier
choice, surface) is still the one selected and it was asked for after the one shown (so the count of
checkpoints shown never goes backwards). Results are kept by their :attr:`ProjectionRequest.key`
(method, checkpoint ids, options): asking again for a view seen before costs nothing.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CACHE_SIZE", "ProjectionRequest", "ProjectionRequests"]

CACHE_SIZE = 32
"""Projections kept per Explorer (least recently used dropped first)."""

_order = itertools.count(1)


@dataclass(frozen=True)
class ProjectionRequest:
    """What defines one projection: ``method`` of the checkpoints ``ids`` (those not hidden), with the
    outliers left out unless ``include_outliers``, in ``surface``'s plane for ``"surface"``; ``total``
    checkpoints were in the table when it was asked for; ``asked``: the user asked (its result is
    stored in the project), not a refresh after new checkpoints."""

    method: str
    ids: tuple[int, ...]
    total: int
    include_outliers: bool = False
    surface: Any = field(default=None, compare=False)
    asked: bool = False
    order: int = field(default_factory=lambda: next(_order), compare=False)

    @property
    def view(self) -> tuple[Hashable, ...]:
        """What the user selected: the method, the outlier choice and the surface (by identity)."""
        return (self.method, self.include_outliers, None if self.surface is None else id(self.surface))

    @property
    def key(self) -> tuple[Hashable, ...]:
        """What the result depends on: the view and the checkpoints."""
        return (*self.view, self.ids)


class ProjectionRequests:
    """One projection computation at a time, the newest request wins.

    Parameters
    ----------
    compute
        ``compute(request, done)`` starts computing ``request`` and calls ``done(result)`` when it
        ends (``done(None)`` when it failed or was cancelled), from any thread.
    show
        ``show(request, result)`` puts a result on screen.
    current_view
        The :attr:`ProjectionRequest.view` selected now.
    show_failed
        ``show_failed(request)`` when a computation of the view selected failed (so that what is on
        screen never stays another method's).
    """

    def __init__(self, compute: Callable[[ProjectionRequest, Callable[[Any], None]], None],
                 show: Callable[[ProjectionRequest, Any], None], current_view: Callable[[], tuple[Hashable, ...]],
                 show_failed: Callable[[ProjectionRequest], None] | None = None, cache_size: int = CACHE_SIZE):
        self._compute, self._show, self._current_view = compute, show, current_view
        self._show_failed = show_failed
        self._lock = threading.RLock()
        self._cache: OrderedDict[tuple[Hashable, ...], Any] = OrderedDict()
        self._cache_size = cache_size
        self._running: ProjectionRequest | None = None
        self._waiting: ProjectionRequest | None = None
        self._shown = 0  # order of the request whose result is on screen

    def request(self, req: ProjectionRequest) -> None:
        """Show ``req``'s projection: at once when known, else when computed (after the one running)."""
        with self._lock:
            known = self._cache.get(req.key)
            if known is not None:
                self._cache.move_to_end(req.key)
            elif self._running is not None:
                self._waiting = req  # a newer request replaces an older waiting one
                return
            else:
                self._running = req
        if known is not None:
            self._offer(req, known)
        else:
            self._compute(req, lambda result: self._ended(req, result))

    def busy(self) -> bool:
        """Whether a computation runs or waits."""
        with self._lock:
            return self._running is not None or self._waiting is not None

    def forget(self) -> None:
        """Drop the cache and any waiting request, and never show a result asked for before now
        (another project is shown)."""
        with self._lock:
            self._cache.clear()
            self._waiting = None
            self._shown = next(_order)

    def _ended(self, req: ProjectionRequest, result: Any) -> None:
        try:
            if result is not None:
                with self._lock:
                    self._cache[req.key] = result
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
                self._offer(req, result)
            elif self._show_failed is not None:
                self._offer(req, None)
        finally:
            with self._lock:
                self._running, nxt, self._waiting = None, self._waiting, None
            if nxt is not None:
                self.request(nxt)

    def _offer(self, req: ProjectionRequest, result: Any) -> None:
        with self._lock:
            if req.view != self._current_view() or req.order < self._shown:
                return
            self._shown = req.order
            if result is None and self._show_failed is not None:
                self._show_failed(req)
            else:
                self._show(req, result)  # under the lock: two results never land out of order
