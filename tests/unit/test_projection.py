"""Projections (lossviz.projection): t-SNE, the layout, coordinates in a plane, outlying checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossviz.pca import pca_gram
from lossviz.projection import branch_lanes, layout, onto_plane, tsne


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


def test_outlying_norms_by_a_plain_loop():
    """lossviz.projection.outlying against the rule written out: ln-norm farther from the median than
    max(k * 1.4826 * MAD, ln 10); non-finite and non-positive norms always."""
    import math
    import statistics

    from lossviz.projection import OUTLIER_MADS, OUTLIER_MIN_FACTOR, outlying

    rng = np.random.default_rng(3)
    norms = [*np.exp(rng.normal(2.0, 0.05, 40)), 1e17, float("inf"), float("nan"), 0.0, 55.0, 7.0]
    logs = [math.log(v) for v in norms if math.isfinite(v) and v > 0]
    med = statistics.median(logs)
    mad = statistics.median([abs(v - med) for v in logs])
    limit = max(OUTLIER_MADS * 1.4826 * mad, math.log(OUTLIER_MIN_FACTOR))
    want = [not (math.isfinite(v) and v > 0) or abs(math.log(v) - med) > limit for v in norms]
    got = outlying(norms).tolist()
    assert got == want
    assert got[-6:] == [True, True, True, True, False, False]  # 55 is 7x e^2: ordinary; 1e17 is not
    assert not any(got[:40])
    assert outlying([3.0, 3.0, 3.0]).tolist() == [False] * 3 and outlying([]).size == 0
