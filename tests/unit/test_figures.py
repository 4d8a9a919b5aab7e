"""lossviz.figures: the one home of static figures and of the rules the views share (the metric shown,
critical points as markers, axis text); the CLI's plot is built from the same functions."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from lossviz import figures
from lossviz.critical import critical_points


def bowl(nx: int = 9, ny: int = 7, **extra):
    x, y = np.linspace(-1, 1, nx), np.linspace(-1, 1, ny)
    X, Y = np.meshgrid(x, y)
    z = X**2 + 0.5 * Y**2 + 0.1
    values = {"train_loss": z, "train_acc": 100 - z, **extra}
    return SimpleNamespace(x=x, y=y, values=values, done=np.ones_like(z, bool), meta={"center": 3})


def test_default_metric_is_one_rule_for_every_view():
    surf = bowl()
    assert figures.default_metric(surf) == "train_loss"
    assert figures.default_metric(surf, "train_acc") == "train_acc"
    assert figures.default_metric({"values": {"test_acc": 1, "test_loss": 2}}) == "test_loss"
    assert figures.default_metric({"values": {"acc": 1, "loss": 2}}) == "loss"
    assert figures.default_metric({"values": {"b": 1, "a": 2}}) == "b"
    with pytest.raises(ValueError, match=r"'nope' is not in the surface; it has train_loss, train_acc"):
        figures.default_metric(surf, "nope")
    with pytest.raises(ValueError, match="no metric values"):
        figures.default_metric({"values": {}})


def test_axis_text_is_the_grid_spec():
    assert figures.axis_text(np.linspace(-1, 1, 51)) == "-1:1:51"
    assert figures.axis_text([0.5, 0.75, 1.0]) == "0.5:1:3"


def test_critical_markers_are_the_refined_critical_points_as_json():
    surf = bowl()
    z = surf.values["train_loss"]
    markers = figures.critical_markers(surf.x, surf.y, z)
    assert [m["kind"] for m in markers] == [p.kind for p in critical_points(surf.x, surf.y, z)] == ["minimum"]
    (m,) = markers
    assert m["x"] == pytest.approx(0, abs=1e-9) and m["y"] == pytest.approx(0, abs=1e-9)
    assert m["value"] == pytest.approx(0.1)
    assert json.loads(json.dumps(markers)) == markers
    line = figures.critical_markers(surf.x, None, np.cos(surf.x * 3))
    assert line and all(p["y"] is None for p in line)
    holed = z.copy()
    holed[0, 0] = np.nan  # a diverged point: left out, the minimum is still found
    assert [p["kind"] for p in figures.critical_markers(surf.x, surf.y, holed)] == ["minimum"]


def test_contour_figure_draws_the_critical_markers():
    surf = bowl()
    fig = figures.contour_figure(surf)
    (minimum,) = [d for d in fig.data if d.name == "minimum"]
    (m,) = figures.critical_markers(surf.x, surf.y, surf.values["train_loss"])
    assert list(minimum.x) == [m["x"]] and list(minimum.y) == [m["y"]]


def test_surface_figure_is_the_contour_beside_the_3d_surface():
    surf = bowl()
    fig = figures.surface_figure(surf, title="t")
    contour = figures.contour_figure(surf)
    s3 = figures.surface3d_figure(surf)
    assert [d.type for d in fig.data] == [d.type for d in contour.data] + [d.type for d in s3.data]
    np.testing.assert_allclose(np.asarray(fig.data[0].z), surf.values["train_loss"])
    assert fig.layout.title.text == "t"
    acc = figures.surface_figure(surf, "train_acc")
    np.testing.assert_allclose(np.asarray(acc.data[0].z), surf.values["train_acc"])
    x = np.linspace(-1, 1, 5)
    line = SimpleNamespace(x=x, y=None, values={"train_loss": x**2, "train_acc": 1 - x**2}, done=np.ones(5, bool))
    lf = figures.surface_figure(line)
    assert [d.name for d in lf.data] == ["train_loss", "train_acc"]
    np.testing.assert_allclose(np.asarray(lf.data[1].y), 1 - x**2)
    assert lf.data[1].yaxis == "y2"


def test_write_figure_html_and_png_fallback(tmp_path, monkeypatch):
    fig = figures.surface_figure(bowl())
    path, note = figures.write_figure(fig, tmp_path / "a.html")
    assert path == tmp_path / "a.html" and note is None
    assert '"type":"contour"' in path.read_text()
    find_spec = figures.importlib.util.find_spec
    no_kaleido = lambda name, *a: None if name == "kaleido" else find_spec(name, *a)  # noqa: E731
    monkeypatch.setattr(figures.importlib.util, "find_spec", no_kaleido)
    path, note = figures.write_figure(fig, tmp_path / "b.png")
    assert path == tmp_path / "b.html" and "kaleido" in note and path.exists()
    assert not (tmp_path / "b.png").exists()
    with pytest.raises(ValueError, match=r"\.html or \.png"):
        figures.write_figure(fig, tmp_path / "c.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html"]


def test_the_cli_plots_with_the_figures_functions(tmp_path, monkeypatch, capsys):
    from lossviz import cli
    from lossviz.io.h5 import write_surface
    from lossviz.landscape import Surface

    s = bowl()
    write_surface(tmp_path / "s.h5", Surface(s.x, s.y, s.values, s.done))
    made = []
    real = figures.surface_figure
    monkeypatch.setattr(figures, "surface_figure", lambda *a, **k: made.append((a, k)) or real(*a, **k))
    assert cli.main(["plot", str(tmp_path / "s.h5"), "--out", str(tmp_path / "p.html")]) == 0
    assert len(made) == 1 and made[0][0][1] == "train_loss"
    assert not hasattr(cli, "surface_figure") and not hasattr(cli, "_default_metric")
    assert cli.main(["plot", str(tmp_path / "s.h5"), "--metric", "nope"]) == 2
    assert "'nope' is not in the surface" in capsys.readouterr().err
    assert cli.main(["info", str(tmp_path / "s.h5")]) == 0
    assert "  x: -1:1:9" in capsys.readouterr().out


def test_figures_and_critical_import_without_plotly_or_torch():
    code = ("import sys, lossviz.figures, lossviz.critical; "
            "assert 'plotly' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_markers_of_a_line_are_finite_floats():
    x = np.linspace(-2, 2, 41)
    (m,) = figures.critical_markers(x, None, (x - 0.3) ** 2)
    assert m["kind"] == "minimum" and m["x"] == pytest.approx(0.3, abs=1e-6) and math.isfinite(m["value"])
