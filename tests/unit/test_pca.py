"""PCA of checkpoint vectors (lossviz.pca): the Gram path against scikit-learn, streaming sources, the
randomized subspace iteration against the exact result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from lossviz.pca import AUTO_GRAM_MAX_N, pca_gram
from lossviz.projection import onto_plane
from lossviz.zoo import get_model, make_spirals


def _data(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Random vectors with a decaying spectrum (distinct variances) and a large common offset."""
    rng = np.random.default_rng(seed)
    return 5.0 + rng.standard_normal((n, d)) * np.geomspace(3.0, 0.05, d)


@pytest.mark.parametrize("n,d", [(25, 200), (80, 9)])
def test_pca_gram_equals_sklearn(n: int, d: int) -> None:
    x = _data(n, d)
    x_before = x.copy()
    k = 3
    ref = PCA(n_components=k, svd_solver="full").fit(x)
    # small blocks so that several column blocks are used
    r = pca_gram(x, k, return_components=True, block_bytes=n * 8 * 7)
    assert np.array_equal(x, x_before), "the input must not be modified"
    # sign="sklearn": directly comparable, no alignment needed
    np.testing.assert_allclose(r.coords, ref.transform(x), atol=1e-9)
    np.testing.assert_allclose(r.components, ref.components_, atol=1e-10)
    np.testing.assert_allclose(r.explained_variance, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(r.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10)
    np.testing.assert_allclose(r.singular_values, ref.singular_values_, rtol=1e-10)
    np.testing.assert_allclose(r.mean, ref.mean_, rtol=1e-12)
    assert r.coords.shape == (n, k) and r.n_samples == n and r.n_features == d


def test_pca_gram_coords_sign_convention_sign_aligned() -> None:
    x = _data(30, 50, seed=1)
    ref = PCA(n_components=2, svd_solver="full").fit(x)
    r = pca_gram(x, 2, sign="coords")
    assert r.components is None and r.passes == 1
    sk = ref.transform(x)
    signs = np.sign(np.sum(sk * r.coords, axis=0))
    np.testing.assert_allclose(r.coords, sk * signs, atol=1e-9)
    # and the convention holds: each column's largest |coordinate| is positive
    assert np.all(r.coords[np.abs(r.coords).argmax(axis=0), [0, 1]] > 0)


def test_pca_gram_float32_input_matches_sklearn_float64() -> None:
    x64 = _data(20, 300, seed=2)
    x32 = torch.tensor(x64, dtype=torch.float32)
    ref = PCA(n_components=2, svd_solver="full").fit(x32.double().numpy())
    r = pca_gram(x32, 2)  # a torch tensor, float32 data, float64 arithmetic
    np.testing.assert_allclose(r.coords, ref.transform(x32.double().numpy()), atol=1e-8)
    np.testing.assert_allclose(r.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10)


@pytest.mark.parametrize("n,d", [(12, 40), (30, 5)])
def test_streaming_equals_array(n: int, d: int, tmp_path) -> None:
    x = _data(n, d, seed=3)
    full = pca_gram(x, 2, return_components=True)
    # a callable returning a fresh generator, with blocks of 5 rows: several Gram passes
    calls = []

    def vectors():
        calls.append(1)
        return (torch.tensor(row) for row in x)

    s = pca_gram(vectors, 2, return_components=True, block_bytes=5 * d * 8)
    n_blocks = -(-n // 5)
    assert s.passes == 1 + n_blocks + 1 == len(calls)
    # .npy files on disk, read by slices
    paths = []
    for i, row in enumerate(x):
        p = tmp_path / f"v{i}.npy"
        np.save(p, row)
        paths.append(p)
    f = pca_gram(paths, 2, return_components=True, block_bytes=n * 8 * 3)
    for other in (s, f):
        np.testing.assert_allclose(other.coords, full.coords, atol=1e-10)
        np.testing.assert_allclose(other.components, full.components, atol=1e-10)
        np.testing.assert_allclose(other.explained_variance_ratio, full.explained_variance_ratio, rtol=1e-12)
        np.testing.assert_allclose(other.mean, full.mean, rtol=1e-12)


def test_plane_trajectory_round_trip() -> None:
    rng = np.random.default_rng(4)
    d, n = 1000, 40
    center = rng.standard_normal(d)
    u, w = rng.standard_normal(d), rng.standard_normal(d)
    t = np.linspace(0, 3, n)
    a, b = np.cos(t) * (1 + t), np.sin(2 * t)
    traj = center + a[:, None] * u + b[:, None] * w  # lies in a 2D affine plane
    r = pca_gram(traj, 2, return_components=True)
    assert r.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-12)
    back = r.mean + r.coords @ r.components
    assert np.abs(back - traj).max() < 1e-5
    # the same coordinates by least squares onto the PCA plane
    np.testing.assert_allclose(onto_plane(traj, r.mean, *r.components), r.coords, atol=1e-8)
    # the components are orthonormal
    np.testing.assert_allclose(r.components @ r.components.T, np.eye(2), atol=1e-12)


def test_rank_deficient_component_is_zero() -> None:
    x = np.repeat(_data(1, 10), 4, axis=0)
    x[:, 0] += np.arange(4.0)  # one direction of variance only
    r = pca_gram(x, 2, return_components=True)
    np.testing.assert_allclose(r.coords[:, 0], np.arange(4.0) - 1.5, atol=1e-12)
    assert np.all(r.coords[:, 1] == 0) and np.all(r.components[1] == 0)
    assert r.explained_variance_ratio[0] == pytest.approx(1.0)


def test_pca_gram_bad_input() -> None:
    x = _data(5, 4)
    with pytest.raises(ValueError, match="n_components"):
        pca_gram(x, 5)
    with pytest.raises(ValueError, match="at least 2"):
        pca_gram(x[:1], 1)
    with pytest.raises(TypeError, match="callable returning a fresh iterator"):
        pca_gram(iter(list(x)), 2)
    with pytest.raises(ValueError, match="different lengths"):
        pca_gram([x[0], x[1, :3]], 1)
    with pytest.raises(ValueError, match="sign"):
        pca_gram(x, 2, sign="max")


# ------------------------------------------------------------------------------------ randomized PCA
def _low_rank_plus_noise(n: int, d: int, seed: int = 8) -> np.ndarray:
    """A trajectory-like cloud: a smooth rank-4 path with distinct scales, isotropic noise, an offset."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)[:, None]
    basis = rng.standard_normal((4, d))
    path = np.hstack([3 * t, np.sin(3 * t), 0.3 * t**2, 0.1 * np.cos(7 * t)]) @ basis
    return 2.0 + path + 0.02 * rng.standard_normal((n, d))


def _random_walk(n: int, d: int, seed: int = 9) -> np.ndarray:
    """A random walk (eigenvalues decay like 1/j², the slow case for the iteration), float32."""
    rng = np.random.default_rng(seed)
    return (0.1 + np.cumsum(rng.standard_normal((n, d)), axis=0) * 1e-3).astype(np.float32)


def _mlp_trajectory(steps: int) -> np.ndarray:
    """Flat parameters of the zoo MLP after every SGD step on two spirals (a real trajectory)."""
    torch.manual_seed(0)
    x, y = make_spirals(256, seed=0)
    model = get_model("mlp", in_features=2, hidden=[32, 32], out_features=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rows = []
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        rows.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double().numpy())
    return np.stack(rows)


def _max_relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max over components of max|Δcoordinate| / max|coordinate| (no sign alignment: signs must agree)."""
    return float((np.abs(got - want).max(axis=0) / np.abs(want).max(axis=0)).max())


@pytest.mark.parametrize("case", ["low_rank", "walk", "mlp"])
def test_randomized_top2_coordinates_within_1e5_of_exact(case: str) -> None:
    x = {"low_rank": lambda: _low_rank_plus_noise(400, 1500), "walk": lambda: _random_walk(400, 2000),
         "mlp": lambda: _mlp_trajectory(400)}[case]()
    n = x.shape[0]
    assert n > AUTO_GRAM_MAX_N
    x64 = x.astype(np.float64)
    ref = PCA(n_components=2, svd_solver="full").fit(x64)
    exact = pca_gram(x, 2, method="gram", return_components=True)
    np.testing.assert_allclose(exact.coords, ref.transform(x64), atol=1e-9 * np.abs(exact.coords).max())
    r = pca_gram(x, 2, return_components=True)  # method="auto" takes the randomized path for n > 300
    assert r.method == "randomized" and exact.method == "gram"
    assert 2 <= r.passes < 30
    # the same sign convention (sklearn's), so no alignment: the top-2 coordinates within 1e-5
    assert _max_relative_error(r.coords, exact.coords) < 1e-5
    assert _max_relative_error(r.coords, ref.transform(x64)) < 1e-5
    np.testing.assert_allclose(r.components, ref.components_, atol=1e-5)
    np.testing.assert_allclose(r.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(r.explained_variance, ref.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(r.mean, ref.mean_, rtol=1e-12, atol=1e-12)
    # coords are exactly the projections onto the returned (orthonormal) components
    np.testing.assert_allclose(r.coords, (x64 - r.mean) @ r.components.T, atol=1e-9 * np.abs(r.coords).max())
    np.testing.assert_allclose(r.components @ r.components.T, np.eye(2), atol=1e-9)


def test_randomized_sources_and_passes(tmp_path) -> None:
    x = _random_walk(320, 500, seed=10)
    exact = pca_gram(x, 2, method="gram")
    paths = []
    for i, row in enumerate(x):
        paths.append(tmp_path / f"v{i}.npy")
        np.save(paths[-1], row)
    calls = []

    def vectors():
        calls.append(1)
        return (torch.from_numpy(row) for row in x)

    # small blocks: several column blocks, several row blocks, several in-cache slabs
    from_files = pca_gram(paths, 2, method="randomized", block_bytes=320 * 4 * 90)
    from_memmap_like = pca_gram(torch.from_numpy(x), 2)
    streamed = pca_gram(vectors, 2, block_bytes=7 * 500 * 8)
    assert streamed.method == from_files.method == from_memmap_like.method == "randomized"
    assert streamed.passes == len(calls)  # the mean's pass, then one per iteration
    for r in (from_files, from_memmap_like, streamed):
        assert _max_relative_error(r.coords, exact.coords) < 1e-5
        np.testing.assert_allclose(r.explained_variance_ratio, exact.explained_variance_ratio, rtol=1e-8)
    # float32 arithmetic throughout: still within 1e-5 here (float32 data)
    r32 = pca_gram(paths, 2, method="randomized", dtype=np.float32)
    assert _max_relative_error(r32.coords, exact.coords) < 1e-5
    # the same seed gives the same result
    again = pca_gram(paths, 2, method="randomized", block_bytes=320 * 4 * 90)
    np.testing.assert_array_equal(again.coords, from_files.coords)


def test_auto_method_rule() -> None:
    x = _low_rank_plus_noise(AUTO_GRAM_MAX_N, 50)
    assert pca_gram(x, 2).method == "gram"
    assert pca_gram(np.vstack([x, x[:1]]), 2).method == "randomized"
    # a callable whose Gram matrix would take more than 8 row-block passes goes randomized
    small = x[:40]
    assert pca_gram(lambda: iter(small), 2, block_bytes=4 * 50 * 8).method == "randomized"
    assert pca_gram(lambda: iter(small), 2, block_bytes=5 * 50 * 8).method == "gram"
    r = pca_gram(lambda: iter(small), 2, block_bytes=4 * 50 * 8, sign="coords")
    np.testing.assert_allclose(r.coords, pca_gram(small, 2, sign="coords").coords, atol=1e-6 * np.abs(r.coords).max())


def test_randomized_rank_deficient_and_exact_when_l_covers_n() -> None:
    x = np.repeat(_data(1, 10), 4, axis=0)
    x[:, 0] += np.arange(4.0)
    r = pca_gram(x, 2, method="randomized", return_components=True)
    assert r.passes == 1  # k + oversamples >= n: the first pass sees the whole space
    np.testing.assert_allclose(r.coords[:, 0], np.arange(4.0) - 1.5, atol=1e-12)
    assert np.all(r.coords[:, 1] == 0) and np.all(r.components[1] == 0)
    walk = _random_walk(400, 300).astype(np.float64)
    line = walk[:, :1] * np.ones((1, 30))  # rank 1 in 30 dimensions, n = 400
    r = pca_gram(line, 2, method="randomized", return_components=True)
    assert np.all(r.coords[:, 1] == 0) and r.explained_variance_ratio[0] == pytest.approx(1.0)


def test_randomized_warns_when_not_converged() -> None:
    x = _random_walk(400, 400, seed=11)
    with pytest.warns(RuntimeWarning, match="max_passes"):
        r = pca_gram(x, 2, method="randomized", oversamples=0, max_passes=2)
    assert r.passes == 2 and np.all(np.isfinite(r.coords))


def test_randomized_bad_arguments() -> None:
    x = _data(5, 4)
    with pytest.raises(ValueError, match="method"):
        pca_gram(x, 2, method="lanczos")
    with pytest.raises(ValueError, match="tol"):
        pca_gram(x, 2, tol=0)
    with pytest.raises(ValueError, match="max_passes"):
        pca_gram(x, 2, max_passes=0)
    with pytest.raises(ValueError, match="oversamples"):
        pca_gram(x, 2, oversamples=-1)
