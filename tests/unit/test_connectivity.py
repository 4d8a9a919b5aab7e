"""Mode connectivity: curves against analytic optima in a ring valley, a real pair of minima, BatchNorm
statistics, the orthonormal plane."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from lossviz import connectivity as C

F64 = torch.float64


class Theta(nn.Module):
    """A model whose output is its parameter vector θ (for every sample)."""

    def __init__(self, d: int = 2):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(d, dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(x.shape[0], -1)


def ring(out: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    """L(θ) = (‖θ‖² − 1)²: a valley along the unit circle, a bump of height 1 at the origin."""
    return ((out[0] ** 2).sum() - 1) ** 2


RING_DATA = (torch.zeros(1, 1, dtype=F64), torch.zeros(1, dtype=F64))
A, B = torch.tensor([1.0, 0.0], dtype=F64), torch.tensor([-1.0, 0.0], dtype=F64)


# ------------------------------------------------------------------------------------ curves
def test_curves_interpolate_their_control_points() -> None:
    g = torch.Generator().manual_seed(0)
    w0, bend, w1 = (torch.randn(5, generator=g, dtype=F64) for _ in range(3))
    t = torch.linspace(0, 1, 11, dtype=F64)
    bez = C.Curve("bezier", torch.stack([w0, bend, w1]))
    explicit = (1 - t[:, None]) ** 2 * w0 + 2 * (t * (1 - t))[:, None] * bend + t[:, None] ** 2 * w1
    torch.testing.assert_close(bez.at(t), explicit)
    poly = C.Curve("polychain", torch.stack([w0, bend, w1]))
    torch.testing.assert_close(poly.at(0.5)[0], bend)
    torch.testing.assert_close(poly.at(0.25)[0], 0.5 * (w0 + bend))
    torch.testing.assert_close(poly.at(0.75)[0], 0.5 * (bend + w1))
    for curve in (bez, poly):
        torch.testing.assert_close(curve.weights(t).sum(1), torch.ones(11, dtype=F64))
        torch.testing.assert_close(curve.at(0.0)[0], w0)
        torch.testing.assert_close(curve.at(1.0)[0], w1)
    line = (1 - t[:, None]) * w0 + t[:, None] * w1
    for kind, k in (("line", 0), ("bezier", 1), ("bezier", 3), ("polychain", 2)):
        start = C.Curve.through(kind, w0, w1, k)  # the bends start on the line: the curve is the line
        torch.testing.assert_close(start.at(t), line)
    with pytest.raises(ValueError, match="curve"):
        C.Curve("spline", torch.stack([w0, w1]))
    assert C.loss_barrier([0.1, 0.9, 0.3]) == pytest.approx(0.9 - 0.2)


# ------------------------------------------------------------------------------------ ring valley
def _expected_poly_loss(h: np.ndarray) -> np.ndarray:
    """E_t of the ring loss along the PolyChain (1,0) → (0,h) → (−1,0), by Gauss-Legendre (exact:
    a polynomial of degree 4 in τ); both halves are mirror images."""
    tau, w = np.polynomial.legendre.leggauss(10)
    tau, w = 0.5 * (tau + 1), 0.5 * w
    r2 = (1 - tau[None]) ** 2 + tau[None] ** 2 * h[:, None] ** 2
    return ((r2 - 1) ** 2 * w[None]).sum(1)


def test_fitted_curves_reach_the_analytic_optimum_of_a_ring_valley() -> None:
    # Bezier (1,0), (0,h), (−1,0): |φ|² − 1 = 4s(s h² − 1) with s = t(1−t), so E_t L = 16 E[s²(s h² − 1)²],
    # minimal at h² = E[s³]/E[s⁴] = (1/140)/(1/630) = 4.5
    h_bezier = math.sqrt(4.5)
    hs = np.linspace(0.5, 2.5, 200001)
    h_poly = float(hs[np.argmin(_expected_poly_loss(hs))])
    for kind, h_star in (("bezier", h_bezier), ("polychain", h_poly)):
        # h = 0 (the line) is a stationary point by symmetry: start off it
        fit = C.fit_curve(Theta(), A, B, RING_DATA, ring, curve=kind, epochs=1500, batch_size=1, lr=0.004,
                          momentum=0.9, init=torch.tensor([[0.0, 0.5]], dtype=F64), dtype=F64, seed=1)
        bend = fit.curve.bends[0]
        assert float(bend[1]) == pytest.approx(h_star, rel=0.03), kind
        assert abs(float(bend[0])) < 0.05
        torch.testing.assert_close(fit.curve.ends[0], A)
        torch.testing.assert_close(fit.curve.ends[1], B)
        assert fit.steps == 1500 and len(fit.losses) == 1500
        start = C.Curve(kind, torch.stack([A, torch.tensor([0.0, 0.5], dtype=F64), B]))
        mean_loss = [C.evaluate_path(Theta(), c, {"train": RING_DATA}, ring, metrics=("loss",), n_points=201,
                                     dtype=F64).values["train_loss"].mean() for c in (start, fit.curve)]
        assert mean_loss[1] < 0.5 * mean_loss[0]  # E_t L fell
    line = C.evaluate_path(Theta(), C.Curve.through("line", A, B), {"train": RING_DATA}, ring, metrics=("loss",),
                           n_points=21, dtype=F64)
    assert line.barriers["train_loss"] == pytest.approx(1.0)  # the origin
    best = C.Curve("bezier", torch.stack([A, torch.tensor([0.0, h_bezier], dtype=F64), B]))
    prof = C.evaluate_path(Theta(), best, {"train": RING_DATA}, ring, metrics=("loss",), n_points=1001, dtype=F64)
    s = prof.t * (1 - prof.t)
    np.testing.assert_allclose(prof.values["train_loss"], 16 * s**2 * (4.5 * s - 1) ** 2, atol=1e-12)
    # the largest of 16 s² (4.5 s − 1)² on s ∈ [0, 1/4] is at s = 1/9: 16/81 · 1/4
    assert prof.barriers["train_loss"] == pytest.approx(4 / 81, rel=1e-4)


def test_plane_is_orthonormal_and_holds_the_three_points() -> None:
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(3, 7, generator=g, dtype=F64)
    plane = C.curve_plane(C.Curve("bezier", pts))
    torch.testing.assert_close(plane.axes @ plane.axes.T, torch.eye(2, dtype=F64))
    np.testing.assert_allclose(plane.control[0], [0, 0], atol=1e-12)
    np.testing.assert_allclose(plane.control[2], [float((pts[2] - pts[0]).norm()), 0], atol=1e-12)
    assert plane.control[1, 1] > 0
    back = plane.origin + torch.as_tensor(plane.control) @ plane.axes
    torch.testing.assert_close(back, pts)  # the three points lie in their plane
    with pytest.raises(ValueError, match="plane"):
        C.curve_plane(C.Curve.through("bezier", pts[0], pts[2]))


def test_plane_surface_of_the_ring_valley() -> None:
    curve = C.Curve("bezier", torch.stack([A, torch.tensor([0.0, 2.0], dtype=F64), B]))
    surf = C.plane_surface(Theta(), curve, RING_DATA, ring, n=9, metrics=("loss",), dtype=F64)
    # the plane of a 2-D space is the space: origin (1, 0), e1 = (−1, 0), e2 = (0, 1)
    for i, yv in enumerate(surf.y):
        for j, xv in enumerate(surf.x):
            theta = np.array([1.0 - xv, yv])
            assert surf.values["train_loss"][i, j] == pytest.approx(((theta**2).sum() - 1) ** 2, abs=1e-10)
    meta = surf.meta["connect"]
    np.testing.assert_allclose(meta["ends"], [[0, 0], [2, 0]], atol=1e-12)
    np.testing.assert_allclose(meta["bends"], [[1, 2]], atol=1e-12)
    path = np.asarray(surf.meta["trajectory"]["coords"])
    assert path.shape == (61, 2) and surf.x[0] < path[:, 0].min() and surf.y[-1] > path[:, 1].max()


# ------------------------------------------------------------------------------------ real minima
def _spirals(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * 3 * math.pi
    y = torch.randint(0, 2, (n,), generator=g)
    r = t / (3 * math.pi)
    ang = t + math.pi * y
    x = torch.stack([r * torch.cos(ang), r * torch.sin(ang)], 1) + 0.03 * torch.randn(n, 2, generator=g)
    return x, y


def _trained(seed: int, x, y) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(400):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def test_curve_between_real_minima_has_a_lower_barrier_than_the_line() -> None:
    train, test = _spirals(300, 0), _spirals(200, 1)
    a, b = _trained(0, *train), _trained(1, *train)
    data = {"train": train, "test": test}
    line = C.evaluate_path(a, C.Curve.through("line", C._weights_of(a, a, "a"), C._weights_of(a, b, "b")), data)
    assert line.barriers["train_loss"] > 0.2  # two independent minima: a bump on the line
    seen = []
    fit = C.fit_curve(a, a, b, train, curve="bezier", epochs=40, batch_size=64, lr=0.05,
                      progress=lambda e, n, v: seen.append((e, n, v)))
    assert [s[0] for s in seen] == list(range(1, 41)) and seen[-1][1] == 40
    prof = C.evaluate_path(a, fit.curve, data)
    assert set(prof.values) == {"train_loss", "train_acc", "test_loss", "test_acc"}
    assert prof.barriers["train_loss"] < 0.5 * line.barriers["train_loss"]
    assert prof.barriers["test_loss"] < line.barriers["test_loss"]
    assert prof.values["train_acc"].min() > line.values["train_acc"].min()
    np.testing.assert_allclose(prof.values["train_loss"][[0, -1]], line.values["train_loss"][[0, -1]], rtol=1e-5)
    poly = C.fit_curve(a, a, b, train, curve="polychain", epochs=40, batch_size=64, lr=0.05)
    assert C.evaluate_path(a, poly.curve, data).barriers["train_loss"] < 0.5 * line.barriers["train_loss"]


def test_cancel_stops_the_fit() -> None:
    import threading

    from lossviz.jobs import JobCancelled

    stop = threading.Event()
    stop.set()
    with pytest.raises(JobCancelled):
        C.fit_curve(Theta(), A, B, RING_DATA, ring, epochs=5, cancel=stop, dtype=F64)


# ------------------------------------------------------------------------------------ batchnorm
def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 2)).double()


def test_update_bn_gives_the_statistics_of_the_data() -> None:
    model = _bn_model()
    x = torch.randn(70, 2, dtype=F64)
    y = torch.randint(0, 2, (70,))
    h = model[0](x).detach()
    C.update_bn(model, (x, y), batch_size=70)
    torch.testing.assert_close(model[1].running_mean, h.mean(0))
    torch.testing.assert_close(model[1].running_var, h.var(0, unbiased=True))
    assert not model.training and model[1].momentum == 0.1
    C.update_bn(model, (x, y), batch_size=32)  # 32 + 32 + 6: weighted by samples
    torch.testing.assert_close(model[1].running_mean, h.mean(0))


def test_evaluate_path_with_update_bn_recomputes_the_statistics_at_every_point() -> None:
    a, b = _bn_model(), _bn_model()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.5)
    x = torch.randn(80, 2, dtype=F64)
    y = torch.randint(0, 2, (80,))
    space = C.ParamSpace(a)
    curve = C.Curve.through("line", space.vector(a), space.vector(b))
    plain = C.evaluate_path(a, curve, {"train": (x, y)}, n_points=3, dtype=F64)
    fresh = C.evaluate_path(a, curve, {"train": (x, y)}, n_points=3, update_bn=True, dtype=F64)
    assert fresh.update_bn
    for k, t in enumerate((0.0, 0.5, 1.0)):
        m = _bn_model()
        space.load_into(m, curve.at(t)[0])
        C.update_bn(m, (x, y))
        ref = nn.functional.cross_entropy(m(x), y).item()
        assert fresh.values["train_loss"][k] == pytest.approx(ref, rel=1e-9)
    # a's own (default) statistics differ from the data's: the two profiles differ
    assert not np.allclose(plain.values["train_loss"], fresh.values["train_loss"])


# ------------------------------------------------------------------------------------ session
def test_session_connect_is_a_job_stored_and_found_again(tmp_path, monkeypatch) -> None:
    from lossviz.session import Session

    train, test = _spirals(120, 0), _spirals(60, 1)

    def factory() -> nn.Module:
        return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))

    from torch.utils.data import TensorDataset

    s = Session(tmp_path / "p", model=factory, data=(TensorDataset(*train), TensorDataset(*test)))
    a = s.init()
    job = s.train(epochs=4, lr=0.1, seed=1)
    job.wait(120)
    b = s.checkpoints()[-1]
    events: list[float] = []
    s.subscribe(lambda e: events.append(e["progress"]) if e["type"] == "job" and e["job"].kind == "connect" else None)
    job = s.connect(a.id, b.id, "polychain", epochs=3, batch_size=32, n_points=5, wait=False)
    res = job.wait(120)
    assert job.state == "done", job.error
    assert res["curve"] == "polychain" and res["t"] == [0.0, 0.25, 0.5, 0.75, 1.0] and len(res["losses"]) == 3
    assert set(res["path"]["values"]) == {"train_loss", "train_acc", "test_loss", "test_acc"}
    pts = res["control_points"]
    assert pts.shape == (3, C.ParamSpace(factory()).numel)
    torch.testing.assert_close(pts[0], s.vector(a.id))
    torch.testing.assert_close(pts[-1], s.vector(b.id))
    # the numbers are those of the library on the stored curve
    prof = C.evaluate_path(s.model(a.id), C.Curve("polychain", pts), {"train": train, "test": test}, n_points=5)
    np.testing.assert_allclose(res["path"]["values"]["train_loss"], prof.values["train_loss"], rtol=1e-5)
    assert res["barriers"]["curve"] == pytest.approx(prof.barriers["train_loss"], rel=1e-5)
    assert res["barriers"]["line"] == pytest.approx(C.loss_barrier(res["line"]["values"]["train_loss"]))
    assert events and max(events) == 1.0
    calls = []
    monkeypatch.setattr(C, "fit_curve", lambda *a, **k: calls.append(1))
    again = s.connect(a.id, b.id, "polychain", epochs=3, batch_size=32, n_points=5)
    assert not calls and again["barriers"] == res["barriers"]
    assert torch.equal(again["control_points"], pts)
    with pytest.raises(ValueError, match="two different"):
        s.connect(a.id, a.id)
    job = s.connect_plane(again, n=5, wait=False)
    plane = job.wait(120)
    assert job.state == "done", job.error
    assert plane.shape == (5, 5) and {"train_loss", "test_loss"} <= set(plane.values)
    np.testing.assert_allclose(plane.meta["connect"]["ends"][0], [0, 0], atol=1e-5)
    geometry = C.curve_plane(C.Curve("polychain", pts))
    i, j = 1, 3  # a grid point, checked against the model loaded there
    m = factory()
    point = geometry.origin + plane.x[j] * geometry.axes[0] + plane.y[i] * geometry.axes[1]
    C.ParamSpace(m).load_into(m, point.float())
    ref = nn.functional.cross_entropy(m(train[0]), train[1]).item()
    assert plane.values["train_loss"][i, j] == pytest.approx(ref, rel=1e-4)
    s.close()


def test_session_hessian_density_and_layers(tmp_path) -> None:
    from lossviz.session import Session

    x, y = _spirals(60, 2)
    s = Session(tmp_path / "h", model=lambda: nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)), data=(x, y))
    c = s.init()
    job = s.hessian(c.id, k=1, density=True, layers=True, density_steps=200, wait=False)
    res = job.wait(120)
    assert job.state == "done", job.error
    m = s.model(c.id).double()
    space = C.ParamSpace(m)

    def f(theta: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(torch.func.functional_call(m, space.unflatten(theta), (x.double(),)), y)

    dense = torch.autograd.functional.hessian(f, space.vector(m))
    ev = torch.linalg.eigvalsh(dense).numpy()
    np.testing.assert_allclose(np.sort(res["density"]["nodes"]), ev, atol=1e-4 * np.abs(ev).max())  # m = D
    assert sum(res["density"]["weights"]) == pytest.approx(1.0)
    assert set(res["layers"]) == {"0", "2"} and res["layers"]["0"]["numel"] == 12
    top0 = float(torch.linalg.eigvalsh(dense[:12, :12])[-1])
    assert res["layers"]["0"]["eigenvalues"][0] == pytest.approx(top0, rel=1e-3)
    plain = s.hessian(c.id, k=1)  # the earlier key: no density, no layers
    assert "density" not in plain and plain["eigenvalues"] == pytest.approx(res["eigenvalues"])
    s.close()


def test_surface_with_update_bn_recomputes_the_statistics_at_every_grid_point() -> None:
    from lossviz.connectivity import update_bn
    from lossviz.landscape import compute_surface
    from lossviz.params import ParamSpace
    from lossviz.training import evaluate_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).double()
    x, y = torch.randn(64, 3, dtype=torch.float64), torch.randint(0, 2, (64,))
    model.train()
    for _ in range(3):  # running statistics of the centre, away from the data's
        model(x * 3 + 1)
    model.eval()
    kw = dict(x="-1:1:3", dtype=torch.float64, progress=False, seed=1)
    fresh = compute_surface(model, (x, y), update_bn=True, **kw)
    plain = compute_surface(model, (x, y), **kw)
    assert fresh.meta["update_bn"] and not plain.meta["update_bn"]
    space = ParamSpace(model, "weights")
    d = fresh.directions.stacked()[0].to(torch.float64)
    for j, a in enumerate(fresh.x):
        work = copy.deepcopy(model)
        space.load_into(work, space.vector(model, dtype=torch.float64) + float(a) * d)
        want = evaluate_model(update_bn(work, (x, y)), x, y, "cross_entropy")  # a plain evaluation
        assert fresh.values["train_loss"][j] == pytest.approx(want["loss"], rel=1e-10)
        assert fresh.values["train_acc"][j] == pytest.approx(want["acc"], rel=1e-10)
    assert not np.allclose(fresh.values["train_loss"], plain.values["train_loss"])
    with pytest.raises(ValueError, match="kind='weights'"):
        compute_surface(model, (x, y), update_bn=True, kind="states", **kw)
