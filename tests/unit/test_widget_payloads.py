"""lossviz.widget.payloads: each check of a front-end message field, its value and its words (the ones the
``error`` trait shows); the bounds are the form's (lossviz.widget.options.FIELDS)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lossviz.widget import payloads as P
from lossviz.widget.options import FIELDS, LIMITS, TRAIN_KEYS
from lossviz.widget.payloads import PayloadError


def refused(fn, *args, **kwargs) -> str:
    with pytest.raises(PayloadError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_numbers_are_parsed_and_coerced():
    assert P.number({"lr": "0.05"}, "lr") == 0.05
    assert P.number({"n": 3.0}, "n", int) == 3 and type(P.number({"n": 3.0}, "n", int)) is int
    assert P.number({"n": "7"}, "n", int) == 7
    assert P.number({}, "n", int, default=5) == 5
    assert P.number({"n": ""}, "n", int, allow_none=True) is None
    assert P.number({"x": 0}, "x", minimum=0) == 0.0  # "at least" includes the bound
    assert P.number({"x": 401}, "x", int, maximum=401) == 401


@pytest.mark.parametrize(
    "payload, kwargs, words",
    [
        ({}, {}, "x is missing: fill in the x field"),
        ({"x": None}, {}, "x is missing"),
        ({"x": "abc"}, {}, "x must be a number, got 'abc'"),
        ({"x": True}, {}, "x must be a number, got True"),
        ({"x": [1]}, {}, "x must be a number, got [1]"),
        ({"x": math.nan}, {}, "x must be a finite number, got nan"),
        ({"x": "inf"}, {}, "x must be a finite number, got inf"),
        ({"x": 1.5}, {"kind": int}, "x must be a whole number, got 1.5"),
        ({"x": 0}, {"minimum": 0, "exclusive": True}, "x must be greater than 0, got 0"),
        ({"x": -0.1}, {"minimum": 0.0, "exclusive": True}, "x must be greater than 0, got -0.1"),
        ({"x": 0}, {"kind": int, "minimum": 1}, "x must be at least 1, got 0"),
        ({"x": 1000}, {"kind": int, "maximum": 401}, "x must be at most 401, got 1000"),
    ],
)
def test_number_refusals_name_the_field_the_rule_and_the_value(payload, kwargs, words):
    kind = kwargs.pop("kind", float)
    assert refused(P.number, payload, "x", kind, **kwargs).startswith(words)


def test_form_numbers_take_their_bounds_from_the_form_fields():
    assert refused(P.form_number, {"resolution": 1000}, "resolution").endswith(
        f"at most {LIMITS['resolution_max']}, got 1000"
    )
    assert "resolution must be at least 3" in refused(P.form_number, {"resolution": 2}, "resolution")
    assert "n must be at least 2" in refused(P.form_number, {"n": 1}, "n")
    assert "magnitude must be greater than 0" in refused(P.form_number, {"magnitude": 0}, "magnitude")
    assert "epochs must be a whole number" in refused(P.form_number, {"epochs": 1.5}, "epochs")
    assert P.form_number({"resolution": 401.0}, "resolution") == 401


def test_ids_texts_booleans_and_choices():
    assert P.ids({"ids": [1, 2.0]}, "ids") == [1, 2]
    assert "ids must be a list of checkpoint ids, got '1,2'" in refused(P.ids, {"ids": "1,2"}, "ids")
    assert "whole number" in refused(P.ids, {"ids": [0.5]}, "ids")
    assert P.text({"path": "  a  "}, "path") == "a" and P.text({}, "range", "-1:1") == "-1:1"
    assert refused(P.text, {"path": ""}, "path") == "path must be a non-empty text, got ''"
    assert P.boolean({"adaptive": True}, "adaptive") is True and P.boolean({}, "adaptive") is None
    for bad in ("yes", 1, 0, {"rtol": 0.1}):
        assert refused(P.boolean, {"adaptive": bad}, "adaptive") == f"adaptive must be true or false, got {bad!r}"
    assert P.choice("pca", ("random", "pca"), "directions") == "pca"
    assert "directions 'sideways' is unknown: use one of ['random', 'pca']" in refused(
        P.choice, "sideways", ("random", "pca"), "directions"
    )


def test_train_hparams_check_each_field_and_leave_empty_ones_to_the_session():
    hp = P.train_hparams(
        {
            "lr": "0.05",
            "optimizer": " adam ",
            "momentum": 0.5,
            "nesterov": False,
            "batch_size": 32.0,
            "schedule": "cosine",
            "seed": None,
            "weight_decay": 0,
        }
    )
    assert hp == {
        "lr": 0.05,
        "optimizer": "adam",
        "momentum": 0.5,
        "nesterov": False,
        "batch_size": 32,
        "schedule": "cosine",
        "weight_decay": 0.0,
    }
    assert P.train_hparams({"seed": "", "optimizer": "", "schedule": ""}) == {}  # the form's "inherit"
    assert "lr is missing" in refused(P.train_hparams, {"lr": ""})  # a number field left empty
    assert "nesterov must be true or false, got ''" in refused(P.train_hparams, {"nesterov": ""})
    assert "lr must be greater than 0" in refused(P.train_hparams, {"lr": -0.1})
    assert "batch_size must be at least 1" in refused(P.train_hparams, {"batch_size": 0})
    assert "seed must be at least 0" in refused(P.train_hparams, {"seed": -1})
    assert "momentum must be a number" in refused(P.train_hparams, {"momentum": "fast"})
    assert "optimizer must be a non-empty text, got 3" in refused(P.train_hparams, {"optimizer": 3})
    assert "unknown hyperparameters ['colour']" in refused(P.train_hparams, {"colour": 3})
    assert "hparams must be an object, got [1, 2]" in refused(P.train_hparams, [1, 2])


def test_project_hparams_leave_every_empty_field_to_the_defaults():
    assert P.project_hparams(None) == {}
    assert P.project_hparams({"lr": "", "momentum": None, "optimizer": "adam"}) == {"optimizer": "adam"}
    assert P.project_hparams({"lr": 0.05}) == {"lr": 0.05}
    assert "lr must be greater than 0" in refused(P.project_hparams, {"lr": 0})
    assert "hparams must be an object" in refused(P.project_hparams, "")


def test_every_train_key_is_a_form_field():
    names = {f["name"] for f in FIELDS}
    assert set(TRAIN_KEYS) <= names


def test_axis_spec():
    assert P.surface_axis_spec("-1:1", 21) == "-1:1:21"
    assert P.surface_axis_spec("-0.25:2.5", 5) == "-0.25:2.5:5"
    assert "max must be greater than min" in refused(P.surface_axis_spec, "1:-1", 5)
    assert "not min:max" in refused(P.surface_axis_spec, "a:b", 5)
    assert "not min:max" in refused(P.surface_axis_spec, "1:2:3", 5)
    assert "max must be greater than min" in refused(P.surface_axis_spec, "nan:1", 5)


def test_project_path_resolves_under_the_root_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    assert P.project_path(str(tmp_path / "x"), "runs") == tmp_path / "x"  # absolute: as given
    assert P.project_path("new", "runs") == Path("runs") / "new"  # relative: under the root
    assert P.project_path("runs/a", "runs", existing=True) == Path("runs") / "a"  # a listed path: not runs/runs/a
    assert P.project_path("new", None) == Path("new")  # no root: the working folder
    assert P.project_path("b", "runs", existing=True) == Path("b")  # only the path as given exists
    assert P.project_path("b", "runs") == Path("runs") / "b"  # a new project goes under the root
    with pytest.raises(PayloadError, match="cannot be used"):
        P.project_path("x" * 5000, "runs")
