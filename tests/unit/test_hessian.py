"""Hessian: eigenpairs and trace against an analytic quadratic and the dense Hessian of a tiny MLP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from lossviz import hessian as H
from lossviz.params import ParamSpace

F64 = torch.float64


# ------------------------------------------------------------------------------------ quadratic
class Theta(nn.Module):
    """A model whose output is its parameter vector θ (for every sample)."""

    def __init__(self, theta0: torch.Tensor):
        super().__init__()
        self.theta = nn.Parameter(theta0.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(x.shape[0], -1)


def _quadratic(eigs: list[float], seed: int = 0):
    """Model + data + loss with L(θ) = ½ θᵀAθ + bᵀθ, A = Q diag(eigs) Qᵀ."""
    g = torch.Generator().manual_seed(seed)
    d = len(eigs)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    a = q @ torch.diag(torch.tensor(eigs, dtype=F64)) @ q.T
    b = torch.randn(d, generator=g, dtype=F64)

    def loss(out: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
        th = out[0]
        return 0.5 * th @ a @ th + b @ th

    model = Theta(torch.randn(d, generator=g, dtype=F64))
    data = (torch.zeros(10, 1, dtype=F64), torch.zeros(10, dtype=F64))
    return model, data, loss, a


EIGS = [9.0, 4.0, 2.5, 1.0, 0.5, -0.25, -3.0, 0.1]


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_quadratic_top_and_min(method: str) -> None:
    model, data, loss, a = _quadratic(EIGS)
    kw = dict(loss=loss, dtype=F64, tol=1e-10, method=method, batch_size=4, max_iter=20000)
    top = H.top_eigenpairs(model, data, k=3, **kw)
    np.testing.assert_allclose(top.eigenvalues, [9.0, 4.0, 2.5], rtol=1e-9)
    assert top.converged and top.method == method
    for lam, v in zip(top.eigenvalues, top.eigenvectors, strict=True):
        np.testing.assert_allclose((a @ v).numpy(), (lam * v).numpy(), atol=1e-8)
    lo = H.min_eigenvalue(model, data, **kw)
    assert lo.eigenvalues[0] == pytest.approx(-3.0, rel=1e-8)
    v = lo.eigenvectors[0]
    np.testing.assert_allclose((a @ v).numpy(), (-3.0 * v).numpy(), atol=1e-6)


def test_power_when_the_dominant_eigenvalue_is_negative() -> None:
    # largest magnitude is negative (-10): the k largest algebraic must still be 3, 2
    model, data, loss, _ = _quadratic([3.0, 2.0, 1.0, -10.0, -0.5])
    r = H.top_eigenpairs(model, data, k=2, loss=loss, dtype=F64, method="power", tol=1e-10, max_iter=50000)
    np.testing.assert_allclose(r.eigenvalues, [3.0, 2.0], rtol=1e-8)
    lz = H.top_eigenpairs(model, data, k=2, loss=loss, dtype=F64, tol=1e-10)
    np.testing.assert_allclose(lz.eigenvalues, [3.0, 2.0], rtol=1e-10)
    assert H.extreme_eigenvalues(model, data, loss, dtype=F64, tol=1e-10) == pytest.approx((-10.0, 3.0))
    assert H.eigenvalue_ratio(model, data, loss, dtype=F64, tol=1e-10) == pytest.approx(10.0 / 3.0)


def test_quadratic_trace() -> None:
    model, data, loss, a = _quadratic(EIGS)
    exact = H.trace(model, data, loss=loss, method="exact", dtype=F64)
    assert exact.mean == pytest.approx(float(torch.trace(a)), abs=1e-12) and exact.stderr == 0
    assert exact.mean == pytest.approx(sum(EIGS), abs=1e-12)
    hut = H.trace(model, data, n_samples=400, seed=1, loss=loss, dtype=F64)
    assert hut.stderr > 0 and abs(hut.mean - sum(EIGS)) < 4 * hut.stderr
    # Rademacher: z^T A z = tr A + sum_{i≠j} a_ij z_i z_j, so the variance is 2 sum_{i≠j} a_ij²
    off = (a**2).sum() - (torch.diag(a) ** 2).sum()
    assert np.var(hut.samples, ddof=1) == pytest.approx(2 * float(off), rel=0.3)
    again = H.trace(model, data, n_samples=400, seed=1, loss=loss, dtype=F64)
    assert again.mean == hut.mean  # deterministic given the seed


# ------------------------------------------------------------------------------------ tiny MLP
def _mlp(batchnorm: bool = False):
    torch.manual_seed(0)
    layers = [nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)]
    if batchnorm:
        layers.insert(1, nn.BatchNorm1d(8))
    model = nn.Sequential(*layers).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 2, generator=g, dtype=F64)
    y = torch.randint(0, 3, (50,), generator=g)
    return model, (x, y)


def _dense_hessian(model: nn.Module, data) -> torch.Tensor:
    """Reference: torch.autograd.functional.hessian of the mean loss over all samples at once."""
    space = ParamSpace(model)
    buffers = dict(model.named_buffers())
    x, y = data
    was = model.training
    model.eval()

    def f(theta):
        out = functional_call(model, {**space.unflatten(theta), **buffers}, (x,))
        return nn.functional.cross_entropy(out, y)

    h = torch.autograd.functional.hessian(f, space.vector(model))
    model.train(was)
    return h


@pytest.fixture(scope="module")
def mlp():
    model, data = _mlp()
    h = _dense_hessian(model, data)
    return model, data, h, torch.linalg.eigvalsh(h)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_mlp_top3_and_min_match_dense(mlp, method: str) -> None:
    model, data, h, ev = mlp
    assert ParamSpace(model).numel == 51
    # batch_size 16: batches of 16, 16, 16, 2 weighted by size give the mean loss's Hessian
    # (power iteration needs ~2000 products for λ_min here: one batch keeps it quick)
    kw = dict(dtype=F64, tol=1e-7, method=method, batch_size=16 if method == "lanczos" else None,
              max_iter=20000)
    top = H.top_eigenpairs(model, data, k=3, **kw)
    np.testing.assert_allclose(top.eigenvalues, ev.flip(0)[:3].numpy(), rtol=1e-4)
    for lam, v in zip(top.eigenvalues, top.eigenvectors, strict=True):
        np.testing.assert_allclose((h @ v).numpy(), (lam * v).numpy(), atol=1e-6)
        assert float(v.norm()) == pytest.approx(1.0)
    lo = H.min_eigenvalue(model, data, **kw)
    assert ev[0] < 0  # the example is indefinite, so "most negative" is meaningful
    assert lo.eigenvalues[0] == pytest.approx(float(ev[0]), rel=1e-4)
    v = lo.eigenvectors[0]
    np.testing.assert_allclose((h @ v).numpy(), (lo.eigenvalues[0] * v).numpy(), atol=1e-5)


def test_lanczos_and_power_agree(mlp) -> None:
    model, data, _, _ = mlp
    kw = dict(dtype=F64, tol=1e-9, max_iter=20000)
    lz = H.top_eigenpairs(model, data, k=2, method="lanczos", **kw)
    pw = H.top_eigenpairs(model, data, k=2, method="power", **kw)
    np.testing.assert_allclose(lz.eigenvalues, pw.eigenvalues, rtol=1e-8)
    # same sign convention, so the vectors agree too
    np.testing.assert_allclose(lz.eigenvectors.numpy(), pw.eigenvectors.numpy(), atol=1e-4)
    assert lz.n_matvecs < pw.n_matvecs


def test_mlp_trace(mlp) -> None:
    model, data, h, ev = mlp
    exact = H.trace(model, data, method="exact", dtype=F64, batch_size=16)
    assert exact.mean == pytest.approx(float(torch.trace(h)), abs=1e-8)
    assert exact.mean == pytest.approx(float(ev.sum()), abs=1e-8)
    hut = H.trace(model, data, n_samples=300, seed=0, dtype=F64)
    assert abs(hut.mean - float(ev.sum())) < 4 * hut.stderr
    assert hut.stderr < 0.1 * abs(float(ev.sum()))


def test_hvp_and_operator_match_dense(mlp) -> None:
    model, data, h, _ = mlp
    op = H.HessianOperator(model, data, dtype=F64, batch_size=7)
    torch.testing.assert_close(op.dense(), h, atol=1e-12, rtol=0)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(3), dtype=F64)
    torch.testing.assert_close(op(v), h @ v, atol=1e-12, rtol=0)
    # the generic hvp on a function with a known Hessian: f = sum(x^3) -> H = diag(6 x)
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    torch.testing.assert_close(H.hvp(lambda t: (t**3).sum(), x, torch.ones(3, dtype=F64)), 6 * x)


def test_float32_default_close_to_float64(mlp) -> None:
    _, data, _, ev = mlp
    m32 = _mlp()[0].float()
    x, y = data
    top = H.top_eigenpairs(m32, (x.float(), y), k=1)
    assert top.eigenvectors.dtype == torch.float32
    assert top.eigenvalues[0] == pytest.approx(float(ev[-1]), rel=1e-4)


def test_params_point_and_directions(mlp) -> None:
    model, data, _, _ = mlp
    space = ParamSpace(model)
    # the Hessian at another point, given as a flat vector, without touching the model
    other = space.vector(model) + 0.3 * torch.randn(space.numel, generator=torch.Generator().manual_seed(5), dtype=F64)
    before = space.vector(model).clone()
    moved = _mlp()[0]
    space.load_into(moved, other)
    ref = torch.linalg.eigvalsh(_dense_hessian(moved, data))
    r = H.top_eigenpairs(model, data, k=1, params=other, dtype=F64, tol=1e-10)
    assert r.eigenvalues[0] == pytest.approx(float(ref[-1]), rel=1e-6)
    assert torch.equal(space.vector(model), before)
    dirs = H.eigenvector_directions(model, data, k=2, dtype=F64, tol=1e-10)
    assert len(dirs) == 2 and all(d.shape == (space.numel,) for d in dirs)
    assert abs(float(dirs[0] @ dirs[1])) < 1e-8
    names = space.unflatten(dirs[0])
    assert list(names) == [n for n, _ in model.named_parameters()]


def test_batchnorm_buffers_fixed_and_eval_mode() -> None:
    model, data = _mlp(batchnorm=True)
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.copy_(torch.linspace(-1, 1, 8, dtype=F64))
        model[1].running_var.copy_(torch.linspace(0.5, 2, 8, dtype=F64))
    model.train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    h = _dense_hessian(model, data)  # eval-mode reference
    r = H.top_eigenpairs(model, data, k=2, dtype=F64, tol=1e-10)
    np.testing.assert_allclose(r.eigenvalues, torch.linalg.eigvalsh(h).flip(0)[:2].numpy(), rtol=1e-6)
    assert model.training, "the model's mode is restored"
    for k, v in model.state_dict().items():
        assert torch.equal(v, stats[k]), f"{k} changed"


def test_lanczos_full_spectrum_with_breakdown() -> None:
    # rank-deficient with a repeated eigenvalue: the Krylov space of one start vector is
    # invariant after 3 steps, so Lanczos must restart (orthogonally) to reach the rest
    d = 40
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(2), dtype=F64))
    eigs = torch.zeros(d, dtype=F64)
    eigs[:3] = torch.tensor([5.0, 5.0, -2.0])
    a = q @ torch.diag(eigs) @ q.T
    r = H.lanczos(lambda v: a @ v, d, k=d, tol=1e-12, max_iter=d)
    np.testing.assert_allclose(r.eigenvalues, eigs.sort(descending=True).values.numpy(), atol=1e-10)
    assert r.eigenvectors.shape == (d, d)  # the basis grew past its first 32 rows
    np.testing.assert_allclose((r.eigenvectors @ r.eigenvectors.T).numpy(), np.eye(d), atol=1e-8)


def test_bad_input() -> None:
    model, data = _mlp()
    with pytest.raises(ValueError, match="method"):
        H.top_eigenpairs(model, data, method="arnoldi", dtype=F64)
    with pytest.raises(ValueError, match="weights space"):
        H.top_eigenpairs(model, data, params=torch.zeros(3), dtype=F64)
    with pytest.raises(ValueError, match="unknown loss"):
        H.trace(model, data, loss="hinge")
    with pytest.raises(ValueError, match="k="):
        H.top_eigenpairs(model, data, k=0, dtype=F64)


def test_mse_eigenpairs_match_autograds_hessian() -> None:
    """``loss="mse"`` once raised "ZeroTensors are immutable" (forward-over-reverse through
    F.mse_loss); its top eigenpair is that of torch.autograd.functional.hessian."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x, y = torch.randn(50, 3), torch.randn(50, 1)
    r = H.top_eigenpairs(model, (x, y), 1, "mse")  # the call, float32
    space = ParamSpace(model)
    theta = space.vector(model).to(F64)

    def f(flat: torch.Tensor) -> torch.Tensor:
        out = functional_call(model.double(), space.unflatten(flat), (x.double(),))
        return torch.nn.functional.mse_loss(out, y.double())

    dense = torch.autograd.functional.hessian(f, theta)
    model.float()
    evals, evecs = torch.linalg.eigh(dense)
    np.testing.assert_allclose(r.eigenvalues, [float(evals[-1])], rtol=1e-4)
    assert abs(float(torch.dot(r.eigenvectors[0].to(F64), evecs[:, -1]))) == pytest.approx(1.0, abs=1e-4)
    op = H.HessianOperator(model, (x, y), "mse", dtype=F64, batch_size=16)
    torch.testing.assert_close(op.dense(), dense, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------ products
def test_auto_batches_keep_one_graph_or_split_by_memory(mlp) -> None:
    model, data, h, _ = mlp
    one = H.HessianOperator(model, data, dtype=F64)
    assert one.keeps_graph and len(one.batches) == 1  # 50 samples: far below the memory budget
    split = H.HessianOperator(model, data, dtype=F64, graph_memory=1)  # 1 byte: one sample per batch
    assert len(split.batches) == 50 and not split.keeps_graph
    v = torch.randn(one.dim, generator=torch.Generator().manual_seed(4), dtype=F64)
    torch.testing.assert_close(one(v), h @ v, atol=1e-12, rtol=0)
    torch.testing.assert_close(split(v), h @ v, atol=1e-12, rtol=0)
    torch.testing.assert_close(one(v), h @ v, atol=1e-12, rtol=0)  # the kept graph serves again


def test_forward_hook_follows_the_calling_rule(mlp) -> None:
    model, (x, y), _, _ = mlp
    hooked = H.HessianOperator(model, (x, y), dtype=F64, forward=lambda m, b: m(2 * b[0]))
    plain = H.HessianOperator(model, (2 * x, y), dtype=F64)
    torch.testing.assert_close(hooked.dense(), plain.dense(), atol=1e-12, rtol=0)


def test_hessian_moves_between_points(mlp) -> None:
    model, data, _, _ = mlp
    space = ParamSpace(model)
    other = space.vector(model) + 0.2
    moved = _mlp()[0]
    space.load_into(moved, other)
    op = H.HessianOperator(model, data, dtype=F64)
    op.dense()
    torch.testing.assert_close(op.move_to(other).dense(), _dense_hessian(moved, data), atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------ density
def test_density_nodes_are_the_dense_spectrum(mlp) -> None:
    model, data, _, ev = mlp
    d = H.density(model, data, n_iter=200, n_runs=2, dtype=F64, seed=3)
    assert d.nodes.shape == (2, 51)  # capped at the dimension
    for row in d.nodes:  # m = D: the Gauss nodes are the eigenvalues
        np.testing.assert_allclose(np.sort(row), ev.numpy(), atol=1e-9)
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, atol=1e-12)
    t, phi = d.curve(n=4000)
    assert np.trapezoid(phi, t) == pytest.approx(1.0, abs=1e-3)


def test_density_moments_estimate_traces_of_powers(mlp) -> None:
    model, data, _, ev = mlp
    d = H.density(model, data, n_iter=6, n_runs=300, dtype=F64, seed=0)
    for p in (1, 2, 3):
        exact = float((ev**p).mean())
        per_run = np.sum(d.weights * d.nodes**p, axis=1)  # exact per run for p < 2m: v^T H^p v
        stderr = per_run.std(ddof=1) / np.sqrt(len(per_run))
        assert abs(d.moment(p) - exact) < 4 * stderr, p
    assert d.trace == pytest.approx(d.dim * d.moment(1))
    # the smoothed density approaches the dense spectrum's (same sigma) as runs average
    sigma = 0.05 * float(ev.max() - ev.min())
    t = np.linspace(float(ev.min()) - 5 * sigma, float(ev.max()) + 5 * sigma, 2000)
    ref = H.Density(ev.numpy()[None], np.full((1, 51), 1 / 51), 51, 0)
    l1 = np.trapezoid(np.abs(d.curve(t, sigma)[1] - ref.curve(t, sigma)[1]), t)
    assert l1 < 0.25


# ------------------------------------------------------------------------------------ per layer
def test_layer_eigenvalues_and_traces_are_the_blocks(mlp) -> None:
    model, data, h, _ = mlp
    groups = H.parameter_groups(model)
    assert groups == {"0": ["0.weight", "0.bias"], "2": ["2.weight", "2.bias"]}
    space = ParamSpace(model)
    eig = H.layer_eigenvalues(model, data, k=2, dtype=F64, tol=1e-10)
    tr = H.layer_traces(model, data, n_samples=200, seed=2, dtype=F64)
    full = H.trace(model, data, n_samples=200, seed=2, dtype=F64)
    np.testing.assert_allclose(sum(t.samples for t in tr.values()), full.samples, rtol=1e-10)  # same probes
    for name, names in groups.items():
        idx = torch.cat([torch.arange(space[n].slice.start, space[n].slice.stop) for n in names])
        block = h[idx][:, idx]
        np.testing.assert_allclose(eig[name].eigenvalues, torch.linalg.eigvalsh(block).flip(0)[:2].numpy(),
                                   rtol=1e-7)
        assert abs(tr[name].mean - float(torch.trace(block))) < 4 * tr[name].stderr
    with pytest.raises(ValueError, match="unknown parameters"):
        H.layer_eigenvalues(model, data, groups={"x": ["nope"]}, dtype=F64)


# ------------------------------------------------------------------------------------ hutch++
def test_hutch_plus_plus_beats_hutchinson_on_outliers() -> None:
    d = 60  # a few large outliers on a small bulk: Hutch++'s case
    eigs = [50.0, 30.0, 20.0] + [0.1] * (d - 3)
    model, data, loss, _ = _quadratic(eigs, seed=3)
    errs = {"hutchinson": [], "hutch++": []}
    for seed in range(8):
        for method in errs:
            r = H.trace(model, data, n_samples=30, seed=seed, loss=loss, method=method, dtype=F64)
            errs[method].append(abs(r.mean - sum(eigs)))
            assert r.n_matvecs == 30
    assert np.mean(errs["hutch++"]) < 0.2 * np.mean(errs["hutchinson"])
    with pytest.raises(ValueError, match="hutch"):
        H.trace(model, data, loss=loss, method="girard")


# ------------------------------------------------------------------------------------ every loss
def _loss_case(name: str):
    """A tiny float64 MLP and data for the loss ``name`` (``"mse_labels"``: the reference's softmax-MSE;
    the token losses: 6 sequences of 5 tokens, the MLP acting per token, some labels -100; ``"bce"``:
    0/1 multi-label targets)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(1)
    if name in ("token_cross_entropy", "causal_lm"):
        x = torch.randn(6, 5, 2, generator=g, dtype=F64)
        y = torch.randint(0, 3, (6, 5), generator=g)
        y[torch.rand(6, 5, generator=g) < 0.25] = -100
        return model, (x, y), name
    x = torch.randn(30, 2, generator=g, dtype=F64)
    if name in ("cross_entropy", "ce", "nll", "mse_labels"):
        y = torch.randint(0, 3, (30,), generator=g)
    elif name == "bce":
        y = (torch.rand(30, 3, generator=g) < 0.5).to(F64)
    else:
        y = 2 * torch.randn(30, 3, generator=g, dtype=F64)  # "huber": both of its branches
    return model, (x, y), ("mse" if name == "mse_labels" else name)


@pytest.mark.parametrize("name", [*__import__("lossviz.losses", fromlist=["LOSS_NAMES"]).LOSS_NAMES, "mse_labels"])
def test_every_loss_through_every_curvature_tool(name: str) -> None:
    from lossviz.hessian.maps import eigen_map
    from lossviz.losses import resolve_loss

    model, (x, y), loss = _loss_case(name)
    space = ParamSpace(model)
    fn = resolve_loss(loss, y).mean

    def f(theta: torch.Tensor) -> torch.Tensor:
        return fn(functional_call(model, space.unflatten(theta), (x,)), y)

    dense = torch.autograd.functional.hessian(f, space.vector(model))
    ev = torch.linalg.eigvalsh(dense)
    kw = dict(dtype=F64, tol=1e-10)
    atol = 1e-9 * max(1.0, float(ev.abs().max()))
    np.testing.assert_allclose(H.top_eigenpairs(model, (x, y), 2, loss, **kw).eigenvalues, ev.flip(0)[:2].numpy(),
                               atol=atol)
    assert H.min_eigenvalue(model, (x, y), loss, **kw).eigenvalues[0] == pytest.approx(float(ev[0]), abs=atol)
    assert H.extreme_eigenvalues(model, (x, y), loss, **kw) == pytest.approx((float(ev[0]), float(ev[-1])), abs=atol)
    assert H.trace(model, (x, y), loss=loss, method="exact", dtype=F64).mean == pytest.approx(float(ev.sum()), abs=atol)
    hut = H.trace(model, (x, y), n_samples=50, loss=loss, dtype=F64)
    assert abs(hut.mean - float(ev.sum())) <= 4 * hut.stderr + atol
    nodes = H.density(model, (x, y), loss, n_iter=space.numel, dtype=F64).nodes[0]
    np.testing.assert_allclose(np.sort(nodes), ev.numpy(), atol=1e-8 * max(1.0, float(ev.abs().max())))
    blocks = H.layer_eigenvalues(model, (x, y), 1, loss, **kw)
    assert set(blocks) == {"0", "2"}
    first = H.parameter_groups(model)["0"]
    n0 = sum(space[n].numel for n in first)
    assert blocks["0"].eigenvalues[0] == pytest.approx(float(torch.linalg.eigvalsh(dense[:n0, :n0])[-1]), abs=atol)
    # a one-point grid evaluates the centre only; the direction just has to be a valid (non-zero) one
    line = eigen_map(model, (x, y), loss, directions=torch.ones(space.numel, dtype=F64), grid="0:0:1",
                     tol=1e-10, dtype=F64)
    assert line.values["min_eig"][0] == pytest.approx(float(ev[0]), abs=1e-6 * max(1.0, float(ev.abs().max())))
    assert line.values["max_eig"][0] == pytest.approx(float(ev[-1]), rel=1e-6)


# ------------------------------------------------------------------------------------ eigen map
def test_eigen_map_matches_dense_at_every_point_and_writes_the_reference_datasets(mlp, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from lossviz.io.h5 import read_surface, write_surface
    from lossviz.landscape import compute_surface

    model, data, _, _ = mlp
    surface = compute_surface(model, data, "random", x="-0.5:0.5:3", y="-0.5:0.5:3", metrics=("loss",),
                              dtype=F64, progress=False)
    seen: list[int] = []
    em = H.eigen_map(model, data, grid=surface, tol=1e-10, dtype=F64, callback=lambda s, n, t: seen.append(n))
    assert seen[-1] == 9 and em.complete
    assert set(em.values) == {"train_loss", "min_eig", "max_eig"}
    np.testing.assert_array_equal(em.values["train_loss"], surface.values["train_loss"])
    space = ParamSpace(model)
    d1, d2 = surface.directions.vectors
    for i, yv in enumerate(em.y):
        for j, xv in enumerate(em.x):
            moved = _mlp()[0]
            space.load_into(moved, space.vector(model) + xv * d1 + yv * d2)
            ev = torch.linalg.eigvalsh(_dense_hessian(moved, data))
            assert em.values["min_eig"][i, j] == pytest.approx(float(ev[0]), rel=1e-6)
            assert em.values["max_eig"][i, j] == pytest.approx(float(ev[-1]), rel=1e-6)
    ratio = H.eigen_ratio(em)
    np.testing.assert_allclose(ratio, np.abs(em.values["min_eig"] / em.values["max_eig"]))
    with ThreadPoolExecutor(2) as pool:
        threaded = H.eigen_map(model, data, grid=surface, tol=1e-10, dtype=F64, executor=pool)
    np.testing.assert_allclose(threaded.values["max_eig"], em.values["max_eig"], rtol=1e-9)
    path = tmp_path / "surface.h5"
    write_surface(path, em)
    back = read_surface(path)
    np.testing.assert_array_equal(back.values["min_eig"], em.values["min_eig"])
    np.testing.assert_array_equal(back.values["max_eig"], em.values["max_eig"])
    with pytest.raises(ValueError, match="directions"):
        H.eigen_map(model, data, grid="-1:1:3")
    import threading

    stop = threading.Event()
    part = H.eigen_map(model, data, grid=surface, dtype=F64, cancel=stop, callback=lambda s, n, t: stop.set())
    assert part.done.sum() == 1 and part.meta["cancelled"]
    assert np.isnan(part.values["max_eig"]).sum() == 8


@pytest.mark.system
def test_eigen_map_through_a_process_pool(mlp) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    model, data, _, _ = mlp
    d = torch.randn(ParamSpace(model).numel, generator=torch.Generator().manual_seed(0), dtype=F64)
    here = H.eigen_map(model, data, directions=d, grid="-0.5:0.5:3", tol=1e-10, dtype=F64)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        there = H.eigen_map(model, data, directions=d, grid="-0.5:0.5:3", tol=1e-10, dtype=F64, executor=pool)
    np.testing.assert_allclose(there.values["min_eig"], here.values["min_eig"], rtol=1e-9)
    np.testing.assert_allclose(there.values["max_eig"], here.values["max_eig"], rtol=1e-9)
