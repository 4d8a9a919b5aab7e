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
    for d, w in zip(direction, weights, strict=True):
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.fill_(0)
            else:
                d.copy_(w)
        elif norm == "filter":
            for df, wf in zip(d, w, strict=True):
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
    return dict(zip(names, direction, strict=True))


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
    by_name = dict(zip(names, draws, strict=True))
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
            for df, wf in zip(named_d[e.name], named_w[e.name].detach(), strict=True):
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


# ------------------------------------------------------------------ PCA through pca_gram
def sklearn_pca_directions(traj: np.ndarray, center: np.ndarray, k: int):
    """The former path: sklearn's exact (full) SVD PCA of the rows ``w_i - center``."""
    from sklearn.decomposition import PCA

    rows = traj - center
    pca = PCA(n_components=k, svd_solver="full").fit(rows)
    return pca, rows


def test_pca_directions_equal_the_sklearn_full_svd_path():
    rng = np.random.default_rng(3)
    traj = rng.normal(size=(15, 300)).cumsum(axis=0)
    res = pca_directions(torch.from_numpy(traj), n_components=2)
    pca, rows = sklearn_pca_directions(traj, traj[-1], 2)
    ours, theirs = res.directions.numpy(), np.asarray(pca.components_)
    signs = np.sign(np.sum(ours * theirs, axis=1))  # the sign of a principal axis is a convention
    np.testing.assert_allclose(ours, theirs * signs[:, None], atol=1e-8)
    np.testing.assert_allclose(res.singular_values, pca.singular_values_, rtol=1e-8)
    np.testing.assert_allclose(res.explained_variance, pca.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(res.explained_variance_ratio, pca.explained_variance_ratio_, rtol=1e-8)
    coords = np.linalg.lstsq(theirs.T, rows.T, rcond=None)[0].T
    np.testing.assert_allclose(res.coords, coords * signs, atol=1e-8)


# ------------------------------------------------------------------ DirectionSpec
class FakeProject:
    """A DirectionResolver over checkpoints 1..n: models of one architecture with seeds 1..n."""

    loss = "cross_entropy"

    def __init__(self, n: int = 4):
        self.models = {i: bn_net(i) for i in range(1, n + 1)}
        torch.manual_seed(0)
        self.data = (torch.randn(8, 2, 6, 6), torch.randint(0, 2, (8,)))

    def vector(self, id, kind):
        m = self.models[int(id)]
        return ParamSpace(m, kind).vector(m).detach().cpu()

    def model(self, id):
        return self.models[int(id)]

    def trajectory(self, center):
        return [i for i in self.models if i <= center]

    def train_data(self):
        return self.data


V = torch.arange(6, dtype=torch.float32)
W = torch.linspace(-1, 1, 6, dtype=torch.float64)
SHA_V = "105d7861ab721bafedc65a348dca30d20edcd9b343b4d614fb458867c843dc64"
# what Session._direction_desc gave for each form before DirectionSpec (stored keys must not change)
GIVEN_KEYS = [
    (V, {"vector": SHA_V}),
    ((V, W), [{"vector": SHA_V}, {"vector": "9d1e74a7c32d8be2b654807e85fae47dce544ccc73f12cb3785242e5c8321168"}]),
    (torch.stack([V, V * 2]),
     [{"vector": SHA_V}, {"vector": "8bf238d1a881585e0cc2a19cb90c9e7a316c241e6831d692b75fc9daf3d02efe"}]),
    (np.arange(6.0), {"vector": "2b805cef63df5eddd39ab161d337251f3df1b73e0f0474e0a38759dd92a52125"}),
    (3, {"target": 3}),
    ([3, np.int64(5)], [{"target": 3}, {"target": 5}]),
    ((4, V), [{"target": 4}, {"vector": SHA_V}]),
    (DirectionSet([V, V + 1]), {"set": [SHA_V, "914318dd9cf63f929387370622ace224b5891eaa4f7f82e1c14a358723e425fd"],
                               "kind": "weights"}),
]


@pytest.mark.parametrize("given, desc", GIVEN_KEYS, ids=[f"given{i}" for i in range(len(GIVEN_KEYS))])
def test_spec_key_of_given_directions_is_the_stored_description(given, desc):
    from lossviz.direction_spec import DirectionSpec

    spec = DirectionSpec.parse(given, 2, kind="weights", seed=7)
    assert spec.key() == {"directions": desc, "normalization": None, "ignore": None, "seed": None, "kind": "weights"}


def test_spec_keys_of_named_directions_keep_only_the_rules_that_matter():
    from lossviz.direction_spec import DirectionSpec

    fake = FakeProject()
    rnd = DirectionSpec.parse("random", 2, normalization="layer", ignore="biasbn", seed=3, kind="states")
    assert rnd.key() == {"directions": "random", "normalization": "layer", "ignore": "biasbn", "seed": 3,
                         "kind": "states"}
    hes = DirectionSpec.parse("hessian", 2, normalization="filter", ignore="biasbn", seed=np.int64(2))
    assert hes.key() == {"directions": "hessian", "normalization": None, "ignore": None, "seed": 2,
                         "kind": "weights"}
    pca = DirectionSpec.parse("pca", 2, ignore=None, checkpoints=[1, 3, 2])
    assert pca.key() == {"directions": {"pca": [1, 3, 2], "ignore": None}, "normalization": None,
                         "ignore": None, "seed": None, "kind": "weights"}
    lineage = DirectionSpec.parse("pca", 2, center=3)
    assert lineage.key(fake)["directions"] == {"pca": [1, 2, 3], "ignore": "biasbn"}
    with pytest.raises(ValueError, match="need the center and a session"):
        lineage.key()
    with pytest.raises(ValueError, match="PCA directions need at least 2 checkpoints, got 1"):
        DirectionSpec.parse("pca", 2, checkpoints=[1])
    with pytest.raises(ValueError, match="PCA directions need at least 2 checkpoints, got 1"):
        DirectionSpec.parse("pca", 2, center=1).key(fake)
    with pytest.raises(ValueError, match=r"'sideways'.*use 'random'"):
        DirectionSpec.parse("sideways", 2)
    with pytest.raises(TypeError, match="cannot use dict"):
        DirectionSpec.parse({"a": V}, 1).key()


def test_spec_builds_the_vectors_the_direction_functions_give():
    from lossviz.direction_spec import DirectionSpec

    fake = FakeProject()
    model = fake.model(4)
    space = ParamSpace(model, "weights")
    center = space.vector(model).detach().cpu()
    ds, meta = DirectionSpec.parse("random", 2, seed=5, center=4).build(fake)
    ref = random_directions(space, center, 2, seed=5)
    assert meta == {} and ds.method == "random" and ds.seed == 5
    torch.testing.assert_close(ds.stacked(), ref.stacked(), rtol=0, atol=0)
    ds64, _ = DirectionSpec.parse("random", 1, seed=5, center=4).build(fake, dtype=torch.float64)
    ref64 = random_directions(space, space.vector(model, dtype=torch.float64), 1, seed=5)
    torch.testing.assert_close(ds64.stacked(), ref64.stacked(), rtol=0, atol=0)

    ds, meta = DirectionSpec.parse("pca", 2, center=4).build(fake)
    traj = torch.stack([fake.vector(i, "weights") for i in (1, 2, 3, 4)])
    ref_pca = pca_directions(traj, center=center, n_components=2, ignore="biasbn", space=space)
    torch.testing.assert_close(ds.stacked(), ref_pca.directions, rtol=0, atol=0)
    assert meta["trajectory"]["ids"] == [1, 2, 3, 4]
    np.testing.assert_allclose(meta["trajectory"]["coords"], ref_pca.coords)
    assert ds.method == "pca" and ds.ignore == "biasbn"

    ds, meta = DirectionSpec.parse((2, 3), 2, center=4).build(fake)
    assert ds.method == "target" and meta == {"targets": [2, 3]}
    for vec, t in zip(ds.vectors, (2, 3), strict=True):
        torch.testing.assert_close(vec, target_direction(space, center, fake.vector(t, "weights")))
    vec = torch.randn(space.numel, dtype=torch.float64)
    ds, meta = DirectionSpec.parse((2, vec.numpy()), 2, center=4).build(fake)
    assert ds.method == "custom" and meta == {"targets": [2, None]}
    torch.testing.assert_close(ds.vectors[1], vec.float())

    given = random_directions(space, center, 2, seed=9)
    assert DirectionSpec.parse(given, 2, center=4).build(fake) == (given, {})
    with pytest.raises(ValueError, match="1 direction"):
        DirectionSpec.parse(2, 2, center=4).build(fake)
    with pytest.raises(ValueError, match="another architecture"):
        DirectionSpec.parse(DirectionSet([torch.zeros(3)]), 1, center=4).build(fake)


def test_spec_hessian_directions_are_the_top_eigenvectors():
    from lossviz import hessian as H
    from lossviz.direction_spec import DirectionSpec

    fake = FakeProject(2)
    ds, meta = DirectionSpec.parse("hessian", 1, seed=0, center=2).build(fake)
    ref = H.eigenvector_directions(fake.model(2), fake.data, 1, fake.loss, seed=0)
    assert ds.method == "hessian" and meta == {}
    torch.testing.assert_close(ds.vectors[0], ref[0].detach().cpu().float())
    with pytest.raises(ValueError, match="weights space"):
        DirectionSpec.parse("hessian", 1, kind="states", center=2).build(fake)


def test_spec_vectors_in_a_space_alone():
    from lossviz.direction_spec import DirectionSpec

    net = bn_net()
    space = ParamSpace(net, "weights")
    center = space.vector(net)
    spec = DirectionSpec.parse("random", 2, normalization=("filter", "layer"), ignore=("biasbn", None), seed=1)
    ds = spec.vectors(space, center)
    g = torch.Generator().manual_seed(1)
    x = random_direction(space, center, generator=g, normalization="filter", ignore="biasbn")
    y = random_direction(space, center, generator=g, normalization="layer", ignore=None)
    torch.testing.assert_close(ds.stacked(), torch.stack([x, y]), rtol=0, atol=0)
    sd = {k: torch.ones_like(v) for k, v in net.named_parameters()}
    one = DirectionSpec.parse(sd, 1).vectors(space, center)
    torch.testing.assert_close(one.vectors[0], torch.ones(space.numel))
    pair = DirectionSpec.parse([sd, center.numpy()], 2).vectors(space, center)
    assert pair.method == "custom" and pair.ndim == 2
    with pytest.raises(ValueError, match="need a project"):
        DirectionSpec.parse("pca", 2, checkpoints=[1, 2]).vectors(space, center)
    with pytest.raises(ValueError, match="need a project"):
        DirectionSpec.parse(3, 1).vectors(space, center)
    with pytest.raises(TypeError, match="needs a project"):
        DirectionSpec.parse((3, center), 2).vectors(space, center)
    with pytest.raises(ValueError, match="one per direction"):
        DirectionSpec.parse("random", 2, normalization=("filter",))


# ------------------------------------------------------------------ degenerate directions (issue 13)
def test_check_direction_refuses_zero_and_non_finite_vectors():
    from lossviz.directions import check_direction

    v = torch.tensor([0.0, 1.0, -2.0])
    assert check_direction(v, "direction x") is v
    with pytest.raises(ValueError, match=r"direction y is zero \(all 3 entries are 0\)"):
        check_direction(torch.zeros(3), "direction y")
    with pytest.raises(ValueError, match=r"direction x has 2 NaN or infinite entries \(of 3\)"):
        check_direction(torch.tensor([float("nan"), 1.0, float("inf")]), "direction x")
    with pytest.raises(ValueError, match=r"direction x has 1 NaN or infinite entries \(of 3\)"):
        check_direction(torch.tensor([float("-inf"), 1.0, 2.0]), "direction x")
    huge = torch.tensor([3e38, 3e38, 1.0])  # finite entries whose float32 sum overflows: accepted
    assert not torch.isfinite(huge.sum()) and check_direction(huge, "direction x") is huge


def test_degenerate_directions_are_refused_at_parse_or_once_built():
    from lossviz.direction_spec import DirectionSpec
    from lossviz.store import Checkpoint

    fake = FakeProject(3)
    numel = fake.vector(1, "weights").numel()
    with pytest.raises(ValueError, match="direction x points to checkpoint 2, the surface's centre itself"):
        DirectionSpec.parse(2, 1, center=2)
    with pytest.raises(ValueError, match="direction y points to checkpoint 2"):
        DirectionSpec.parse((1, 2), 2, center=2)
    with pytest.raises(ValueError, match="direction x is zero"):
        DirectionSpec.parse(torch.zeros(numel), 1, center=2)
    with pytest.raises(ValueError, match="direction y has 1 NaN"):
        DirectionSpec.parse(torch.stack([torch.ones(numel), torch.full((numel,), 1.0).index_fill(0, torch.tensor([0]),
                                                                              float("nan"))]), 2, center=2)
    fake.models[3] = fake.models[2]  # a checkpoint with the centre's weights: its direction is zero
    with pytest.raises(ValueError, match=r"direction x \(towards checkpoint 3, which has the centre's weights\) is "
                                         "zero"):
        DirectionSpec.parse(3, 1, center=2).build(fake)
    with pytest.raises(ValueError, match="direction y is zero"):  # a pair, checked once built
        DirectionSpec.parse((torch.ones(numel), torch.zeros(numel)), 2, center=2).build(fake)
    # a Checkpoint record of another project than the centre's is refused
    mine, theirs = (Checkpoint(id=1, parent=None, branch=1, kind="init", epoch=0, step=0, project=p) for p in "ab")
    center = Checkpoint(id=2, parent=1, branch=1, kind="train", epoch=1, step=1, project="a")
    DirectionSpec.parse(mine, 1, center=center)
    for given, pca in ((theirs, None), ("pca", [mine, theirs])):
        with pytest.raises(ValueError, match=r"checkpoint 1 belongs to another project \(identity b\)"):
            DirectionSpec.parse(given, 2 if pca else 1, center=center, checkpoints=pca)
