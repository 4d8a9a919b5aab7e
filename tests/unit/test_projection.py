"""Projections: PCA from the Gram matrix against scikit-learn, streaming, t-SNE, layout, planes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from lossviz.projection import branch_lanes, layout, onto_plane, pca_gram, tsne


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


# ------------------------------------------------------------------------------------ t-SNE
def test_tsne_shape_and_determinism() -> None:
    rng = np.random.default_rng(5)
    # two well separated clusters of 15 points in 60 dims
    x = np.concatenate([rng.standard_normal((15, 60)), 20 + rng.standard_normal((15, 60))])
    e1 = tsne(x, seed=3)
    e2 = tsne(torch.tensor(x), seed=3)
    assert e1.shape == (30, 2) and np.all(np.isfinite(e1))
    np.testing.assert_array_equal(e1, e2)
    # the clusters stay apart: every point is nearer its own cluster's centroid
    c0, c1 = e1[:15].mean(0), e1[15:].mean(0)
    d0 = np.linalg.norm(e1 - c0, axis=1)
    d1 = np.linalg.norm(e1 - c1, axis=1)
    assert np.all(d0[:15] < d1[:15]) and np.all(d1[15:] < d0[15:])


def test_tsne_few_points() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 20))
    assert np.array_equal(tsne(x[:1]), np.zeros((1, 2)))
    two = tsne(x[:2])
    assert two.shape == (2, 2)
    # the PCA fallback keeps the distance between the two points
    assert np.linalg.norm(two[0] - two[1]) == pytest.approx(np.linalg.norm(x[0] - x[1]))
    three = tsne(x)
    np.testing.assert_allclose(three, pca_gram(x, 2, sign="coords").coords)
    assert np.array_equal(tsne(np.ones((6, 4))), np.zeros((6, 2)))
    four = tsne(rng.standard_normal((4, 5)), seed=1)  # smallest real t-SNE: perplexity 1
    assert four.shape == (4, 2) and np.all(np.isfinite(four))


# ------------------------------------------------------------------------------------ layout
def test_layout_of_checkpoints_tree() -> None:
    # branch 0: ids 0..3 (epochs 0..3); branch 1 forks from id 1; branch 2 from id 2;
    # branch 3 forks from branch 1's id 5. Depth-first lanes: 0, 1, 3, 2 -> 0:0, 1:1, 3:2, 2:3
    cks = [dict(id=i, parent=i - 1 if i else None, branch=0, epoch=float(i)) for i in range(4)]
    cks += [dict(id=4, parent=1, branch=1, epoch=2.0), dict(id=5, parent=4, branch=1, epoch=3.0)]
    cks += [dict(id=6, parent=2, branch=2, epoch=3.0)]
    cks += [dict(id=7, parent=5, branch=3, epoch=4.0)]
    xy = layout(cks)
    np.testing.assert_array_equal(xy[:, 0], [c["epoch"] for c in cks])
    np.testing.assert_array_equal(xy[:, 1], [0, 0, 0, 0, 1, 1, 3, 2])
    assert branch_lanes({0: None, 1: 0, 2: 0, 3: 1}) == {0: 0, 1: 1, 3: 2, 2: 3}


def test_layout_of_arrays_and_selection() -> None:
    xy = layout(([0.0, 1.0, 2.0, 1.5], [7, 7, 9, 4]))
    np.testing.assert_array_equal(xy, [[0, 1], [1, 1], [2, 2], [1.5, 0]])
    # a selection without the parent checkpoint uses branch_parents
    cks = [dict(id=10, parent=3, branch=2, epoch=4.0), dict(id=11, parent=None, branch=0, epoch=0.0),
           dict(id=12, parent=None, branch=1, epoch=1.0)]
    xy = layout(cks, branch_parents={2: 0, 1: 0, 0: None})
    np.testing.assert_array_equal(xy[:, 1], [2, 0, 1])
    with pytest.raises(TypeError, match="epoch"):
        layout([object()])


# ------------------------------------------------------------------------------------ plane
def test_onto_plane_recovers_coefficients() -> None:
    rng = np.random.default_rng(7)
    d = 300
    center = rng.standard_normal(d)
    d1 = rng.standard_normal(d)
    d2 = 0.8 * d1 + 0.3 * rng.standard_normal(d)  # far from orthogonal
    coef = rng.standard_normal((10, 2))
    v = center + coef @ np.stack([d1, d2])
    np.testing.assert_allclose(onto_plane(v, center, d1, d2), coef, atol=1e-9)
    # torch inputs, a single vector, and the least-squares part: noise orthogonal to the plane
    q, _ = np.linalg.qr(np.stack([d1, d2], 1))
    noise = rng.standard_normal(d)
    noise -= q @ (q.T @ noise)
    got = onto_plane(torch.tensor(v[3] + noise), torch.tensor(center), torch.tensor(d1), torch.tensor(d2))
    np.testing.assert_allclose(got, coef[3:4], atol=1e-9)
    np.testing.assert_allclose(onto_plane(v, center, d1)[:, 0], (v - center) @ d1 / (d1 @ d1))
    with pytest.raises(ValueError, match="parallel"):
        onto_plane(v, center, d1, 2 * d1)
    with pytest.raises(ValueError, match="same parameter space"):
        onto_plane(v, center[:5], d1, d2)
