"""The Explorer's research views (issue 15) on a real tiny Session, driven by messages: Connect (a curve
between two selected checkpoints, next to the line), the Hessian spectrum of the opened checkpoint, and
Hessian directions in the surface form. Numbers are checked against independent computations: the loss
along the curve by a plain loop over its control points, eigenvalues and trace by the dense Hessian."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.func import functional_call  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from lossviz.widget import Explorer  # noqa: E402
from lossviz.widget.options import DIRECTIONS, explorer_options  # noqa: E402


@pytest.fixture
def trained(session):
    """The small spirals project (conftest), trained 4 epochs, with an Explorer on it."""
    session.train(epochs=4).wait(120)
    w = Explorer(session, throttle=0, background=False)
    yield session, w
    w.close()


def _loss_and_acc(model, vector, x, y):
    """Plain reference: the model's parameters replaced by ``vector`` (named_parameters order), the mean
    cross-entropy and the accuracy in percent on (x, y), in float64."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    parts, k = {}, 0
    for n, shape in zip(names, shapes, strict=True):
        size = int(np.prod(shape))
        parts[n] = vector[k:k + size].reshape(shape).double()
        k += size
    assert k == vector.numel()
    with torch.no_grad():
        out = functional_call(model.double(), parts, (x.double(),))
    return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).double().mean() * 100)


def _bezier(points, t):
    """Quadratic Bezier through three control points: (1-t)² P0 + 2t(1-t) P1 + t² P2."""
    return (1 - t) ** 2 * points[0] + 2 * t * (1 - t) * points[1] + t**2 * points[2]


def test_connect_shows_the_curve_and_the_line_with_their_barriers(trained):
    s, w = trained
    ids = [c.id for c in s.checkpoints()]
    a, b = ids[0], ids[-1]
    w.selection = [a, b]
    w.handle({"type": "connect", "curve": "bezier", "epochs": 2})
    w.wait_idle(120)
    assert w.error == "", w.error
    conn = w.connection
    assert (conn["a"], conn["b"], conn["curve"], conn["epochs"]) == (a, b, "bezier", 2)
    assert [j["kind"] for j in w.jobs].count("connect") == 1
    job = next(j for j in w.jobs if j["kind"] == "connect")
    assert job["state"] == "done" and job["done"] == job["total"] == 3  # 2 epochs + the evaluation
    # the curve's ends are the two checkpoints; its loss at each t by a plain loop over the control points
    direct = s.connect(a, b, "bezier", epochs=2)
    points = direct["control_points"].double()
    model = s.model(a)
    wa = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    wb = torch.cat([p.detach().flatten() for p in s.model(b).parameters()]).double()
    assert torch.allclose(points[0], wa, atol=1e-6) and torch.allclose(points[-1], wb, atol=1e-6)
    x, y = s.eval_data()["train"]
    t = np.asarray(conn["t"])
    assert t[0] == 0 and t[-1] == 1 and len(t) >= 3
    curve = np.array([_loss_and_acc(model, _bezier(points, float(ti)), x, y) for ti in t])
    line = np.array([_loss_and_acc(model, (1 - ti) * wa + ti * wb, x, y) for ti in t])
    np.testing.assert_allclose(conn["path"]["values"]["train_loss"], curve[:, 0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(conn["line"]["values"]["train_loss"], line[:, 0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(conn["path"]["values"]["train_acc"], curve[:, 1], atol=1e-3)
    np.testing.assert_allclose(conn["line"]["values"]["train_acc"], line[:, 1], atol=1e-3)
    # barrier: max along the path minus the mean of the end points (Frankle et al. 2020)
    for key, prof in (("curve", curve[:, 0]), ("line", line[:, 0])):
        assert conn["barriers"][key] == pytest.approx(prof.max() - (prof[0] + prof[-1]) / 2, rel=1e-4, abs=1e-5)
    assert "test_loss" in conn["path"]["values"] and "test_acc" in conn["line"]["values"]
    assert len(conn["losses"]) == 2 and "control_points" not in conn


def test_connect_refuses_a_wrong_selection_or_curve_in_words(trained):
    s, w = trained
    w.selection = [1]
    w.handle({"type": "connect"})
    assert "exactly two selected checkpoints, 1 are selected" in w.error
    w.selection = [1, 2]
    w.handle({"type": "connect", "curve": "spline"})
    assert "curve 'spline' is unknown: use one of ['bezier', 'polychain']" in w.error
    w.handle({"type": "connect", "epochs": 0})
    assert "epochs" in w.error and w.connection == {}
    assert not [j for j in s.jobs if j.kind == "connect"]


def _dense_hessian(s, ckpt):
    """The dense Hessian of the mean training cross-entropy at ``ckpt`` (torch.autograd.functional)."""
    model = s.model(ckpt).double()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [int(np.prod(sh)) for sh in shapes]
    x, y = s.eval_data()["train"]

    def loss(flat):
        parts = dict(zip(names, (v.reshape(sh) for v, sh in zip(flat.split(sizes), shapes, strict=True)), strict=True))
        return F.cross_entropy(functional_call(model, parts, (x.double(),)), y)

    w0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    return torch.autograd.functional.hessian(loss, w0)


def test_spectrum_of_the_opened_checkpoint_matches_the_dense_hessian(trained):
    s, w = trained
    w.handle({"type": "spectrum"})
    assert "click one in the trajectory plot first" in w.error
    ckpt = s.checkpoints()[-1].id
    w.clicked = ckpt
    w.handle({"type": "spectrum", "k": 2})
    w.wait_idle(120)
    assert w.error == "", w.error
    sp = w.spectrum
    assert sp["checkpoint"] == ckpt and len(sp["eigenvalues"]) == 2
    assert any(j["kind"] == "hessian" and j["state"] == "done" for j in w.jobs)
    H = _dense_hessian(s, ckpt)
    exact = np.sort(np.linalg.eigvalsh(H.numpy()))[::-1]
    np.testing.assert_allclose(sp["eigenvalues"], exact[:2], rtol=1e-3, atol=1e-5)
    dense_trace = float(torch.trace(H))
    assert abs(sp["trace"] - dense_trace) <= 5 * sp["trace_stderr"] + 1e-6
    # SLQ: the weights are a probability, the extreme nodes approach the extreme eigenvalues, and the
    # smoothed density integrates to 1 over its grid
    assert sum(sp["weights"]) == pytest.approx(1.0, abs=1e-6)
    assert max(sp["nodes"]) == pytest.approx(exact[0], rel=1e-2)
    assert min(sp["nodes"]) == pytest.approx(exact[-1], rel=1e-2, abs=1e-3 * exact[0])
    assert np.trapezoid(sp["density"], sp["grid"]) == pytest.approx(1.0, abs=1e-3)


def test_hessian_directions_in_the_surface_form_are_the_top_two_eigenvectors(trained):
    s, w = trained
    assert "hessian" in DIRECTIONS
    field = next(f for f in explorer_options()["fields"] if f["name"] == "directions")
    assert "hessian" in field["choices"]
    ckpt = s.checkpoints()[-1].id
    w.handle({"type": "surface", "center": ckpt, "directions": "hessian", "resolution": 5})
    assert w.error == "", w.error
    job = next(j for j in s.jobs if j.kind == "surface")
    surf = job.wait(120)
    w.wait_idle(60)
    assert w.surface["done"] == w.surface["total"] == 25
    vectors = [v.double() for v in surf.directions.vectors]
    H = _dense_hessian(s, ckpt)
    values, vecs = np.linalg.eigh(H.numpy())
    top = vecs[:, np.argsort(values)[::-1][:2]]
    for i, v in enumerate(vectors):
        assert abs(float(v @ torch.as_tensor(top[:, i]))) / float(v.norm()) == pytest.approx(1.0, abs=1e-3)
    # the centre of the grid is the checkpoint itself
    x, y = s.eval_data()["train"]
    mid = surf.values["train_loss"][2, 2]
    model = s.model(ckpt)
    w0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert mid == pytest.approx(_loss_and_acc(model, w0, x, y)[0], rel=1e-4)
