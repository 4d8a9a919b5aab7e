"""Principal components of many checkpoint vectors, streamed block by block: exact from the Gram
matrix, or by a randomized subspace iteration.

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

Randomized PCA for many vectors
-------------------------------
The Gram matrix costs n²·D operations (1000 × 1M: about 2 minutes on one core). For large n,
:func:`pca_gram` instead runs a randomized subspace iteration (Halko, Martinsson & Tropp 2011,
algorithm 4.4) on m = k + ``oversamples`` vectors, streaming the same blocks: each pass over the
data reads every vector once and applies ``G`` (arrays and ``.npy`` files: ``W = X_c (X_cᵀ Q)`` for
an orthonormal n×m ``Q``, the mean from the first pass's blocks) or ``X_cᵀX_c`` (callables: a
first pass for the mean, then ``X_cᵀ (X_c Q)`` for a D×m ``Q``), 4·n·D·m operations. After each pass
the Rayleigh–Ritz estimate of the top k gives coordinates and components; with ``QᵀGQ = V Θ Vᵀ``
they are ``G Q V Θ^{-1/2}`` and ``X_cᵀ Q V Θ^{-1/2}`` (one power step beyond the Ritz vectors), so
the coordinates are exactly the projections on the returned orthonormal components. The error
shrinks by about ``θ_m / θ_k`` per pass; the iteration stops when the last change of the
coordinates times that rate (the estimated error of the current ones), relative to each
component's largest coordinate, is below ``tol`` (1e-6). On arrays and files the passes run in
float32 until that estimate is below 100·``tol`` and the result always comes from a ``dtype``
(float64) pass. On trajectories (random walks, a low-rank path plus noise, a trained MLP) 4 or 5
passes give top-2 coordinates within 1e-6 of the exact ones, usually 1e-7 or better
(``tests/unit/test_pca.py``; ``benchmarks/projection_speed.py`` times it).

Which method (``method="auto"``, the default): the Gram path, exact, when n ≤ 300 and (for a
callable) its Gram matrix takes at most 8 passes of row blocks — then it costs about what the
iteration would (n² vs ≈ 4·m·passes ≈ 300 per n·D); the randomized path otherwise.
``method="gram"`` or ``"randomized"`` forces one; ``PCAResult.method`` says which ran.

Sign convention: with ``sign="sklearn"`` (default) every component is flipped so that its entry of
largest absolute value is positive — scikit-learn's ``svd_flip(U, Vt, u_based_decision=False)``,
used by its ``PCA`` since 1.5 — so results compare directly with scikit-learn's. Deciding it needs
the components, hence one more pass over the data on the Gram path (the randomized path has
them). ``sign="coords"`` instead makes the coordinate of
largest absolute value positive for each component (no extra pass).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lossviz.validation import Interval, Options, check

__all__ = ["AUTO_GRAM_MAX_N", "PCAResult", "pca_gram"]

DEFAULT_BLOCK_BYTES = 64 * 2**20
PCA_METHODS = ("auto", "gram", "randomized")
AUTO_GRAM_MAX_N = 300  # method="auto": the Gram path up to this many vectors ...
AUTO_GRAM_MAX_PASSES = 8  # ... when its Gram matrix takes at most this many passes
DEFAULT_OVERSAMPLES = 10
DEFAULT_TOL = 1e-6
DEFAULT_MAX_PASSES = 30
FAST_PASS_FACTOR = 100  # randomized: float32 passes while the estimated error exceeds this × tol
SUB_BLOCK_BYTES = 4 * 2**20  # randomized: columns of a block are processed in slabs this big (cache)


# ------------------------------------------------------------------------------------ PCA result
@dataclass
class PCAResult:
    """PCA of n vectors (scikit-learn's ``PCA`` attribute names, without trailing ``_``).

    ``coords`` (n, k), ``explained_variance`` (k,), ``explained_variance_ratio`` (k,),
    ``singular_values`` (k,), ``mean`` (D,), ``components`` (k, D) or None when not requested,
    ``n_samples``, ``n_features``, ``passes`` (how many times the data were read), ``method``
    (``"gram"`` or ``"randomized"``: the path :func:`pca_gram` took).
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
    method: str = "gram"

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

    def read_into(self, fd: int, start: int, out: np.ndarray) -> None:
        """Entries ``start : start + len(out)`` into ``out`` (straight from the file when the types match)."""
        if out.dtype != self.dtype or not out.flags.c_contiguous:
            out[:] = self.read(fd, start, start + out.shape[0])
            return
        got = os.preadv(fd, [out.data.cast("B")], self.offset + start * self.dtype.itemsize)
        if got != out.nbytes:
            raise ValueError(f"{self.path!r} is shorter than its header says (truncated file?)")


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

    @property
    def storage_dtype(self) -> np.dtype:
        """float32 when every vector is stored in float32 (read as is), else float64."""
        dtypes = [self.matrix.dtype] if self.matrix is not None else [r.dtype for r in self.rows or []]
        return np.dtype(np.float32 if dtypes and all(t == np.float32 for t in dtypes) else np.float64)

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
                        if i in fds:
                            r.read_into(fds[i], start, block[i])
                        else:
                            block[i] = r[start:stop]
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


def _mean_streaming(factory: Callable[[], Iterable[Any]]) -> tuple[np.ndarray, int]:
    """Mean and number of streamed vectors (one pass)."""
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
    return total / n, n


def _rows_per_block(d: int, dtype, block_bytes: int) -> int:
    return max(1, block_bytes // max(1, d * np.dtype(dtype).itemsize))


def _gram_streaming(
    factory: Callable[[], Iterable[Any]], mean: np.ndarray, n: int, dtype, block_bytes: int
) -> tuple[np.ndarray, int]:
    """Centered Gram matrix of streamed vectors, one pass per block of rows."""
    d = mean.shape[0]
    mean_c = mean.astype(dtype)
    rows_per_block = _rows_per_block(d, dtype, block_bytes)
    gram = np.zeros((n, n), dtype=np.float64)
    passes = 0
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
        _check_same_count(seen, n)
        if n_other:
            g = block @ other[:n_other].T
            gram[start:stop, other_start : other_start + n_other] = g
            gram[other_start : other_start + n_other, start:stop] = g.T
        passes += 1
    return gram, passes


def _check_same_count(seen: int, n: int) -> None:
    if seen != n:
        raise ValueError(
            f"the source yielded {seen} vectors on a later pass but {n} on the first; "
            "the callable must return the same vectors every time"
        )


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


def _exact_from_gram(gram: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Top-k ``(u, s, tiny, tr G)`` of a centered Gram matrix: ``G ≈ u diag(s²) uᵀ``; ``u`` is 0 where tiny."""
    evals, evecs = np.linalg.eigh(gram)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    evals = np.clip(evals, 0.0, None)
    lam, u = evals[:k].copy(), np.ascontiguousarray(evecs[:, :k])
    tiny = _tiny(lam, evals[0], gram.shape[0])
    u[:, tiny] = 0.0
    return u, np.sqrt(lam), tiny, float(evals.sum())


def _tiny(lam: np.ndarray, top: float, n: int) -> np.ndarray:
    """Eigenvalues indistinguishable from 0 next to the largest one (no direction to report)."""
    if top <= 0:
        return np.ones(lam.shape[0], dtype=bool)
    return lam <= top * 10 * n * np.finfo(np.float64).eps


# ------------------------------------------------------------------------------------ randomized PCA
def _orth(a: np.ndarray) -> np.ndarray:
    """An orthonormal basis (Householder QR) of a tall matrix's columns; it spans them even when rank-deficient."""
    return np.linalg.qr(a)[0]


def _relative_change(new: np.ndarray, old: np.ndarray) -> float:
    """``max_j max_i |new_ij − ±old_ij| / max_i |new_ij|`` (signs aligned per column; 0/0 counts as 0)."""
    signs = np.sign(np.sum(new * old, axis=0))
    signs[signs == 0] = 1.0
    scale = np.abs(new).max(axis=0)
    diff = np.abs(new - old * signs).max(axis=0)
    rel = np.divide(diff, scale, out=np.where(diff > 0, np.inf, 0.0), where=scale > 0)
    return float(rel.max())


def _ritz_from_gram_product(
    q: np.ndarray, w: np.ndarray, z: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Top-k Ritz estimate from ``W = G Q`` and ``Z = X_cᵀ Q`` (Q: n×m orthonormal).

    With ``QᵀGQ = V Λ Vᵀ`` the components are ``v_j = Z V_j / √λ_j`` (unit vectors) and the
    coordinates ``X_c v_j = W V_j / √λ_j``: one power step beyond the Ritz vectors ``Q V_j``.
    """
    t = q.T @ w
    lam_all, vecs = np.linalg.eigh((t + t.T) / 2)
    lam_all, vecs = np.clip(lam_all[::-1], 0.0, None), vecs[:, ::-1]
    lam, v = lam_all[:k], vecs[:, :k]
    tiny = _tiny(lam, float(lam_all[0]), q.shape[0])
    scale = np.where(tiny, 0.0, 1.0 / np.sqrt(np.where(tiny, 1.0, lam)))
    coords = w @ (v * scale)
    components = None if z is None else (z @ (v * scale)).T
    return coords, components


def _error_estimate(coords: np.ndarray, prev: np.ndarray | None, ritz: np.ndarray, k: int) -> float:
    """Estimated relative error of ``coords``: the last change times the convergence rate per pass,
    ``θ_m / θ_k`` (smallest over k-th Ritz value, at least 1e-3); inf on the first pass."""
    if prev is None:
        return float("inf")
    rate = max(float(ritz[-1] / ritz[k - 1]) if ritz[k - 1] > 0 else 1.0, 1e-3)
    return _relative_change(coords, prev) * rate


def _randomized_random_access(
    src: _RandomAccess, k: int, m: int, dtype, block_bytes: int, tol: float, max_passes: int,
    rng: np.random.Generator, keep_components: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, float, int, bool]:
    """Subspace iteration on ``G = X_c X_cᵀ`` by column blocks, each pass computing ``W = G Q``.

    Passes run in float32 until the estimated error is below ``FAST_PASS_FACTOR · tol``, then in
    ``dtype`` until it is below ``tol``; the result comes from a ``dtype`` pass.
    Returns ``(coords, components, mean, tr G, passes, converged)``.
    """
    n, d = src.n, src.d
    stored = src.storage_dtype
    width = max(1, min(d, block_bytes // max(1, n * stored.itemsize)))
    sub = max(1, min(width, SUB_BLOCK_BYTES // max(1, n * 8)))  # columns processed in cache at once
    mean = np.empty(d, dtype=np.float64)
    z = np.empty((d, m), dtype=np.float64) if keep_components else None
    q = _orth(rng.standard_normal((n, m)))
    prev: np.ndarray | None = None
    estimate, fast = float("inf"), np.dtype(np.float32)
    for passes in range(1, max_passes + 1):
        last_chance = m == n or passes == max_passes or estimate <= FAST_PASS_FACTOR * tol
        pass_dtype = dtype if last_chance else fast
        final = pass_dtype == dtype
        w = np.zeros((n, m), dtype=np.float64)
        total = 0.0
        q_t = np.ascontiguousarray(q.T, dtype=pass_dtype)
        buf = np.empty((n, sub), dtype=pass_dtype)
        for cols, block in src.column_blocks(width, stored):
            if passes == 1:
                mean[cols] = block.mean(axis=0, dtype=np.float64)
            mu = mean[cols].astype(pass_dtype)  # float32 passes center in float32 (a constant shift < 1 ulp)
            for a in range(0, block.shape[1], sub):
                b = min(block.shape[1], a + sub)
                xc = buf[:, : b - a]
                np.subtract(block[:, a:b], mu[a:b], out=xc, casting="unsafe")
                if final:
                    total += float(np.einsum("ij,ij->", xc, xc, dtype=np.float64))
                zt = q_t @ xc  # (m, columns): (X_cᵀ Q)ᵀ on these columns, in cache
                if z is not None:
                    z[cols.start + a : cols.start + b] = zt.T
                w += xc @ zt.T
        coords, components = _ritz_from_gram_product(q, w, z, k)
        if m == n:
            return coords, components, mean, total, passes, True
        ritz = np.linalg.eigvalsh(q.T @ w)[::-1]
        estimate = _error_estimate(coords, prev, ritz, k)
        if final and estimate <= tol:
            return coords, components, mean, total, passes, True
        prev, q = coords, _orth(w)
    return coords, components, mean, total, max_passes, False


def _centered_row_blocks(
    factory: Callable[[], Iterable[Any]], mean: np.ndarray, n: int, dtype, rows: int
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(rows, block)``: (≤ rows, D) blocks of streamed vectors minus the mean (one buffer, reused)."""
    d = mean.shape[0]
    mean_c = mean.astype(dtype)
    buf = np.empty((rows, d), dtype=dtype)
    seen, start = 0, 0
    for v in _iterate(factory):
        if seen == n:
            raise ValueError(
                f"the source yielded more than {n} vectors on a later pass; "
                "the callable must return the same vectors every time"
            )
        if v.shape[0] != d:
            raise ValueError(f"vector {seen} has {v.shape[0]} entries but the first had {d}")
        np.subtract(v, mean_c, out=buf[seen - start], casting="unsafe")
        seen += 1
        if seen - start == rows:
            yield slice(start, seen), buf
            start = seen
    _check_same_count(seen, n)
    if seen > start:
        yield slice(start, seen), buf[: seen - start]


def _randomized_streaming(
    factory: Callable[[], Iterable[Any]], mean: np.ndarray, n: int, k: int, m: int, dtype,
    block_bytes: int, tol: float, max_passes: int, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float, int, bool]:
    """Subspace iteration on ``X_cᵀX_c`` by blocks of whole vectors, each pass computing
    ``Y = X_c Q`` and ``X_cᵀY`` (Q: D×m orthonormal); the estimate is ``coords = Y V``,
    ``components = (Q V)ᵀ`` with ``YᵀY = V Σ² Vᵀ``.

    Returns ``(coords, components, tr G, passes, converged)`` (passes after the mean's).
    """
    d = mean.shape[0]
    rows = _rows_per_block(d, dtype, block_bytes)
    q = _orth(rng.standard_normal((d, m)))
    total = 0.0
    prev: np.ndarray | None = None
    for passes in range(1, max_passes + 1):
        y = np.empty((n, m), dtype=np.float64)
        z = np.zeros((d, m), dtype=np.float64)
        q_c = q.astype(dtype)
        for rs, block in _centered_row_blocks(factory, mean, n, dtype, rows):
            if passes == 1:
                total += float(np.einsum("ij,ij->", block, block, dtype=np.float64))
            yb = block @ q_c
            y[rs] = yb
            z += block.T @ yb
        t = y.T @ y
        lam_all, vecs = np.linalg.eigh((t + t.T) / 2)
        lam_all, vecs = lam_all[::-1], vecs[:, ::-1]
        v = vecs[:, :k] * ~_tiny(lam_all[:k], float(lam_all[0]), n)
        coords, components = y @ v, (q @ v).T
        if m == d or _error_estimate(coords, prev, lam_all, k) <= tol:
            return coords, components, total, passes, True
        prev, q = coords, _orth(z)
    return coords, components, total, max_passes, False


# ------------------------------------------------------------------------------------ PCA
def _choose_method(method: str, n: int, gram_passes: int) -> str:
    """``"auto"``: the exact Gram path while it costs about what the iteration would (see pca_gram)."""
    if method != "auto":
        return method
    return "gram" if n <= AUTO_GRAM_MAX_N and gram_passes <= AUTO_GRAM_MAX_PASSES else "randomized"


def _sign_flips(coords: np.ndarray, components: np.ndarray | None, sign: str) -> np.ndarray:
    """±1 per component: scikit-learn's rule on the components, or the coordinates' own rule."""
    k = coords.shape[1]
    if sign == "sklearn" and components is not None:
        pivot = np.argmax(np.abs(components), axis=1)
        signs = np.sign(components[np.arange(k), pivot])
    else:
        pivot = np.argmax(np.abs(coords), axis=0)
        signs = np.sign(coords[pivot, np.arange(k)])
    signs[signs == 0] = 1.0
    return signs


def pca_gram(
    source: Any,
    n_components: int = 2,
    *,
    return_components: bool = False,
    sign: str = "sklearn",
    dtype: Any = np.float64,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    method: str = "auto",
    oversamples: int = DEFAULT_OVERSAMPLES,
    tol: float = DEFAULT_TOL,
    max_passes: int = DEFAULT_MAX_PASSES,
    seed: int = 0,
) -> PCAResult:
    """PCA of n vectors, exact from their n×n centered Gram matrix or by streamed randomized
    subspace iteration (see the module docstring).

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
        Also return the (k, D) principal directions (the Gram path needs one more pass unless
        ``sign="sklearn"`` computed them anyway; the randomized path has them).
    sign:
        ``"sklearn"`` (default: components' largest-magnitude entry positive, as scikit-learn) or
        ``"coords"`` (each column of ``coords``' largest-magnitude entry positive; no extra pass).
    dtype:
        Arithmetic type of the data blocks (float64 default; float32 halves time and memory of
        the products). Gram matrix, ``G Q`` and ``X_cᵀ Y`` are always accumulated in float64.
    block_bytes:
        Memory for data blocks. Arrays, lists and ``.npy`` files are read by column blocks of all
        n vectors (the mean comes with the first pass); a callable source is read by blocks of
        whole vectors (a first pass for the mean, then one pass per block of rows for the Gram
        matrix, or one pass per iteration for the randomized method).
    method:
        ``"gram"`` (exact), ``"randomized"`` or ``"auto"`` (default): the Gram path when
        ``n ≤ AUTO_GRAM_MAX_N`` (300) and, for a callable, the Gram matrix takes at most
        ``AUTO_GRAM_MAX_PASSES`` (8) passes; the randomized path otherwise.
    oversamples, tol, max_passes, seed:
        The randomized path: it iterates on ``m = k + oversamples`` vectors (at most n, resp. D)
        from a Gaussian start drawn with ``seed``, until no coordinate of any of the k components
        changes by more than ``tol`` times that component's largest |coordinate| from one pass to
        the next, or ``max_passes`` passes (a ``RuntimeWarning`` then).

    Notes
    -----
    Memory is O(n² + block_bytes + k·D) for the Gram path and O(n·m + block_bytes + m·D) for the
    randomized one (the m·D part only when components are needed; always for a callable source).
    Components of zero variance (rank < k) are zero vectors with zero coordinates.
    """
    check("sign", sign, Options(("sklearn", "coords")))
    check("method", method, Options(PCA_METHODS))
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype={dtype}: use numpy.float32 or numpy.float64")
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    oversamples = check("oversamples", oversamples, Interval(int, 0, None))
    tol = check("tol", tol, Interval(float, 0, None, closed="neither"))
    max_passes = check("max_passes", max_passes, Interval(int, 1, None))
    rng = np.random.default_rng(seed)
    need_components = sign == "sklearn" or return_components

    src: _RandomAccess | None = None  # None: a callable, streamed by blocks of whole vectors
    components: np.ndarray | None = None
    converged = True
    if callable(source) and not isinstance(source, (np.ndarray, list, tuple)) and not hasattr(
        source, "shape"
    ):
        mean, n = _mean_streaming(source)
        d = mean.shape[0]
        k = _check_k(n_components, n, d)
        chosen = _choose_method(method, n, -(-n // _rows_per_block(d, dtype, block_bytes)))
        if chosen == "gram":
            gram, passes = _gram_streaming(source, mean, n, dtype, block_bytes)
        else:
            coords, components, total, passes, converged = _randomized_streaming(
                source, mean, n, k, min(k + oversamples, d), dtype, block_bytes, tol, max_passes, rng
            )
        passes += 1  # the mean's pass
    elif isinstance(source, Iterator):
        raise TypeError(
            "the vectors are read in several passes, so a one-shot iterator/generator cannot be "
            "used: pass a callable returning a fresh iterator (e.g. `lambda: load_all()`) or a list"
        )
    else:
        src = _RandomAccess(source)
        n, d = src.n, src.d
        k = _check_k(n_components, n, d)
        chosen = _choose_method(method, n, 1)
        if chosen == "gram":
            mean, gram = _gram_random_access(src, dtype, block_bytes)
            passes = 1
        else:
            coords, components, mean, total, passes, converged = _randomized_random_access(
                src, k, min(k + oversamples, n), dtype, block_bytes, tol, max_passes, rng, need_components
            )

    if chosen == "gram":
        u, s, tiny, total = _exact_from_gram(gram, k)
        if need_components:
            weights = u / np.where(tiny, 1.0, s)
            if src is None:
                components = _components_streaming(source, mean, weights, dtype)
            else:
                components = _components_random_access(src, mean, weights, dtype, block_bytes)
            passes += 1
            components[tiny] = 0.0
        coords, lam = u * s, s**2
    else:
        lam = np.sum(coords * coords, axis=0)  # ‖X_c v_j‖², as sklearn's explained_variance_
    if not converged:
        warnings.warn(
            f"randomized PCA: the coordinates still changed by more than tol={tol:g} after "
            f"max_passes={max_passes} passes (nearly equal variances?); raise max_passes or "
            "oversamples, or use method='gram'",
            RuntimeWarning,
            stacklevel=2,
        )
    signs = _sign_flips(coords, components, sign)
    coords = coords * signs
    if components is not None:
        components *= signs[:, None]
    return PCAResult(
        coords=coords,
        explained_variance=lam / (n - 1),
        explained_variance_ratio=lam / total if total > 0 else np.zeros(k),
        singular_values=np.sqrt(lam),
        mean=mean,
        components=components if return_components else None,
        n_samples=n,
        n_features=d,
        passes=passes,
        method=chosen,
    )
