"""Checks of the front end's command messages: each turns one field into the value a session call takes,
or raises :class:`PayloadError` with words that name the field, what it must be and what it got.

Numbers go through :func:`lossviz.validation.check`; the bounds of form fields come from
:data:`lossviz.widget.options.FIELDS`, the table the browser's form uses too.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lossviz.validation import Boolean, Interval, check
from lossviz.widget.options import TRAIN_KEYS, field

__all__ = [
    "MAX_SHOWN_CHARS",
    "PayloadError",
    "boolean",
    "bounded_text",
    "choice",
    "form_number",
    "hparams_object",
    "ids",
    "number",
    "project_hparams",
    "project_path",
    "surface_axis_spec",
    "text",
    "train_hparams",
]

MISSING: Any = ...


MAX_SHOWN_CHARS = 2000  # an error shown in the widget (it may quote a value a message sent) is at most this long


def bounded_text(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` cut in the middle to at most about ``limit`` characters, saying how many were left out:
    a message's 10 MB value quoted in an error is not echoed back to the front end."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]} … ({len(text) - 2 * keep} characters left out) … {text[-keep:]}"


class PayloadError(ValueError):
    """A front-end message that cannot be acted on; its text goes to the ``error`` trait."""


class _Rule(Interval):
    """An :class:`~lossviz.validation.Interval` described in the form's words (``"at least 1"``)."""

    def __init__(self, kind: type, left: float | None, right: float | None, words: str, *, closed: str = "both"):
        super().__init__(kind, left, right, closed=closed, whole_floats=True)
        self.words = words

    def describe(self) -> str:
        return self.words


class _TrueOrFalse(Boolean):
    def describe(self) -> str:
        return "true or false"


def _as_number(key: str, raw: Any) -> Any:
    """A JSON number, or a form's text of one, as a number; anything else is refused."""
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            raise PayloadError(f"{key} must be a number, got {raw!r}") from None
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        raise PayloadError(f"{key} must be a number, got {raw!r}")
    return raw


def number(payload: Mapping[str, Any], key: str, kind: type = float, *, minimum: float | None = None,
           exclusive: bool = False, maximum: float | None = None, default: Any = MISSING,
           allow_none: bool = False) -> Any:
    """``payload[key]`` as a finite ``kind`` (``int`` takes whole floats such as ``3.0``) within
    ``minimum`` (excluded when ``exclusive``) and ``maximum``. Missing, ``None`` or ``""``: ``default``
    when given, else ``None`` when ``allow_none``, else an error."""
    raw = payload.get(key)
    if raw is None or raw == "":
        if default is not MISSING:
            return default
        if allow_none:
            return None
        raise PayloadError(f"{key} is missing: fill in the {key} field")
    given = _as_number(key, raw)  # checked as given, so that errors show it as the user wrote it
    value = check(key, given, Interval(float, None, None), error=PayloadError)
    if kind is int:
        value = check(key, given, _Rule(int, None, None, "a whole number"), error=PayloadError)
    if minimum is not None:
        words = f"{'greater than' if exclusive else 'at least'} {minimum:g}"
        check(key, given, _Rule(kind, minimum, None, words, closed="neither" if exclusive else "both"),
              error=PayloadError)
    if maximum is not None:
        check(key, given, _Rule(kind, None, maximum, f"at most {maximum:g}"), error=PayloadError)
    return value


def form_number(payload: Mapping[str, Any], name: str, *, default: Any = MISSING, allow_none: bool = False) -> Any:
    """:func:`number` with the kind and bounds of the form field ``name``."""
    spec = field(name)
    return number(payload, name, int if spec["type"] == "int" else float, minimum=spec.get("min"),
                  exclusive=bool(spec.get("minExclusive")), maximum=spec.get("max"), default=default,
                  allow_none=allow_none)


def ids(payload: Mapping[str, Any], key: str) -> list[int]:
    """``payload[key]`` as a list of checkpoint ids."""
    raw = payload.get(key)
    if not isinstance(raw, (list, tuple)):
        raise PayloadError(f"{key} must be a list of checkpoint ids, got {raw!r}")
    return [number({key: v}, key, int) for v in raw]


def text(payload: Mapping[str, Any], key: str, default: str | None = None) -> str:
    """``payload[key]`` (or ``default``) as a non-empty, stripped text."""
    raw = payload.get(key, default)
    if not isinstance(raw, str) or not raw.strip():
        raise PayloadError(f"{key} must be a non-empty text, got {raw!r}")
    return raw.strip()


def boolean(payload: Mapping[str, Any], key: str) -> bool | None:
    """``payload[key]`` as ``True``/``False``, or ``None`` when absent (never ``0``/``1`` or a text)."""
    return check(key, payload.get(key), _TrueOrFalse(), allow_none=True, error=PayloadError)


def choice(value: str, choices: tuple[str, ...], name: str) -> str:
    """``value`` when it is one of ``choices``; the error calls it ``name``."""
    if value not in choices:
        raise PayloadError(f"{name} {value!r} is unknown: use one of {list(choices)}")
    return value


def hparams_object(raw: Any) -> Mapping[str, Any]:
    """A message's ``hparams``: an object whose keys are all train hyperparameters."""
    if not isinstance(raw, Mapping):
        raise PayloadError(f"hparams must be an object, got {raw!r}")
    unknown = sorted(set(raw) - set(TRAIN_KEYS))
    if unknown:
        raise PayloadError(f"unknown hyperparameters {unknown}: use {list(TRAIN_KEYS)}")
    return raw


def _left_empty(key: str, value: Any) -> bool:
    """``None``, or ``""`` in a field the form may leave empty (optional, text or choice): not given."""
    spec = field(key)
    return value is None or (value == "" and (spec.get("optional") or spec["type"] in ("text", "choice")))


def train_hparams(raw: Any) -> dict[str, Any]:
    """A train command's ``hparams`` as ``Session.train``'s keyword arguments: the fields given (empty
    ones left out), numbers within the form's bounds, booleans true or false, texts stripped."""
    given = {k: v for k, v in hparams_object(raw).items() if not _left_empty(k, v)}
    hp: dict[str, Any] = {}
    for key in given:
        kind = field(key)["type"]
        if kind in ("float", "int"):
            hp[key] = form_number(given, key)
        elif kind == "bool":
            hp[key] = check(key, given[key], _TrueOrFalse(), error=PayloadError)
        else:
            hp[key] = text(given, key)
    return hp


def project_hparams(raw: Any) -> dict[str, Any]:
    """A create-project command's ``hparams`` (absent: none): as :func:`train_hparams`, every empty
    field left to the project's defaults."""
    given = {} if raw is None else hparams_object(raw)
    return train_hparams({k: v for k, v in given.items() if v not in (None, "")})


def surface_axis_spec(range_text: str, resolution: int) -> str:
    """``"-1:1"`` and 21 -> ``"-1:1:21"`` (Li's axis syntax), checking min < max; ``"auto"`` (or empty)
    and 21 -> ``"auto:21"`` (fitted to the trajectory, :func:`lossviz.grid.auto_axis`)."""
    if str(range_text).strip() in ("", "auto"):
        return f"auto:{int(resolution)}"
    parts = str(range_text).split(":")
    if len(parts) != 2:
        raise PayloadError(f"range {range_text!r} is not min:max (e.g. -1:1) or auto")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise PayloadError(f"range {range_text!r} is not min:max with numbers, e.g. -1:1") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise PayloadError(f"range {range_text!r}: max must be greater than min")
    return f"{lo:g}:{hi:g}:{int(resolution)}"


def project_path(raw: str, root: str | None, *, existing: bool = False) -> Path:
    """A project path from the project panel: absolute as given; relative under ``root`` (default the working
    folder), unless it already starts with that root (a listed project's path) or, for ``existing``, only
    the path as given exists (never ``runs/runs/<name>``). A name the file system cannot take is refused."""
    path = Path(os.path.expanduser(raw))
    try:
        path.exists()  # a name the file system cannot take (too long, ...) is refused here
    except OSError as exc:
        raise PayloadError(f"project path {raw!r} cannot be used ({exc.strerror}): choose a shorter or "
                           "plainer name") from None
    if path.is_absolute():
        return path
    base = Path(os.path.expanduser(root or "."))
    if base.parts and path.parts[: len(base.parts)] == base.parts and base != Path("."):
        return path
    under = base / path
    if existing and not under.exists() and path.exists():
        return path
    return under
