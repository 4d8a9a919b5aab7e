"""Adaptive surfaces against the full uniform surface: refinement meets its accuracy for a fraction of
the points; subsampling's standard errors are right and cover the exact values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lossviz.landscape import compute_surface
from lossviz.refine import coarse_mask, interpolants, refine_surface
from lossviz.subsample import standard_error, subsampled_surface


class Bowl(nn.Module):
    """L(θ) = log(1 + ½ (θ-θ*)ᵀ A (θ-θ*)) + 0.05: a valley, flat at its floor, steep around it;
    forward returns L for every sample (loss = the mean of the outputs)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(4, 2, generator=g, dtype=torch.float64))
        m = torch.randn(8, 8, generator=g, dtype=torch.float64)
        self.register_buffer("A", m @ m.T / 4 + torch.eye(8, dtype=torch.float64))
        self.register_buffer("theta_star", self.weight.detach().reshape(-1) + 0.1)

    def forward(self, x):
        v = self.weight.reshape(-1) - self.theta_star
        value = torch.log1p(0.5 * v @ self.A @ v) + 0.05
        return value.expand(x.shape[0])


def mean_output(out, target):
    return out.mean()


BOWL = dict(x="-2:2:41", y="-2:2:41", loss=mean_output, dtype=torch.float64, kind="weights")
BOWL_DATA = (torch.zeros(3, 1, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))


@pytest.fixture(scope="module")
def bowl_full():
    model = Bowl()
    return model, compute_surface(model, BOWL_DATA, progress=False, **BOWL)


# ---------------------------------------------------------------------------------------- refine
def test_coarse_mask_and_interpolants_are_exact_on_a_plane():
    mask = coarse_mask((9, 11), 4)
    assert np.flatnonzero(mask[0]).tolist() == [0, 4, 8, 10] and np.flatnonzero(mask[:, 0]).tolist() == [0, 4, 8]
    col, row = np.meshgrid(np.arange(11.0), np.arange(9.0))
    plane = 2.0 * col - 3.0 * row + 1.0
    cubic, linear = interpolants((9, 11), mask, np.where(mask, plane, np.nan))
    np.testing.assert_allclose(cubic, plane, atol=1e-5)  # its gradients are fitted iteratively (tol 1e-6)
    np.testing.assert_allclose(linear, plane, atol=1e-9)
    line = np.linspace(0, 1, 13) ** 2
    c1, l1 = interpolants((13,), coarse_mask((13,), 3), line)
    assert np.abs(c1 - line).max() < np.abs(l1 - line).max()  # cubic beats linear on a curve


def test_refinement_meets_one_percent_of_the_contour_range_for_a_fifth_of_the_points(bowl_full):
    model, full = bowl_full
    rounds = []
    traj = np.array([[-1.5, 1.5], [-1.0, 1.2], [-0.5, 0.6]])
    surf = refine_surface(model, BOWL_DATA, full.directions, rtol=0.002, budget=0.2, trajectory=traj,
                          callback=lambda s, n, t: rounds.append(n), **BOWL)
    exact = full.values["train_loss"]
    rel = np.abs(surf.values["train_loss"] - exact) / np.abs(exact)
    info = surf.meta["adaptive"]
    assert info["fraction"] <= 0.2 and rounds == sorted(rounds) and len(rounds) == info["rounds"]
    # the contour picture: errors within 1% of the range the contour levels span; pointwise
    # relative errors small on average
    assert np.abs(surf.values["train_loss"] - exact).max() <= 0.01 * np.ptp(exact)
    assert rel.mean() <= 0.002 and rel.max() <= 0.03, (rel.mean(), rel.max())
    evaluated = np.zeros(exact.size, dtype=bool)
    evaluated[info["evaluated"]] = True
    evaluated = evaluated.reshape(exact.shape)
    # evaluated points are exact and carry no error; the minimum and the trajectory were evaluated
    np.testing.assert_allclose(surf.values["train_loss"][evaluated], exact[evaluated], rtol=0, atol=1e-12)
    assert (surf.errors["train_loss"][evaluated] == 0).all()
    assert evaluated.ravel()[np.argmin(exact)]
    assert evaluated[35, 5] and evaluated[32, 10] and evaluated[26, 15]  # (x, y) -> (row y, col x)
    # the estimated errors are of the right size where interpolated (within 10x of the actual)
    interp = ~evaluated
    assert surf.errors["train_loss"][interp].max() >= 0.1 * np.abs(surf.values["train_loss"] - exact)[interp].max()


def test_refinement_is_worse_without_its_adaptive_points(bowl_full):
    """The same number of points on a uniform lattice, interpolated, is less accurate on average."""
    model, full = bowl_full
    surf = refine_surface(model, BOWL_DATA, full.directions, rtol=0.002, budget=0.2, **BOWL)
    exact = full.values["train_loss"]
    n = surf.meta["adaptive"]["n_evaluated"]
    step = int(np.ceil(40 / (np.sqrt(n) - 1)))  # a uniform lattice of at most n points
    mask = coarse_mask(exact.shape, step)
    assert mask.sum() <= n
    cubic, _ = interpolants(exact.shape, mask, np.log(exact))
    uniform_err = (np.abs(np.exp(cubic) - exact) / exact).mean()
    adaptive_err = (np.abs(surf.values["train_loss"] - exact) / exact).mean()
    assert adaptive_err < uniform_err


def test_refine_rejects_bad_arguments():
    with pytest.raises(ValueError, match="budget"):
        refine_surface(Bowl(), BOWL_DATA, budget=0, **BOWL)
    with pytest.raises(TypeError, match="chooses the points"):
        refine_surface(Bowl(), BOWL_DATA, only=np.ones((41, 41), bool), **BOWL)
    with pytest.raises(ValueError, match=r"trajectory must be \(n, 2\)"):
        refine_surface(Bowl(), BOWL_DATA, trajectory=[[0.0, 0.0, 1.0]], budget=0.1, **BOWL)


def test_refine_says_so_when_the_first_lattice_is_almost_all_divergent():
    """A model that diverges on nearly the whole coarse lattice leaves too few finite values to
    interpolate: a clear error, not scipy's Delaunay failure."""

    class Cliff(Bowl):
        def forward(self, x):  # finite only at one corner: theta far below theta_star
            v = self.weight.reshape(-1) - self.theta_star
            finite = bool((v < -1.5).all())
            return super().forward(x) if finite else torch.full((x.shape[0],), float("nan"), dtype=torch.float64)

    with pytest.raises(ValueError, match=r"gave only \d+ finite values of train_loss.*shrink the grid's range"):
        refine_surface(Cliff(), BOWL_DATA, budget=0.2, **BOWL)


_CANCEL_AT: dict = {}  # the engine evaluates a copy of the model: the trigger lives out here


class CancelsAfter(Bowl):
    """The bowl; sets ``_CANCEL_AT["event"]`` once evaluated ``_CANCEL_AT["after"]`` times."""

    def forward(self, x):
        _CANCEL_AT["calls"] += 1
        if _CANCEL_AT["calls"] >= _CANCEL_AT["after"]:
            _CANCEL_AT["event"].set()
        return super().forward(x)


# cancel stops inside a chunk (before the next data batch or module): the chunk under way is left
# undone, so "after" lands in the third chunk of 8 of the first lattice (two chunks kept), or later
@pytest.mark.parametrize("after", [20, 300])
def test_refine_cancel_keeps_what_was_evaluated_and_tries_nothing_it_did_not(bowl_full, after):
    import threading

    _, full = bowl_full
    event = threading.Event()
    _CANCEL_AT.update(event=event, after=after, calls=0)
    surf = refine_surface(CancelsAfter(), BOWL_DATA, budget=0.3, cancel=event, chunk_size=8, strategy="loop", **BOWL)
    evaluated = np.zeros(surf.done.size, bool)
    evaluated[surf.meta["adaptive"]["evaluated"]] = True
    evaluated = evaluated.reshape(surf.done.shape)
    assert surf.meta["cancelled"]
    # every point called evaluated was computed, and equals the full surface there
    np.testing.assert_allclose(surf.values["train_loss"][evaluated], full.values["train_loss"][evaluated],
                               rtol=0, atol=1e-12)
    n_first = int(coarse_mask((41, 41), 3).sum())
    if after < 225:  # within the first lattice: the partial lattice, the rest NaN and not done
        assert 0 < evaluated.sum() < n_first
        assert (surf.done == evaluated).all() and np.isnan(surf.values["train_loss"][~evaluated]).all()
    else:  # after some rounds: a full picture from fewer points than the budget
        assert n_first < evaluated.sum() < 0.3 * 41 * 41 and surf.done.all()
        assert np.isfinite(surf.values["train_loss"]).all()


# ---------------------------------------------------------------------------------------- subsample
def test_standard_error_is_the_spread_of_subset_means():
    rng = np.random.default_rng(0)
    pop = rng.exponential(size=400)
    n = 60
    means = np.array([rng.choice(pop, n, replace=False).mean() for _ in range(4000)])
    sub = rng.choice(pop, n, replace=False)
    mean, se = standard_error(sub.sum(), (sub**2).sum(), n, len(pop))
    assert mean == pytest.approx(sub.mean())
    # the FPC-corrected formula against the spread of many subset means (its expectation)
    pop_se = np.sqrt(pop.var(ddof=1) / n * (400 - n) / 399)
    assert means.std() == pytest.approx(pop_se, rel=0.05)
    assert se == pytest.approx(pop_se, rel=0.35)
    assert standard_error(pop.sum(), (pop**2).sum(), 400, 400)[1] == 0.0


class Line(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 1).double()

    def forward(self, x):
        return self.lin(x).squeeze(-1)


def squared_error(out, target):
    return (out - target) ** 2


def test_subsampling_stops_early_and_its_error_bars_cover_the_exact_surface():
    torch.manual_seed(0)
    X = torch.randn(2000, 3, dtype=torch.float64)
    Y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3 * torch.randn(2000, dtype=torch.float64)
    model = Line()
    kw = dict(x="-1:1:5", y="-1:1:5", dtype=torch.float64, directions="random", seed=1, ignore=None)
    exact = compute_surface(model, (X, Y), loss="mse", progress=False, **kw).values["train_loss"]
    levels = []
    surf = subsampled_surface(model, (X, Y), per_sample_loss=squared_error, rtol=0.05, first=50,
                              callback=lambda s, k, a: levels.append(a), **kw)
    est, se = surf.values["train_loss"], surf.errors["train_loss"]
    used = np.array(surf.meta["adaptive"]["samples_per_point"])
    assert surf.meta["adaptive"]["fraction"] < 0.5 and used.min() < 2000
    assert levels == sorted(levels, reverse=True)  # active points only decrease
    assert (se <= 0.05 * est + 1e-12).all()
    assert (np.abs(est - exact) <= 4 * se + 1e-12).all()  # 4 standard errors cover every point
    exact_run = subsampled_surface(model, (X, Y), per_sample_loss=squared_error, rtol=1e-9, **kw)
    np.testing.assert_allclose(exact_run.values["train_loss"], exact, rtol=1e-10)
    assert (exact_run.errors["train_loss"] == 0).all()


def test_subsampling_needs_a_per_sample_loss_for_regression():
    with pytest.raises(ValueError, match="per_sample_loss"):
        subsampled_surface(Line(), (torch.randn(8, 3).double(), torch.randn(8).double()), x="-1:1:3")
