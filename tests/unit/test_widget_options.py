"""lossviz.widget.options: every constant the front end needs, sent from Python once (the ``options`` trait),
and the same constants behind the widget's own checks."""

from __future__ import annotations

import json
from pathlib import Path

from lossviz import figures, training, zoo
from lossviz.widget.options import (
    DIRECTIONS,
    FIELDS,
    FORM_EXTRAS,
    LIMITS,
    PROJECTIONS,
    TRAIN_KEYS,
    explorer_options,
    field,
)

CONTRACT_LIMITS = ("max_jobs_shown", "auto_distances_max", "max_distances", "levels_min", "levels_max")
TYPES = ("float", "int", "text", "bool", "choice", "range")


def test_options_carry_every_shared_constant_from_its_home():
    opts = explorer_options()
    assert opts["optimizers"] == list(training.OPTIMIZERS)
    assert opts["contour_modes"] == list(figures.CONTOUR_MODES)
    assert opts["directions"] == list(DIRECTIONS) and opts["projections"] == list(PROJECTIONS)
    assert sorted(opts["models"]) == sorted(zoo.list_models()) and sorted(opts["datasets"]) == sorted(zoo.list_data())
    defaults = opts["create_defaults"]
    assert [opts["models"][0], opts["datasets"][0]] == [defaults["model"], defaults["data"]]
    assert set(CONTRACT_LIMITS) <= set(opts["limits"]) and opts["limits"] == LIMITS
    json.dumps(opts, allow_nan=False)  # plain JSON


def test_the_form_fields_describe_the_branch_panel():
    names = [f["name"] for f in FIELDS]
    assert len(names) == len(set(names))
    assert set(names) == set(TRAIN_KEYS) | set(FORM_EXTRAS)
    for f in FIELDS:
        assert {"name", "label", "type", "group"} <= set(f) and f["type"] in TYPES, f
        assert ("choices" in f) == (f["type"] == "choice"), f
        if "min" in f and "max" in f:
            assert f["min"] < f["max"], f
    by_name = {f["name"]: f for f in FIELDS}
    assert by_name["optimizer"]["choices"] == list(training.OPTIMIZERS)
    assert by_name["directions"]["choices"] == list(DIRECTIONS)
    assert (
        by_name["resolution"]["max"] == LIMITS["resolution_max"] and by_name["n"]["max"] == LIMITS["interpolation_max"]
    )
    assert by_name["lr"]["minExclusive"] and by_name["seed"]["optional"]


def test_the_front_end_fixture_is_what_the_kernel_sends():
    """js/tests/options.json (read by the node tests and the browser harness) equals explorer_options()'s
    fields, limits and lists: regenerate it from Python when a constant changes."""
    fixture = json.loads((Path(__file__).resolve().parents[2] / "js" / "tests" / "options.json").read_text())
    sent = explorer_options()
    for key in ("fields", "limits", "optimizers", "directions", "projections", "contour_modes", "create_defaults",
                "connect_curves", "connect_epochs"):
        assert fixture[key] == sent[key], key


def test_form_lower_bounds_are_the_training_constraints():
    for name in ("lr", "momentum", "weight_decay", "batch_size", "seed"):
        spec, c = field(name), training.HPARAM_CONSTRAINTS[name]
        assert spec["min"] == c.left and bool(spec.get("minExclusive")) == (c.closed in ("right", "neither")), name
