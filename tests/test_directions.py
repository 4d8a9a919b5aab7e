"""Directions: random draws against the reference's recipe, normalizations, target, PCA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lossviz.directions import (
    DirectionSet,
    as_direction,
    filter_normalize,
    normalize_direction,
    orthogonalize,
    pca_directions,
    project_onto,
    random_direction,
    random_directions,
    random_gaussian,
    target_direction,
)
from lossviz.params import ParamSpace


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, 2, bias=False),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 5),
        nn.ReLU(),
        nn.Linear(5, 2),
    )
    # non-trivial running statistics
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].num_batches_tracked.fill_(7)
    return net


# ------------------------------------------------------------------ the reference, written out
def reference_random(net: nn.Module, kind: str, norm: str, ignore: str, seed: int):
    """net_plotter.create_random_direction, tensor by tensor, as in the reference."""
    torch.manual_seed(seed)
    if kind == "weights":
        weights = [p.data for p in net.parameters()]
        direction = [torch.randn(w.size()) for w in weights]
    else:
        weights = list(net.state_dict().values())
        direction = [torch.randn(w.size()) for w in weights]
    for d, w in zip(direction, weights):
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.fill_(0)
            else:
                d.copy_(w)
        elif norm == "filter":
            for df, wf in zip(d, w):
                df.mul_(wf.norm() / (df.norm() + 1e-10))
        elif norm == "layer":
            d.mul_(w.norm() / d.norm())
        elif norm == "weight":
            d.mul_(w)
        elif norm == "dfilter":
            for df in d:
                df.div_(df.norm() + 1e-10)
        elif norm == "dlayer":
            d.div_(d.norm())
    names = [n for n, _ in net.named_parameters()] if kind == "weights" else list(net.state_dict())
    return dict(zip(names, direction))


@pytest.mark.parametrize("kind", ["weights", "states"])
@pytest.mark.parametrize("norm", ["filter", "layer", "weight", "dfilter", "dlayer", None])
@pytest.mark.parametrize("ignore", ["biasbn", None])
def test_random_direction_equals_reference_recipe(kind, norm, ignore):
    net = bn_net()
    space = ParamSpace(net, kind)
    center = space.vector(net)
    ours = random_direction(space, center, seed=11, normalization=norm, ignore=ignore)
    ref = reference_random(net, kind, norm or "", ignore or "", 11)
    ref_vec = torch.cat([ref[n].reshape(-1).float() for n in space.names])
    torch.testing.assert_close(ours, ref_vec, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["weights", "states"])
def test_raw_draw_is_bitwise_the_reference_draw(kind):
    net = bn_net()
    space = ParamSpace(net, kind)
    torch.manual_seed(5)
    src = list(net.parameters()) if kind == "weights" else list(net.state_dict().values())
    draws = [torch.randn(t.size()) for t in src]
    names = [n for n, _ in net.named_parameters()] if kind == "weights" else list(net.state_dict())
    by_name = dict(zip(names, draws))
    expected = torch.cat([by_name[n].reshape(-1) for n in space.names])
    assert torch.equal(random_gaussian(space, seed=5), expected)


def test_filter_normalization_norms_biasbn_and_copy():
    net = bn_net()
    space = ParamSpace(net, "weights")
    center = space.vector(net)
    d = random_direction(space, center, seed=0)  # filter + biasbn by default
    named_d = space.unflatten(d)
    named_w = dict(net.named_parameters())
    n_filters = 0
    for e in space.entries:
        if e.dim > 1:
            for df, wf in zip(named_d[e.name], named_w[e.name].detach()):
                assert abs(float(df.norm()) - float(wf.norm())) <= 1e-6 * max(1.0, float(wf.norm()))
                n_filters += 1
        else:
            assert torch.count_nonzero(named_d[e.name]) == 0, e.name
    assert n_filters == 4 + 3 + 5 + 2
    kept = random_direction(space, center, seed=0, ignore=None)
    one_d = space.mask("1d")
    assert torch.equal(kept[one_d], center[one_d])
    assert torch.equal(kept[~one_d], d[~one_d])


def test_filter_normalize_of_arbitrary_direction():
    net = bn_net()
    space = ParamSpace(net, "states")
    center = space.vector(net)
    raw = torch.linspace(-3, 5, space.numel)
    d = filter_normalize(raw, center, space)
    for e in space.entries:
        dd, ww = d[e.slice].view(e.shape), center[e.slice].view(e.shape)
        if e.dim > 1:
            torch.testing.assert_close(
                dd.flatten(1).norm(dim=1), ww.flatten(1).norm(dim=1), rtol=1e-6, atol=1e-7
            )
        else:  # BN running statistics are 1-D too
            assert torch.count_nonzero(dd) == 0


def test_seeds_reproduce_and_differ():
    net = bn_net()
    space = ParamSpace(net)
    c = space.vector(net)
    a = random_direction(space, c, seed=1)
    assert torch.equal(a, random_direction(space, c, seed=1))
    b = random_direction(space, c, seed=2)
    multi = ~space.mask("1d")
    assert not torch.allclose(a[multi], b[multi])
    g = torch.Generator().manual_seed(1)
    x = random_direction(space, c, generator=g)
    y = random_direction(space, c, generator=g)
    assert torch.equal(x, a) and not torch.allclose(x[multi], y[multi])
    ds = random_directions(space, c, 2, seed=1)
    assert torch.equal(ds.vectors[0], x) and torch.equal(ds.vectors[1], y)
    assert ds.method == "random" and ds.seed == 1 and ds.ndim == 2


def test_layer_and_model_norms():
    net = bn_net()
    space = ParamSpace(net)
    c = space.vector(net).double()
    d = random_direction(space, c, seed=3, normalization="layer")
    assert d.dtype == torch.float64
    for e in space.entries:
        if e.dim > 1:
            assert abs(float(d[e.slice].norm()) - float(c[e.slice].norm())) < 1e-12
    m = random_direction(space, c, seed=3, normalization="model")
    multi = ~space.mask("1d")
    assert abs(float(m[multi].norm()) - float(c[multi].norm())) < 1e-12
    # model normalization is one global scale of the raw draw
    raw = random_gaussian(space, seed=3).double()
    ratio = m[multi] / raw[multi]
    assert float(ratio.max() - ratio.min()) < 1e-12
    dl = random_direction(space, c, seed=3, normalization="dlayer")
    for e in space.entries:
        if e.dim > 1:
            assert abs(float(dl[e.slice].norm()) - 1.0) < 1e-12


def test_bad_arguments():
    net = bn_net()
    space = ParamSpace(net)
    c = space.vector(net)
    with pytest.raises(ValueError, match="unknown normalization"):
        random_direction(space, c, normalization="filters")
    with pytest.raises(ValueError, match="unknown ignore"):
        random_direction(space, c, ignore="bias")
    with pytest.raises(ValueError, match="flat vector"):
        random_direction(space, c[:-1])
    with pytest.raises(ValueError, match="1 or 2"):
        DirectionSet([c, c, c])


def test_target_and_orthogonalize():
    a = torch.randn(50, dtype=torch.float64)
    b = torch.randn(50, dtype=torch.float64)
    d = target_direction(None, a, b)
    torch.testing.assert_close(a + d, b)
    d1, d2 = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    o = orthogonalize(d2, d1)
    assert abs(float(o @ d1)) < 1e-12
    # d2 still lies in span(d1, o): the plane is unchanged
    basis = torch.stack([d1, o]).T
    coef = torch.linalg.lstsq(basis, d2.unsqueeze(1)).solution
    torch.testing.assert_close((basis @ coef).squeeze(1), d2)
    with pytest.raises(ValueError, match="zero direction"):
        orthogonalize(d2, torch.zeros(50, dtype=torch.float64))


def test_target_direction_between_models_states():
    a, b = bn_net(0), bn_net(1)
    space = ParamSpace(a, "states")
    d = target_direction(space, space.vector(a), space.vector(b))
    torch.testing.assert_close(space.vector(a) + d, space.vector(b))


def test_as_direction_forms_and_errors():
    net = bn_net()
    space = ParamSpace(net, "states")
    vec = space.vector(net)
    sd = net.state_dict()  # full state dict, includes num_batches_tracked
    assert torch.equal(as_direction(space, sd), vec)
    assert torch.equal(as_direction(space, [sd[n] for n in space.names]), vec)
    assert torch.equal(as_direction(space, list(sd.values())), vec)  # reference's list order
    assert torch.equal(as_direction(space, vec.numpy()), vec)
    wspace = ParamSpace(net, "weights")
    assert torch.equal(as_direction(wspace, sd), wspace.vector(net))
    bad = dict(sd)
    bad["5.weight"] = torch.zeros(5, 26)
    with pytest.raises(ValueError, match=r"'5\.weight'.*\[5, 26\].*\[5, 27\]"):
        as_direction(space, bad)
    del bad["5.weight"]
    with pytest.raises(ValueError, match=r"'5\.weight'"):
        as_direction(space, bad)
    with pytest.raises(ValueError, match="expected"):
        as_direction(space, vec[:-1])
    with pytest.raises(TypeError):
        as_direction(space, "nope")


# ------------------------------------------------------------------ PCA
def test_pca_against_numpy_svd():
    rng = np.random.default_rng(0)
    traj = torch.from_numpy(rng.normal(size=(9, 40)).cumsum(axis=0))
    res = pca_directions(traj, n_components=3)
    rows = traj.numpy() - traj.numpy()[-1]
    centered = rows - rows.mean(axis=0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    comps = res.directions.numpy()
    for k in range(3):
        assert abs(abs(comps[k] @ vt[k]) - 1.0) < 1e-10
    np.testing.assert_allclose(res.singular_values, s[:3], rtol=1e-10)
    np.testing.assert_allclose(res.explained_variance, s[:3] ** 2 / (9 - 1), rtol=1e-10)
    np.testing.assert_allclose(res.explained_variance_ratio, s[:3] ** 2 / (s**2).sum(), rtol=1e-10)
    # coordinates: orthonormal components, so lstsq == dot products
    np.testing.assert_allclose(res.coords, rows @ comps.T, atol=1e-10)


def test_pca_coords_reproduce_planar_trajectory():
    rng = np.random.default_rng(1)
    dim = 30
    center = rng.normal(size=dim)
    u, v = rng.normal(size=dim), rng.normal(size=dim)  # not orthogonal
    ab = rng.normal(size=(12, 2))
    ab[-1] = 0.0  # the trajectory ends at the center (the final model)
    traj = center + ab[:, :1] * u + ab[:, 1:] * v
    res = pca_directions([torch.from_numpy(t) for t in traj])
    rebuilt = center + res.coords @ res.directions.numpy()
    np.testing.assert_allclose(rebuilt, traj, atol=1e-10)
    assert abs(res.explained_variance_ratio.sum() - 1.0) < 1e-10
    np.testing.assert_allclose(
        project_onto(torch.from_numpy(traj), torch.from_numpy(center), res.directions),
        res.coords,
        atol=1e-10,
    )


def test_pca_ignore_biasbn_and_direction_set():
    net = bn_net()
    space = ParamSpace(net, "weights")
    base = space.vector(net)
    g = torch.Generator().manual_seed(0)
    traj = torch.stack([base + 0.1 * i * torch.randn(space.numel, generator=g) for i in range(6)])
    res = pca_directions(traj, ignore="biasbn", space=space)
    one_d = space.mask("1d")
    assert res.directions.dtype == torch.float32
    assert torch.count_nonzero(res.directions[:, one_d]) == 0
    multi = ~one_d
    norms = res.directions[:, multi].double().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(2, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    ds = res.to_direction_set("weights", ignore="biasbn")
    assert ds.method == "pca" and len(ds.meta["explained_variance_ratio_"]) == 2
    with pytest.raises(ValueError, match="space="):
        pca_directions(traj, ignore="biasbn")
    with pytest.raises(ValueError, match="at least 2"):
        pca_directions(traj[:1])


def test_normalize_direction_weight_and_none():
    net = bn_net()
    space = ParamSpace(net, "states")
    c = space.vector(net).double()
    raw = torch.randn(space.numel, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    multi = ~space.mask("1d")
    w = normalize_direction(raw, c, space, "weight", ignore="biasbn")
    torch.testing.assert_close(w[multi], raw[multi] * c[multi], rtol=0, atol=0)
    assert torch.count_nonzero(w[~multi]) == 0
    n = normalize_direction(raw, c, space, None, ignore=None)
    assert torch.equal(n[multi], raw[multi]) and torch.equal(n[~multi], c[~multi])
    assert torch.equal(raw, torch.randn(space.numel, dtype=torch.float64,
                                        generator=torch.Generator().manual_seed(9)))  # not in place
