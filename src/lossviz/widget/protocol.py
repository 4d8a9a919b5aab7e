"""What the Explorer needs of a session, a job and a project opener: structural types (PEP 544).

:class:`lossviz.session.Session` is the implementation; anything with these members works (the tests'
fake session does). Long calls take ``wait=False`` and return a :class:`JobLike` whose ``result`` is
what the blocking call returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["JobLike", "SessionFactory", "SessionLike"]


class JobLike(Protocol):
    """A session job: ``state`` is one of queued, running, done, failed, cancelled."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def result(self) -> Any: ...
    @property
    def error(self) -> str | None: ...
    @property
    def progress(self) -> float: ...

    def cancel(self) -> None: ...

    def wait(self, timeout: float | None = None) -> Any: ...


class SessionLike(Protocol):
    """The session methods and attributes the Explorer uses."""

    @property
    def path(self) -> Any: ...
    @property
    def defaults(self) -> Mapping[str, Any]: ...
    @property
    def jobs(self) -> Sequence[JobLike]: ...

    def subscribe(self, callback: Callable[[dict], None]) -> Callable[[], None]: ...

    def checkpoints(self) -> Sequence[Any]: ...

    def checkpoint(self, id: Any) -> Any: ...

    def train(self, from_: Any = None, epochs: int = 1, lr: float | None = None, optimizer: str | None = None,
              momentum: float | None = None, nesterov: bool | None = None, weight_decay: float | None = None,
              batch_size: int | None = None, schedule: Any = None, seed: int | None = None) -> JobLike: ...

    def disturb(self, checkpoint: Any, magnitude: float, seed: int | None = None, *, wait: bool = True) -> Any: ...

    def interpolate(self, a: Any, b: Any, n: int, *, wait: bool = True) -> Any: ...

    def distances(self, ids: Iterable[Any], *, wait: bool = True) -> Any: ...

    def delete(self, ids: Iterable[Any], *, confirm: bool = False) -> list[int]: ...

    def project(self, ids: Iterable[Any] | None = None, method: str = "layout", surface: Any = None, *,
                wait: bool = True, store: bool = True, outliers: str = "include") -> Any: ...

    def surface(self, center: Any, directions: Any = "random", x: Any = "-1:1:21", y: Any = None, *,
                checkpoints: Sequence[Any] | None = None, wait: bool = True,
                adaptive: bool | Mapping[str, Any] | None = None) -> Any: ...


class SessionFactory(Protocol):
    """Opens and lists projects (the :class:`~lossviz.session.Session` class itself)."""

    def opening(self, path: str, **kwargs: Any) -> JobLike: ...

    def list_projects(self, root: str) -> list[dict]: ...
