"""2D coordinates of checkpoints: exact streaming PCA, t-SNE, the epoch-vs-branch layout, and
least-squares coordinates in a surface's plane.

PCA from the Gram matrix
------------------------
For n checkpoint vectors ``x_i ∈ R^D`` with mean ``μ``, let ``X_c`` be the (n, D) matrix of rows
``x_i − μ`` and ``G = X_c X_cᵀ`` its n×n Gram matrix. With the eigendecomposition
``G = U Λ Uᵀ`` (eigenvalues descending) the thin SVD of ``X_c`` is ``U S Vᵀ`` with ``S = √Λ``, so

* coordinates (what ``sklearn.decomposition.PCA.transform`` returns): ``X_c V = U S``,
* explained variance: ``λ_i / (n − 1)``, ratio: ``λ_i / tr(G)``,
* components (rows of ``Vᵀ``): ``v_i = X_cᵀ u_i / s_i``.

Only ``G`` (n², float64) and a block of the data are ever in memory, so thousands of checkpoints of
millions of parameters can be projected exactly without stacking them.

Sign convention: with ``sign="sklearn"`` (default) every component is flipped so that its entry of
largest absolute value is positive — scikit-learn's ``svd_flip(U, Vt, u_based_decision=False)``,
used by its ``PCA`` since 1.5 — so results compare directly with scikit-learn's. Deciding it needs
the components, hence one more pass over the data. ``sign="coords"`` instead makes the coordinate of
largest absolute value positive for each component (no extra pass).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PCAResult", "branch_lanes", "default_perplexity", "layout", "onto_plane", "pca_gram", "tsne"]

DEFAULT_BLOCK_BYTES = 64 * 2**20


# ------------------------------------------------------------------------------------ PCA result
@dataclass
class PCAResult:
    """Exact PCA of n vectors (scikit-learn's ``PCA`` attribute names, without trailing ``_``).

    ``coords`` (n, k), ``explained_variance`` (k,), ``explained_variance_ratio`` (k,),
    ``singular_values`` (k,), ``mean`` (D,), ``components`` (k, D) or None when not requested,
    ``n_samples``, ``n_features``, ``passes`` (how many times the data were read).
    """

    coords: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    singular_values: np.ndarray
    mean: np.ndarray
    components: np.ndarray | None
    n_samples: int
    n_features: int
    passes: int

    @property
    def n_components(self) -> int:
        return int(self.coords.shape[1])


# ------------------------------------------------------------------------------------ sources
def _to_numpy(v: Any) -> np.ndarray:
    """A 1-D or 2-D array view of a numpy array or torch tensor (no copy when possible)."""
    if isinstance(v, np.ndarray):
        return v
    try:
        import torch

        if isinstance(v, torch.Tensor):
            return v.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return np.asarray(v)


class _NpyRow:
    """One 1-D ``.npy`` file read by slices with ``os.pread`` (no memory map, no pickle)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"checkpoint vector file {self.path!r} does not exist")
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            self.offset = f.tell()
        if dtype.hasobject:
            raise ValueError(f"{self.path!r} holds Python objects; only numeric .npy vectors are read")
        if len(shape) != 1:
            raise ValueError(
                f"{self.path!r} holds an array of shape {shape}; save one flat vector per file"
            )
        self.shape = shape
        self.dtype = dtype

    def read(self, fd: int, start: int, stop: int) -> np.ndarray:
        size = self.dtype.itemsize
        buf = os.pread(fd, (stop - start) * size, self.offset + start * size)
        return np.frombuffer(buf, dtype=self.dtype)


class _RandomAccess:
    """n vectors readable by column blocks: a 2-D array/tensor or a sequence of vectors/.npy paths."""

    def __init__(self, source: Any):
        if isinstance(source, (list, tuple)):
            rows: list[_NpyRow | np.ndarray] = []
            for i, item in enumerate(source):
                if isinstance(item, (str, os.PathLike)):
                    if Path(item).suffix != ".npy":
                        raise ValueError(
                            f"vector {i} is the path {os.fspath(item)!r}: only .npy files are read "
                            "directly; for other formats pass a callable returning an iterator of vectors"
                        )
                    rows.append(_NpyRow(item))
                else:
                    arr = _to_numpy(item)
                    if arr.ndim != 1:
                        raise ValueError(
                            f"vector {i} has shape {arr.shape}; give flat 1-D vectors (flatten them first)"
                        )
                    rows.append(arr)
            self.rows: list[Any] | None = rows
            self.matrix = None
            self.n = len(rows)
            dims = {int(r.shape[0]) for r in rows}
            if len(dims) > 1:
                raise ValueError(
                    f"the vectors have different lengths {sorted(dims)[:4]}; they must come from one model"
                )
            self.d = dims.pop() if dims else 0
        else:
            arr = _to_numpy(source)
            if arr.ndim != 2:
                raise ValueError(
                    f"expected an (n, D) array of n vectors, got shape {arr.shape}; pass a 2-D array, "
                    "a list of vectors or a callable returning an iterator of vectors"
                )
            self.rows = None
            self.matrix = arr
            self.n, self.d = (int(s) for s in arr.shape)

    def column_blocks(self, width: int, dtype) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(columns, block)`` with ``block`` the (n, width) float slab of every vector."""
        fds: dict[int, int] = {}
        try:
            if self.rows is not None:
                for i, r in enumerate(self.rows):
                    if isinstance(r, _NpyRow):
                        fds[i] = os.open(r.path, os.O_RDONLY)
            for start in range(0, self.d, width):
                stop = min(self.d, start + width)
                if self.matrix is not None:
                    block = np.array(self.matrix[:, start:stop], dtype=dtype)  # a copy: blocks are centered in place
                else:
                    assert self.rows is not None  # a source is a matrix or rows
                    block = np.empty((self.n, stop - start), dtype=dtype)
                    for i, r in enumerate(self.rows):
                        block[i] = r.read(fds[i], start, stop) if i in fds else r[start:stop]
                yield slice(start, stop), block
        finally:
            for fd in fds.values():
                os.close(fd)


def _iterate(factory: Callable[[], Iterable[Any]]) -> Iterator[np.ndarray]:
    it = factory()
    if it is None or not hasattr(it, "__iter__"):
        raise TypeError(
            "the source callable must return an iterable of vectors (e.g. a generator); "
            f"it returned {type(it).__name__}"
        )
    for i, v in enumerate(it):
        arr = _to_numpy(v)
        if arr.ndim != 1:
            raise ValueError(f"vector {i} has shape {arr.shape}; yield flat 1-D vectors")
        yield arr


# ------------------------------------------------------------------------------------ PCA
def _check_k(n_components: int, n: int, d: int) -> int:
    if n < 2:
        raise ValueError(f"PCA needs at least 2 vectors, got {n}; select more checkpoints")
    if d < 1:
        raise ValueError("the vectors are empty (D = 0)")
    if not isinstance(n_components, (int, np.integer)) or not 1 <= n_components <= min(n, d):
        raise ValueError(
            f"n_components={n_components!r} must be an integer between 1 and min(n, D) = {min(n, d)}"
        )
    return int(n_components)


def _gram_random_access(
    src: _RandomAccess, dtype, block_bytes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and centered Gram matrix in one pass over column blocks (every row's slab at once)."""
    n, d = src.n, src.d
    width = max(1, min(d, block_bytes // max(1, n * np.dtype(dtype).itemsize)))
    mean = np.empty(d, dtype=np.float64)
    gram = np.zeros((n, n), dtype=np.float64)
    for cols, block in src.column_blocks(width, dtype):
        mu = block.mean(axis=0, dtype=np.float64)
        mean[cols] = mu
        block -= mu.astype(dtype, copy=False)
        gram += block @ block.T  # numpy uses syrk for a @ a.T
    return mean, gram


def _components_random_access(
    src: _RandomAccess, mean: np.ndarray, weights: np.ndarray, dtype, block_bytes: int
) -> np.ndarray:
    """``weights.T @ X_c`` (k, D), by column blocks."""
    n, d = src.n, src.d
    width = max(1, min(d, block_bytes // max(1, n * np.dtype(dtype).itemsize)))
    out = np.empty((weights.shape[1], d), dtype=np.float64)
    w = weights.T.astype(dtype)
    for cols, block in src.column_blocks(width, dtype):
        block -= mean[cols].astype(dtype, copy=False)
        out[:, cols] = w @ block
    return out


def _gram_streaming(
    factory: Callable[[], Iterable[Any]], dtype, block_bytes: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean (first pass) and centered Gram matrix (one pass per block of rows) of streamed vectors."""
    total = None
    n = 0
    for v in _iterate(factory):
        if total is None:
            total = np.zeros(v.shape[0], dtype=np.float64)
        elif v.shape[0] != total.shape[0]:
            raise ValueError(
                f"vector {n} has {v.shape[0]} entries but the first had {total.shape[0]}; "
                "all vectors must come from one model"
            )
        total += v
        n += 1
    if total is None:
        raise ValueError("the source yielded no vectors; select at least 2 checkpoints")
    d = total.shape[0]
    mean = total / n
    mean_c = mean.astype(dtype)
    rows_per_block = max(1, block_bytes // max(1, d * np.dtype(dtype).itemsize))
    gram = np.zeros((n, n), dtype=np.float64)
    passes = 1
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        block = np.empty((stop - start, d), dtype=dtype)
        other = np.empty((rows_per_block, d), dtype=dtype)
        n_other, other_start = 0, stop
        seen = 0
        for j, v in enumerate(_iterate(factory)):
            seen += 1
            if j < start:
                continue
            if j < stop:
                np.subtract(v, mean_c, out=block[j - start], casting="unsafe")
                if j == stop - 1:
                    gram[start:stop, start:stop] = block @ block.T
                continue
            np.subtract(v, mean_c, out=other[n_other], casting="unsafe")
            n_other += 1
            if n_other == rows_per_block:
                g = block @ other[:n_other].T
                gram[start:stop, other_start : other_start + n_other] = g
                gram[other_start : other_start + n_other, start:stop] = g.T
                other_start += n_other
                n_other = 0
        if seen != n:
            raise ValueError(
                f"the source yielded {seen} vectors on a later pass but {n} on the first; "
                "the callable must return the same vectors every time"
            )
        if n_other:
            g = block @ other[:n_other].T
            gram[start:stop, other_start : other_start + n_other] = g
            gram[other_start : other_start + n_other, start:stop] = g.T
        passes += 1
    return mean, gram, passes


def _components_streaming(
    factory: Callable[[], Iterable[Any]], mean: np.ndarray, weights: np.ndarray, dtype
) -> np.ndarray:
    """``weights.T @ X_c`` (k, D) accumulated one vector at a time."""
    out = np.zeros((weights.shape[1], mean.shape[0]), dtype=np.float64)
    mean_c = mean.astype(dtype)
    for i, v in enumerate(_iterate(factory)):
        xc = np.subtract(v, mean_c, dtype=dtype)
        out += np.outer(weights[i], xc)
    return out


def pca_gram(
    source: Any,
    n_components: int = 2,
    *,
    return_components: bool = False,
    sign: str = "sklearn",
    dtype: Any = np.float64,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> PCAResult:
    """Exact PCA of n vectors from their n×n centered Gram matrix (see the module docstring).

    Parameters
    ----------
    source:
        The n vectors of dimension D, as an (n, D) numpy array / torch tensor (a ``np.memmap``
        works), a list of 1-D vectors or of paths to 1-D ``.npy`` files (read by slices, never
        whole), or a callable returning a fresh iterator over the n vectors each time it is called
        (e.g. a generator function loading checkpoints from disk).
    n_components:
        k, between 1 and min(n, D).
    return_components:
        Also return the (k, D) principal directions (needs one more pass unless ``sign="sklearn"``
        computed them anyway).
    sign:
        ``"sklearn"`` (default: components' largest-magnitude entry positive, as scikit-learn) or
        ``"coords"`` (each column of ``coords``' largest-magnitude entry positive; no extra pass).
    dtype:
        Arithmetic type of the data blocks (float64 default; float32 halves time and memory of
        the products). The Gram matrix is always accumulated in float64.
    block_bytes:
        Memory for data blocks. Arrays, lists and ``.npy`` files are read by column blocks of all
        n vectors (mean and Gram in one pass); a callable source is read by blocks of whole vectors
        (a first pass for the mean, then one pass per block of rows).

    Notes
    -----
    Memory is O(n² + block_bytes + k·D): components of zero variance (rank < k) are zero vectors
    with zero coordinates.
    """
    if sign not in ("sklearn", "coords"):
        raise ValueError(f"sign={sign!r}: use 'sklearn' or 'coords'")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype={dtype}: use numpy.float32 or numpy.float64")
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")

    if callable(source) and not isinstance(source, (np.ndarray, list, tuple)) and not hasattr(
        source, "shape"
    ):
        mean, gram, passes = _gram_streaming(source, dtype, block_bytes)
        n, d = gram.shape[0], mean.shape[0]
        src: _RandomAccess | None = None  # streamed: read by blocks of whole vectors
    elif isinstance(source, Iterator):
        raise TypeError(
            "the vectors are read in several passes, so a one-shot iterator/generator cannot be "
            "used: pass a callable returning a fresh iterator (e.g. `lambda: load_all()`) or a list"
        )
    else:
        src = _RandomAccess(source)
        n, d = src.n, src.d
        k = _check_k(n_components, n, d)
        mean, gram = _gram_random_access(src, dtype, block_bytes)
        passes = 1
    k = _check_k(n_components, n, d)

    evals, evecs = np.linalg.eigh(gram)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    evals = np.clip(evals, 0.0, None)
    total = float(evals.sum())
    lam, u = evals[:k].copy(), np.ascontiguousarray(evecs[:, :k])
    s = np.sqrt(lam)
    # a zero singular value has no direction: report zero coords and a zero component
    tiny = lam <= evals[0] * 10 * n * np.finfo(np.float64).eps if evals[0] > 0 else np.ones(k, bool)
    u[:, tiny] = 0.0
    s_safe = np.where(tiny, 1.0, s)

    components: np.ndarray | None = None
    if sign == "sklearn" or return_components:
        weights = u / s_safe
        if src is None:
            components = _components_streaming(source, mean, weights, dtype)
        else:
            components = _components_random_access(src, mean, weights, dtype, block_bytes)
        passes += 1
        components[tiny] = 0.0
    if sign == "sklearn" and components is not None:  # (sklearn's sign always computes them)
        pivot = np.argmax(np.abs(components), axis=1)
        signs = np.sign(components[np.arange(k), pivot])
    else:
        pivot = np.argmax(np.abs(u), axis=0)
        signs = np.sign(u[pivot, np.arange(k)])
    signs[signs == 0] = 1.0
    u *= signs
    if components is not None:
        components *= signs[:, None]

    coords = u * s
    return PCAResult(
        coords=coords,
        explained_variance=lam / (n - 1),
        explained_variance_ratio=lam / total if total > 0 else np.zeros(k),
        singular_values=s,
        mean=mean,
        components=components if return_components else None,
        n_samples=n,
        n_features=d,
        passes=passes,
    )


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
    pca = pca_gram(vectors, n_components=max(1, dims), sign="coords")
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
