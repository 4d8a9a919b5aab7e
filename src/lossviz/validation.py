"""Declarative checks of arguments, in the spirit of scikit-learn's parameter constraints.

A constraint describes the values it accepts in words, and :func:`check` turns a value into the
checked (coerced) value or raises one error that names the argument, what it must be and what it
got::

    check("epochs", epochs, Interval(int, 1, None))             # an integer >= 1
    check("lr", lr, Interval(float, 0, None, closed="neither"))  # a finite number > 0
    check("optimizer", name, Options(OPTIMIZERS))                # one of ('sgd', 'adam', ...)

    @validate_params({"n": [Interval(int, 2, None)]})
    def interpolate(a, b, n): ...

Booleans are never numbers here (``True`` is not the integer 1), NaN and infinities are never in an
interval, and a float with no fractional part (``3.0``) is accepted as the integer 3 only when
``Interval(int, ..., whole_floats=True)`` (widget messages, which arrive as JSON numbers).

This module imports neither torch nor numpy at import time, so the CLI can use it before any
heavy import.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["Boolean", "Constraint", "Interval", "Options", "check", "validate_params"]

F = TypeVar("F", bound=Callable[..., Any])


class Constraint:
    """A set of accepted values: ``accepts(value)``, ``coerce(value)`` and words for the error."""

    def accepts(self, value: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def coerce(self, value: Any) -> Any:
        return value

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


class Interval(Constraint):
    """Numbers of ``kind`` (``int`` or ``float``) between ``left`` and ``right`` (``None``: unbounded).

    ``closed``: which ends belong to the interval, ``"both"`` (default), ``"left"``, ``"right"`` or
    ``"neither"``. An ``int`` interval takes integers (and, with ``whole_floats=True``, floats without
    a fractional part); a ``float`` interval takes any finite real number and returns a ``float``.
    """

    def __init__(self, kind: type, left: float | None, right: float | None, *, closed: str = "both",
                 whole_floats: bool = False):
        if kind not in (int, float):
            raise TypeError(f"Interval kind must be int or float, got {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be 'both', 'left', 'right' or 'neither', got {closed!r}")
        self.kind, self.left, self.right, self.closed = kind, left, right, closed
        self.whole_floats = whole_floats

    def _number(self, value: Any) -> float | int | None:
        if not _is_real(value):
            return None
        v = float(value)
        if not math.isfinite(v):
            return None
        if self.kind is int:
            if isinstance(value, numbers.Integral):
                return int(value)
            if self.whole_floats and v == int(v):
                return int(v)
            return None
        return v

    def accepts(self, value: Any) -> bool:
        v = self._number(value)
        if v is None:
            return False
        left_in = self.closed in ("both", "left")
        right_in = self.closed in ("both", "right")
        if self.left is not None and (v < self.left or (v == self.left and not left_in)):
            return False
        return not (self.right is not None and (v > self.right or (v == self.right and not right_in)))

    def coerce(self, value: Any) -> Any:
        return self._number(value)

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        lo, hi = self.left, self.right
        left_in = self.closed in ("both", "left")
        right_in = self.closed in ("both", "right")
        if lo is None and hi is None:
            return what
        if hi is None:
            return f"{what} {'>=' if left_in else '>'} {lo:g}"
        if lo is None:
            return f"{what} {'<=' if right_in else '<'} {hi:g}"
        return f"{what} in {'[' if left_in else '('}{lo:g}, {hi:g}{']' if right_in else ')'}"


class Options(Constraint):
    """One of a fixed collection of values (compared with ``==``)."""

    def __init__(self, values: Collection[Any]):
        self.values = tuple(values)

    def accepts(self, value: Any) -> bool:
        try:
            return value in self.values
        except TypeError:  # an unhashable value against a set-like collection
            return False

    def describe(self) -> str:
        return f"one of {self.values}"


class Boolean(Constraint):
    """``True`` or ``False`` (numpy booleans included), never ``0``/``1`` or a string."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool) or type(value).__name__ == "bool_"

    def coerce(self, value: Any) -> bool:
        return bool(value)

    def describe(self) -> str:
        return "True or False"


def check(name: str, value: Any, *constraints: Constraint, allow_none: bool = False, hint: str = "",
          error: type[Exception] = ValueError) -> Any:
    """``value`` coerced by the first of ``constraints`` that accepts it; otherwise ``error``
    ``"{name} must be {what}, got {value!r}"`` (plus ``hint``). ``allow_none``: ``None`` passes."""
    if value is None and allow_none:
        return None
    for c in constraints:
        if c.accepts(value):
            return c.coerce(value)
    what = " or ".join(c.describe() for c in constraints) or "valid"
    shown = repr(value)
    if len(shown) > 80:  # never echo a huge value back (widget messages, files)
        shown = shown[:77] + "..."
    raise error(f"{name} must be {what}, got {shown}" + (f": {hint}" if hint else ""))


def validate_params(constraints: Mapping[str, Sequence[Constraint] | Constraint],
                    *, allow_none: Collection[str] = ()) -> Callable[[F], F]:
    """Decorator: check the named arguments of every call against ``constraints`` (a constraint or a
    list, any of which may accept) before the function runs; the checked values replace the given
    ones. Names in ``allow_none`` may be ``None``."""

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        unknown = set(constraints) - set(sig.parameters)
        if unknown:
            raise TypeError(f"validate_params: {fn.__qualname__} has no parameter(s) {sorted(unknown)}")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            for pname, cons in constraints.items():
                items = [cons] if isinstance(cons, Constraint) else list(cons)
                bound.arguments[pname] = check(pname, bound.arguments[pname], *items,
                                               allow_none=pname in allow_none)
            return fn(*bound.args, **bound.kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
