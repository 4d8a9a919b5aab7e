"""2D coordinates of checkpoints beside their PCA (:mod:`lossviz.pca`): t-SNE, the epoch-vs-branch layout,
least-squares coordinates in a surface's plane, and outlying checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lossviz.pca import _iterate, _RandomAccess, _to_numpy, pca_gram

__all__ = ["OUTLIER_MADS", "OUTLIER_MIN_FACTOR", "branch_lanes", "default_perplexity", "layout", "onto_plane",
           "outlying", "tsne"]

OUTLIER_MADS = 8.0
"""A checkpoint whose log weight norm is more than this many (scaled) MADs from the median is an outlier."""
OUTLIER_MIN_FACTOR = 10.0
"""... and only when its norm is also at least this factor away from the median norm (ordinary
training changes the norm by less; a diverged run by many orders of magnitude)."""


# ------------------------------------------------------------------------------------ t-SNE
def default_perplexity(n: int) -> float:
    """``max(1, min(30, (n − 1) / 3))``: scikit-learn's default 30, reduced for few points."""
    return float(max(1.0, min(30.0, (n - 1) / 3.0)))


def tsne(
    vectors: Any,
    perplexity: float | None = None,
    seed: int = 0,
    *,
    max_pca_dims: int = 50,
    max_iter: int = 1000,
) -> np.ndarray:
    """2-D t-SNE coordinates (n, 2) of n vectors or of their PCA coordinates.

    The vectors (any ``source`` that :func:`pca_gram` accepts) are first reduced by exact PCA to
    ``min(max_pca_dims, n − 1, D)`` dimensions, then embedded by ``sklearn.manifold.TSNE``
    (``init="pca"``, ``random_state=seed``: the same seed gives the same result) with the
    perplexity ``max(1, min(30, (n − 1)/3))`` unless given (it must be below n).

    Fallbacks for too few points for t-SNE to mean anything: n = 1 → ``[[0, 0]]``; n = 2 or 3 →
    the PCA coordinates (two components, the second zero when n = 2); all vectors identical → zeros.
    """
    from sklearn.manifold import TSNE

    pre = _RandomAccess(vectors) if not callable(vectors) else None
    if pre is not None and pre.n == 1:
        return np.zeros((1, 2))
    if pre is not None and pre.n == 0:
        raise ValueError("t-SNE of no vectors: select at least one checkpoint")
    n_probe = pre.n if pre is not None else sum(1 for _ in _iterate(vectors))
    if n_probe == 1:
        return np.zeros((1, 2))
    d = pre.d if pre is not None else None
    dims = min(max_pca_dims, n_probe - 1) if d is None else min(max_pca_dims, n_probe - 1, d)
    pca = pca_gram(vectors, n_components=max(1, dims), sign="coords", tol=1e-4)  # ample for t-SNE
    coords = pca.coords
    n = coords.shape[0]
    if not np.any(pca.singular_values > 0):
        return np.zeros((n, 2))
    if n <= 3:
        out = np.zeros((n, 2))
        out[:, : min(2, coords.shape[1])] = coords[:, :2]
        return out
    p = default_perplexity(n) if perplexity is None else float(perplexity)
    if not 0 < p < n:
        raise ValueError(f"perplexity={p} must be positive and below the number of points ({n})")
    emb = TSNE(
        n_components=2,
        perplexity=p,
        init="pca",
        random_state=seed,
        max_iter=max_iter,
        learning_rate="auto",
    ).fit_transform(coords)
    return np.asarray(emb, dtype=np.float64)


# ------------------------------------------------------------------------------------ layout
def _field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        if name not in item:
            raise KeyError(f"checkpoint {item!r} has no {name!r}")
        return item[name]
    if not hasattr(item, name):
        raise TypeError(
            f"{type(item).__name__} has no attribute {name!r}: give Checkpoint objects or dicts with "
            "'id', 'parent', 'branch' and 'epoch', or a pair (epochs, branches)"
        )
    return getattr(item, name)


def branch_lanes(branch_parents: Mapping[int, int | None]) -> dict[int, int]:
    """Lane (0, 1, ...) of every branch: a depth-first walk of the branch tree, roots and
    siblings in creation (id) order, so that each branch sits right below its parent's lane and
    before later siblings. ``branch_parents`` maps branch id → parent branch id (None for roots);
    a parent that is not in the mapping counts as no parent.
    """
    children: dict[int | None, list[int]] = {}
    for b, p in branch_parents.items():
        p = p if p in branch_parents and p != b else None
        children.setdefault(p, []).append(b)
    lanes: dict[int, int] = {}
    stack = sorted(children.get(None, []), reverse=True)
    while stack:
        b = stack.pop()
        if b in lanes:
            continue
        lanes[b] = len(lanes)
        stack.extend(sorted(children.get(b, []), reverse=True))
    for b in sorted(branch_parents):  # cycles (malformed input): append in id order
        if b not in lanes:
            lanes[b] = len(lanes)
    return lanes


def layout(
    checkpoints: Any,
    branch_parents: Mapping[int, int | None] | None = None,
) -> np.ndarray:
    """Epoch-vs-branch coordinates (n, 2): ``x`` = epoch, ``y`` = the lane of the checkpoint's branch.

    ``checkpoints`` is a sequence of checkpoints (objects or dicts with ``id``, ``parent``,
    ``branch``, ``epoch``) or a pair ``(epochs, branches)`` of equal-length arrays. Lanes come
    from :func:`branch_lanes`: a branch's parent is the branch of the parent of its earliest
    checkpoint (when that checkpoint is in the selection), or ``branch_parents[b]`` when given.
    """
    if isinstance(checkpoints, tuple) and len(checkpoints) == 2 and _is_numeric(checkpoints[0]):
        epochs = np.asarray(checkpoints[0], dtype=np.float64).reshape(-1)
        branches = np.asarray(checkpoints[1]).reshape(-1)
        if epochs.shape != branches.shape:
            raise ValueError(
                f"epochs ({epochs.shape[0]}) and branches ({branches.shape[0]}) differ in length"
            )
        parents: dict[int, int | None] = {int(b): None for b in branches}
        if branch_parents:
            parents.update({int(b): branch_parents.get(int(b)) for b in parents})
    else:
        items = list(checkpoints)
        epochs = np.array([float(_field(c, "epoch")) for c in items], dtype=np.float64)
        branches = np.array([int(_field(c, "branch")) for c in items], dtype=np.int64)
        branch_of = {int(_field(c, "id")): int(_field(c, "branch")) for c in items}
        first: dict[int, Any] = {}
        for c in items:
            b = int(_field(c, "branch"))
            key = (float(_field(c, "epoch")), int(_field(c, "id")))
            if b not in first or key < first[b][0]:
                first[b] = (key, c)
        parents = {}
        for b, (_, c) in first.items():
            p = _field(c, "parent")
            pb = branch_of.get(int(p)) if p is not None else None
            if (pb is None or pb == b) and branch_parents:
                pb = branch_parents.get(b)
            parents[b] = pb if pb != b else None
    lanes = branch_lanes(parents)
    out = np.empty((epochs.shape[0], 2), dtype=np.float64)
    out[:, 0] = epochs
    out[:, 1] = [lanes[int(b)] for b in branches]
    return out


def _is_numeric(x: Any) -> bool:
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError):  # not array-like, or ragged
        return False
    return arr.dtype.kind in "biuf"


# ------------------------------------------------------------------------------------ plane
def onto_plane(vectors: Any, center: Any, d1: Any, d2: Any | None = None) -> np.ndarray:
    """Least-squares coordinates ``(a_i, b_i)`` minimizing ``‖a d1 + b d2 − (v_i − center)‖``.

    The directions need not be orthogonal or normalized (a surface's plane); the solution uses the
    QR factorization of ``[d1 d2]`` (D×2) in float64. ``vectors`` is (n, D), a single (D,) vector
    or a list of vectors; returns (n, 2), or (n, 1) when ``d2`` is None (a 1D surface).
    """
    c = _to_numpy(center).astype(np.float64, copy=False).reshape(-1)
    dirs = [d1] if d2 is None else [d1, d2]
    a = np.stack([_to_numpy(d).astype(np.float64, copy=False).reshape(-1) for d in dirs], axis=1)
    if a.shape[0] != c.shape[0]:
        raise ValueError(
            f"the directions have {a.shape[0]} entries but the center has {c.shape[0]}; "
            "they must live in the same parameter space"
        )
    q, r = np.linalg.qr(a)
    diag = np.abs(np.diag(r))
    scale = np.linalg.norm(a, axis=0).max()
    if scale == 0 or diag.min() <= 1e-12 * scale:
        raise ValueError(
            "the plane's directions are zero or parallel (rank < 2); give two independent directions"
        )
    if isinstance(vectors, (list, tuple)):
        rows = [_to_numpy(v).reshape(-1) for v in vectors]
    else:
        arr = _to_numpy(vectors)
        rows = [arr.reshape(-1)] if arr.ndim == 1 else list(arr)
    out = np.empty((len(rows), a.shape[1]), dtype=np.float64)
    for i, v in enumerate(rows):
        if v.shape[0] != c.shape[0]:
            raise ValueError(f"vector {i} has {v.shape[0]} entries, the center {c.shape[0]}")
        out[i] = np.linalg.solve(r, q.T @ (v.astype(np.float64) - c))
    return out


def outlying(norms: Iterable[float], *, mads: float = OUTLIER_MADS,
             min_factor: float = OUTLIER_MIN_FACTOR) -> np.ndarray:
    """Which weight norms are outliers (a boolean array): a norm that is not finite (or not positive),
    or whose ``ℓ = ln ‖θ‖`` is far from the others' median ``m``:
    ``|ℓ − m| > max(mads · 1.4826 · MAD, ln min_factor)`` with ``MAD = median |ℓ − m|`` over the
    finite norms (1.4826·MAD estimates a standard deviation robustly, whatever the outliers are)."""
    n = np.asarray(list(norms), dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(n)
    finite = np.isfinite(logs)
    out = ~finite
    if finite.sum() >= 2:
        med = float(np.median(logs[finite]))
        mad = float(np.median(np.abs(logs[finite] - med)))
        limit = max(mads * 1.4826 * mad, float(np.log(min_factor)))
        out |= finite & (np.abs(np.where(finite, logs, med) - med) > limit)
    return out
