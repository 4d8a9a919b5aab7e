"""lossviz: loss landscapes and training trajectories of PyTorch models.

``import lossviz`` is light (no torch): the names below (and ``__version__``, from the package
metadata) are imported on first use (PEP 562).

* :class:`Session` (a project: checkpoints, training, stored surfaces) and :class:`Explorer` (its widget);
* :func:`surface` (:func:`lossviz.landscape.compute_surface`), :func:`interpolate` and their result
  :class:`Surface`;
* the submodules, e.g. ``lossviz.hessian``, ``lossviz.pca``, ``lossviz.projection``, ``lossviz.figures``,
  ``lossviz.io``, ``lossviz.zoo``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lossviz import figures as figures
    from lossviz import hessian as hessian
    from lossviz import io as io
    from lossviz import landscape as landscape
    from lossviz import pca as pca
    from lossviz import projection as projection
    from lossviz import zoo as zoo
    from lossviz.landscape import Surface as Surface
    from lossviz.landscape import compute_surface as surface
    from lossviz.landscape import interpolate as interpolate
    from lossviz.session import Session as Session
    from lossviz.widget import Explorer as Explorer

__version__: str  # the installed package's version (pyproject.toml), read on first use

# public name -> (module, attribute)
_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "Session": ("lossviz.session", "Session"),
    "Explorer": ("lossviz.widget", "Explorer"),
    "Surface": ("lossviz.landscape", "Surface"),
    "surface": ("lossviz.landscape", "compute_surface"),
    "interpolate": ("lossviz.landscape", "interpolate"),
}
_SUBMODULES: tuple[str, ...] = ("figures", "hessian", "io", "landscape", "pca", "projection", "zoo")

__all__ = ["Explorer", "Session", "Surface", "__version__", "interpolate", "surface"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        value: Any = version("lossviz")
    elif name in _ATTRIBUTES:
        module, attribute = _ATTRIBUTES[name]
        value = getattr(importlib.import_module(module), attribute)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"lossviz.{name}")
    else:
        raise AttributeError(f"module 'lossviz' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), "__version__", *_ATTRIBUTES, *_SUBMODULES})
