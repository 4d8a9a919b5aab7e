"""User factories named ``package.module:factory`` (models, data sets): imported, never pickled."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def import_factory(spec: str, what: str, returns: str) -> Callable[..., Any]:
    """The callable named by ``spec`` = ``package.module:factory`` (dotted attributes allowed).

    ``what`` names the spec in errors (``"model"``, ``"--dataset"``), ``returns`` what the factory
    should build (for the hint when ``spec`` names something not callable). Every failure raises
    ``ValueError`` naming the problem and the fix.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{what} {spec!r}: write a factory as 'package.module:factory'")
    importlib.invalidate_caches()  # modules written since the interpreter started
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{what} {spec!r}: cannot import module {module_name!r} ({e}); "
                         "put its folder on PYTHONPATH (e.g. PYTHONPATH=. lossviz ...)") from None
    except Exception as e:  # noqa: BLE001 - the module itself failed while importing
        raise ValueError(f"{what} {spec!r}: importing module {module_name!r} failed "
                         f"({type(e).__name__}: {e}); fix the module") from None
    factory: Any = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}; "
                             "check the name after the colon")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(f"{what} {spec!r}: {attr!r} is a {type(factory).__name__}, not callable; "
                         f"name a function that returns {returns}")
    return factory
