"""The constants the Explorer's front end and its Python side share, sent once in the ``options`` trait.

The browser reads every choice, field and limit from :func:`explorer_options`; the widget's trait
validators and payload checks read the same names, so a limit changes in one place.
"""

from __future__ import annotations

from typing import Any

from lossviz import zoo
from lossviz.figures import CONTOUR_MODES
from lossviz.training import HPARAM_CONSTRAINTS, HPARAM_NAMES, OPTIMIZERS
from lossviz.validation import Interval
from lossviz.widget.research import CONNECT_CURVES, CONNECT_EPOCHS

__all__ = [
    "CONTOUR_MODES",
    "CREATE_DEFAULTS",
    "DIRECTIONS",
    "FIELDS",
    "FORM_EXTRAS",
    "LIMITS",
    "MAX_STORED_SURFACES",
    "OPTIMIZERS",
    "PROJECTIONS",
    "TRAIN_KEYS",
    "explorer_options",
]

DIRECTIONS = ("random", "pca", "hessian")
"""Surface directions the branch panel offers (``"hessian"``: the top-2 eigenvectors at the center)."""
PROJECTIONS = ("layout", "pca", "tsne", "surface")
"""Methods of the trajectory plot's projection (``Session.project``)."""
TRAIN_KEYS = HPARAM_NAMES
"""The hyperparameters a train command may carry (:data:`lossviz.training.HPARAM_NAMES`)."""
FORM_EXTRAS = {"epochs": 1, "magnitude": 0.1, "n": 5, "directions": "random", "range": "auto", "x_range": "",
               "y_range": "", "resolution": 21,
               "adaptive": False}
"""Form values that are not hyperparameters, with their first values (kept across clicks)."""

CREATE_DEFAULTS = {"model": "mlp", "data": "spirals"}
"""What the project panel creates when no model or data set is chosen: a zoo model and a data set made
in memory (no files, no download), so that a first Create works."""

LIMITS = {
    "max_jobs_shown": 20,  # finished jobs listed; running and queued ones are always listed
    "auto_distances_max": 16,  # selecting 2..16 checkpoints computes their distances at once
    "max_distances": 400,  # the Distances button takes 2..400 checkpoints
    "levels_min": 2,
    "levels_max": 200,
    "interpolation_min": 2,
    "interpolation_max": 1000,
    "resolution_min": 3,
    "resolution_max": 401,
}

MAX_STORED_SURFACES = 50  # the stored surfaces the Explorer lists (newest first)

RANGE_HINT = ("auto fits the grid to the trajectory in the plane with a margin (PCA, directions to checkpoints); "
              "random and Hessian directions get -1:1")
SCHEDULE_HINT = "constant, cosine, cosine:200, step:30:0.1, multistep:150,225:0.1, cifar"
ADAPTIVE_HINT = ("a coarse lattice (13 points a side), then rounds where the surface bends, at most a fifth of "
                 "the grid; the rest interpolated. Saves work from about 30 points a side")



def _lower_bound(name: str) -> dict[str, Any]:
    """A hyperparameter's lower bound from :data:`lossviz.training.HPARAM_CONSTRAINTS` as form keys
    (``min``, and ``minExclusive`` when the bound itself is refused); training checks the rest."""
    c = HPARAM_CONSTRAINTS[name]
    if not isinstance(c, Interval) or c.left is None:
        return {}
    return {"min": c.left, **({"minExclusive": True} if c.closed in ("right", "neither") else {})}


FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "lr", "label": "learning rate", "type": "float", **_lower_bound("lr"), "group": "train"},
    {"name": "optimizer", "label": "optimizer", "type": "choice", "choices": list(OPTIMIZERS), "group": "train"},
    {"name": "momentum", "label": "momentum", "type": "float", **_lower_bound("momentum"), "group": "train"},
    {"name": "nesterov", "label": "nesterov", "type": "bool", "group": "train"},
    {"name": "weight_decay", "label": "weight decay", "type": "float", **_lower_bound("weight_decay"),
     "group": "train"},
    {"name": "batch_size", "label": "batch size", "type": "int", **_lower_bound("batch_size"), "group": "train"},
    {"name": "schedule", "label": "schedule", "type": "text", "group": "train", "hint": SCHEDULE_HINT},
    {"name": "seed", "label": "seed", "type": "int", **_lower_bound("seed"), "optional": True, "group": "train"},
    {"name": "epochs", "label": "epochs to train", "type": "int", "min": 1, "group": "train"},
    {"name": "magnitude", "label": "disturb magnitude", "type": "float", "min": 0, "minExclusive": True,
     "group": "disturb"},
    {"name": "n", "label": "interpolation points (ends included)", "type": "int", "min": LIMITS["interpolation_min"],
     "max": LIMITS["interpolation_max"], "group": "interpolate"},
    {"name": "directions", "label": "surface directions", "type": "choice", "choices": list(DIRECTIONS),
     "group": "surface"},
    {"name": "range", "label": "surface range (min:max or auto)", "type": "range", "group": "surface",
     "hint": RANGE_HINT},
    {"name": "x_range", "label": "x range (min:max or auto; empty: the range above)", "type": "range",
     "optional": True, "group": "surface", "hint": RANGE_HINT},
    {"name": "y_range", "label": "y range (min:max or auto; empty: the range above)", "type": "range",
     "optional": True, "group": "surface", "hint": RANGE_HINT},
    {"name": "resolution", "label": "surface resolution", "type": "int", "min": LIMITS["resolution_min"],
     "max": LIMITS["resolution_max"], "group": "surface"},
    {"name": "adaptive", "label": "adaptive (fewer points)", "type": "bool", "group": "surface", "hint": ADAPTIVE_HINT},
)
"""The branch panel's form: ``{name, label, type, group}`` and, where they apply, ``min``, ``max``,
``minExclusive`` (``min`` itself refused), ``optional`` (may be left empty), ``choices`` and ``hint``.
``type`` is ``"float"``, ``"int"``, ``"text"``, ``"bool"``, ``"choice"`` or ``"range"`` (a ``min:max``
text with min < max). The keys are the front end's (js/form.js reads them as they are)."""


def field(name: str) -> dict[str, Any]:
    """The form field called ``name``."""
    return next(f for f in FIELDS if f["name"] == name)


def _first(name: str, names: list[str]) -> list[str]:
    """``names`` with ``name`` first (a choice list whose first entry is the default)."""
    return [name, *[n for n in names if n != name]]


def explorer_options() -> dict[str, Any]:
    """The ``options`` trait: every constant the front end needs (choices, form fields, limits)."""
    return {
        "optimizers": list(OPTIMIZERS),
        "directions": list(DIRECTIONS),
        "connect_curves": list(CONNECT_CURVES),
        "connect_epochs": CONNECT_EPOCHS,
        "projections": list(PROJECTIONS),
        "contour_modes": list(CONTOUR_MODES),
        "models": _first(CREATE_DEFAULTS["model"], zoo.list_models()),
        "datasets": _first(CREATE_DEFAULTS["data"], zoo.list_data()),
        "create_defaults": dict(CREATE_DEFAULTS),
        "fields": [dict(f) for f in FIELDS],
        "limits": dict(LIMITS),
    }
