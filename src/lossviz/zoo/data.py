"""Data sets by name, and writers of small fake MNIST / CIFAR-10 folders in torchvision's formats.

``get_data(name, root=None, **kwargs) -> (train, test)``:

* ``"spirals"``: the classic interleaved spirals, generated (seeded), 2-D float32 points, int64 labels.
* ``"digits"``: scikit-learn's 8x8 handwritten digits (shipped with scikit-learn), scaled to [0, 1],
  a fixed train/test split; images ``(1, 8, 8)`` or flat ``(64,)`` with ``flat=True``.
* ``"mnist"``, ``"cifar10"``: torchvision's data sets read from ``root`` (never downloaded), with the
  standard normalization; ``augment=True`` gives CIFAR-10's train split the training-time random crop
  and flip both references trained with (:func:`cifar10_train_augmentation`).
* ``"fakedata"``: torchvision's ``FakeData`` (random images, fixed seed), CIFAR-like by default.

``write_fake_cifar10`` / ``write_fake_mnist`` write small folders in the real data sets' formats, with
learnable images (a seeded prototype per class, shifted, mixed with noise) or, with
``labels="random"``, random pixels and labels.

Generated data sets are ``torch.utils.data.TensorDataset``.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from lossviz.files import write_atomic

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "MNIST_MEAN",
    "MNIST_STD",
    "cifar10_train_augmentation",
    "get_data",
    "list_data",
    "make_spirals",
    "write_fake_cifar10",
    "write_fake_mnist",
]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
# He et al.'s CIFAR-10 normalization, as in the reference's cifar10/dataloader.py.
CIFAR10_MEAN = tuple(v / 255.0 for v in (125.3, 123.0, 113.9))
CIFAR10_STD = tuple(v / 255.0 for v in (63.0, 62.1, 66.7))
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]


# --- spirals -------------------------------------------------------------------------------------


def make_spirals(
    n: int, k: int = 2, noise: float = 0.05, turns: float = 1.5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points on ``k`` interleaved spiral arms (the classic two-spirals problem for ``k=2``).

    Point ``m`` of arm ``c`` has radius ``r = t`` and angle ``2π·turns·t + 2πc/k`` with
    ``t ~ U(0, 1)``, plus Gaussian noise of standard deviation ``noise``: ``x = r·(cos, sin) + ε``.
    Arms get ``n // k`` points (the first ``n % k`` arms one more). Returns ``(X float32 (n, 2),
    y int64 (n,))``, shuffled, fully determined by ``seed``.
    """
    if n < 1 or k < 2:
        raise ValueError(f"spirals need n >= 1 points and k >= 2 arms, got n={n}, k={k}")
    if noise < 0:
        raise ValueError(f"spirals noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    t = rng.uniform(0.0, 1.0, size=n)
    angle = 2 * math.pi * turns * t + 2 * math.pi * labels / k
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    X = X + noise * rng.standard_normal(size=X.shape)
    perm = rng.permutation(n)
    return (
        torch.from_numpy(X[perm].astype(np.float32)),
        torch.from_numpy(labels[perm].astype(np.int64)),
    )


def _spirals(
    root=None, *, n: int = 1000, n_test: int | None = None, k: int = 2, noise: float = 0.05,
    turns: float = 1.5, seed: int = 0,
) -> tuple[Dataset, Dataset]:
    """Train: ``n`` points drawn with ``seed``; test: ``n_test`` (default ``n // 4``) with ``seed + 1``."""
    n_test = max(1, n // 4) if n_test is None else n_test
    train = TensorDataset(*make_spirals(n, k, noise, turns, seed))
    test = TensorDataset(*make_spirals(n_test, k, noise, turns, seed + 1))
    return train, test


# --- scikit-learn digits -------------------------------------------------------------------------


def _digits(
    root=None, *, flat: bool = False, test_fraction: float = 0.25, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """scikit-learn's 1797 digits, pixels scaled from 0..16 to [0, 1], split by a fixed permutation."""
    from sklearn.datasets import load_digits

    if not 0 < test_fraction < 1:
        raise ValueError(f"digits test_fraction must be in (0, 1), got {test_fraction}")
    bunch = load_digits()
    X = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    shape = (-1, 64) if flat else (-1, 1, 8, 8)

    def part(idx):
        return TensorDataset(torch.from_numpy(X[idx].reshape(shape)), torch.from_numpy(y[idx]))

    return part(train_idx), part(test_idx)


# --- torchvision data sets from a folder ---------------------------------------------------------


def _require_root(name: str, root) -> Path:
    if root is None:
        raise ValueError(f"data set {name!r} is read from a folder: pass root=... (CLI: --data-root)")
    return Path(root).expanduser()


def _mnist(root=None, *, normalize: bool = True) -> tuple[Dataset, Dataset]:
    from torchvision import datasets, transforms

    root = _require_root("mnist", root)
    raw = root / "MNIST" / "raw"
    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    missing = [f for f in files if not (raw / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"MNIST files missing in {raw}: {', '.join(missing)}. Put the four uncompressed idx files "
            f"({', '.join(files)}) in {raw} (lossviz never downloads)"
        )
    tf = [transforms.ToTensor()]
    if normalize:
        tf.append(transforms.Normalize(MNIST_MEAN, MNIST_STD))
    t = transforms.Compose(tf)
    return (
        datasets.MNIST(str(root), train=True, transform=t, download=False),
        datasets.MNIST(str(root), train=False, transform=t, download=False),
    )


def _cifar10_class(verify: bool):
    from torchvision import datasets

    if verify:
        return datasets.CIFAR10

    class CIFAR10Unverified(datasets.CIFAR10):
        """torchvision's CIFAR10 with the MD5 checks off (files must exist; their contents are
        whatever they are), for folders written by :func:`write_fake_cifar10`."""

        train_list: ClassVar[list] = [[f, None] for f, _ in datasets.CIFAR10.train_list]
        test_list: ClassVar[list] = [[f, None] for f, _ in datasets.CIFAR10.test_list]
        meta: ClassVar[dict] = {**datasets.CIFAR10.meta, "md5": None}

    return CIFAR10Unverified


def cifar10_train_augmentation() -> list:
    """The training-time augmentation both references trained CIFAR-10 with (the reference's
    ``cifar10/main.py``, FlowEr's training): a random 32x32 crop of the image zero-padded by 4 pixels,
    then a horizontal flip with probability 1/2 (torchvision transforms on the PIL image, drawing from
    torch's global generator, which the training loop seeds per epoch)."""
    from torchvision import transforms

    return [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]


def _cifar10(root=None, *, normalize: bool = True, verify: bool = True,
             augment: bool = False) -> tuple[Dataset, Dataset]:
    """torchvision's CIFAR10 from ``root/cifar-10-batches-py``. ``verify=False`` skips the MD5 checks
    (needed for the small files :func:`write_fake_cifar10` writes). ``augment=True`` gives a train split
    for training, with :func:`cifar10_train_augmentation` (a fresh crop and flip at every read), whose
    ``plain`` attribute is the same split without it; surfaces are evaluated on the plain split (the
    reference: "no data augmentation ... in calculating the loss values"). torchvision unpickles these
    batch files: that is CIFAR-10's own distribution format; only read folders you trust."""
    from torchvision import transforms

    root = _require_root("cifar10", root)
    folder = root / "cifar-10-batches-py"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 files missing in {folder}: {', '.join(missing)}. Extract cifar-10-python.tar.gz "
            f"(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) into {root} so that {folder} holds "
            "data_batch_1..5, test_batch and batches.meta (lossviz never downloads)"
        )
    tf = [transforms.ToTensor()]
    if normalize:
        tf.append(transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD))
    t = transforms.Compose(tf)
    cls = _cifar10_class(verify)
    try:
        train, test = cls(str(root), train=True, transform=t), cls(str(root), train=False, transform=t)
    except RuntimeError as e:
        raise ValueError(
            f"CIFAR-10 files in {folder} fail torchvision's MD5 check ({e}). Re-extract the official "
            "archive there, or pass verify=False for files you wrote yourself (e.g. write_fake_cifar10)"
        ) from None
    if augment:
        plain = train
        train = copy.copy(plain)  # shares the images; only the transform differs
        train.transform = transforms.Compose([*cifar10_train_augmentation(), *tf])
        train.plain = plain  # the same images without augmentation, to evaluate on
    return train, test


def _fakedata(
    root=None, *, size: int = 1000, test_size: int | None = None, image_size=(3, 32, 32),
    num_classes: int = 10, seed: int = 0,
) -> tuple[Dataset, Dataset]:
    """torchvision ``FakeData``: image ``i`` is drawn from ``torch.manual_seed(i + offset)``, so the
    data are fixed by ``seed`` (train offset ``seed``, test offset ``seed + 10**6``)."""
    from torchvision import datasets, transforms

    test_size = max(1, size // 5) if test_size is None else test_size
    image_size = tuple(int(s) for s in image_size)
    t = transforms.ToTensor()
    kw = dict(image_size=image_size, num_classes=num_classes, transform=t)
    return (
        datasets.FakeData(size=size, random_offset=seed, **kw),
        datasets.FakeData(size=test_size, random_offset=seed + 10**6, **kw),
    )


def _tinytext(root=None, **kw) -> tuple[Dataset, Dataset]:
    """The generated text corpus as next-token windows (:func:`lossviz.zoo.language.tinytext`)."""
    from lossviz.zoo.language import tinytext

    return tinytext(root, **kw)


def _tinytext_kinds(root=None, **kw) -> tuple[Dataset, Dataset]:
    """Padded corpus sentences labelled by kind (:func:`lossviz.zoo.language.tinytext_kinds`)."""
    from lossviz.zoo.language import tinytext_kinds

    return tinytext_kinds(root, **kw)


DATASETS: dict[str, Callable[..., tuple[Dataset, Dataset]]] = {
    "spirals": _spirals,
    "digits": _digits,
    "mnist": _mnist,
    "cifar10": _cifar10,
    "fakedata": _fakedata,
    "tinytext": _tinytext,
    "tinytext_kinds": _tinytext_kinds,
}
"""Data set loaders by name; ``get_data(name, root, **kw)`` calls ``DATASETS[name](root, **kw)``."""


def list_data() -> list[str]:
    """The registered data set names."""
    return sorted(DATASETS)


def get_data(name: str, root: str | os.PathLike | None = None, **kwargs) -> tuple[Dataset, Dataset]:
    """``(train, test)`` data sets by name (see :func:`list_data`).

    ``root`` is the folder of file-based data sets (``mnist``, ``cifar10``). ``kwargs`` go to the
    loader: ``spirals``: ``n, n_test, k, noise, turns, seed``; ``digits``: ``flat, test_fraction,
    seed``; ``mnist``: ``normalize``; ``cifar10``: ``normalize, verify, augment``; ``fakedata``: ``size,
    test_size, image_size, num_classes, seed``; ``tinytext``: ``n_sentences, block_size, test_fraction,
    seed, form`` ("pairs" or "dict"); ``tinytext_kinds``: ``n, n_test, length, seed``.
    """
    key = str(name).lower()
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known data sets: {', '.join(list_data())}")
    try:
        return DATASETS[key](root, **kwargs)
    except TypeError as e:
        raise ValueError(f"data set {name!r}: bad keyword arguments {kwargs} ({e})") from None


# --- fake files in torchvision's on-disk formats --------------------------------------------------


def _smooth_fields(
    n: int, shape: tuple[int, int, int], rng: np.random.Generator, max_freq: int = 3
) -> np.ndarray:
    """``n`` random smooth periodic fields of shape ``(C, H, W)``, float64, each standardized to mean 0
    and standard deviation 1 over its pixels.

    Field ``f[c, y, x] = Re Σ_k a_{ck} exp(2πi(k_y·y/H + k_x·x/W))`` over the integer frequencies
    ``|k_y|, k_x ≤ max_freq`` (``k_x ≥ 0``), with complex Gaussian ``a_{ck}`` of scale ``1/(1 + |k|)``:
    low-frequency colour textures, periodic so that a cyclic shift (``np.roll``) keeps them smooth.
    """
    c, h, w = shape
    ky_grid, kx_grid = np.meshgrid(np.arange(-max_freq, max_freq + 1), np.arange(0, max_freq + 1), indexing="ij")
    ky, kx = ky_grid.ravel(), kx_grid.ravel()
    scale = 1.0 / (1.0 + np.hypot(ky, kx))
    yy, xx = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    basis = np.exp(2j * np.pi * (ky[:, None] * yy.ravel()[None] + kx[:, None] * xx.ravel()[None]))  # (K, H·W)
    out = np.empty((n, c, h, w))
    for lo in range(0, n, 1024):  # bounded memory for large n
        m = min(n, lo + 1024) - lo
        coef = rng.standard_normal((m, c, len(ky), 2)) @ np.array([1.0, 1j]) * scale
        out[lo : lo + m] = (coef @ basis).real.reshape(m, c, h, w)
    out -= out.mean(axis=(1, 2, 3), keepdims=True)
    out /= out.std(axis=(1, 2, 3), keepdims=True)
    return out


def _balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, each class ``n // num_classes`` or one more times, in random order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _prototype_images(
    labels: np.ndarray, prototypes: np.ndarray, noise: float, max_shift: int, flip: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """uint8 images ``(N, C, H, W)``: ``x_i = clip(128 + 48·(P'_{y_i} + noise·D_i)/√(1+noise²) + 8·ε_i)``.

    ``P'_y`` is class ``y``'s prototype (a standardized smooth field) cyclically shifted by up to
    ``max_shift`` pixels in each direction and, with ``flip``, mirrored left-right with probability 1/2;
    ``D_i`` is the image's own smooth field drawn like the prototypes (the nuisance that makes classes
    overlap as ``noise`` grows); ``ε_i`` is per-pixel standard normal grain.
    """
    n = len(labels)
    _, c, h, w = prototypes.shape
    base = prototypes[labels].copy()
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    mirror = rng.random(n) < 0.5 if flip else np.zeros(n, dtype=bool)
    for i in range(n):
        img = np.roll(base[i], shift=tuple(shifts[i]), axis=(1, 2))
        base[i] = img[:, :, ::-1] if mirror[i] else img
    nuisance = _smooth_fields(n, (c, h, w), rng)
    grain = rng.standard_normal(base.shape)
    pixels = 128.0 + 48.0 * (base + noise * nuisance) / math.sqrt(1.0 + noise**2) + 8.0 * grain
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _random_images(n: int, shape: tuple[int, ...], num_classes: int, rng: np.random.Generator):
    """Uniform random pixels with uniform random labels (``labels="random"``)."""
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).astype(np.int64)
    return images, labels


LABEL_KINDS = ("learnable", "random")


def _fake_splits(
    n_train: int, n_test: int, shape: tuple[int, int, int], *, labels: str, noise: float, max_shift: int,
    flip: bool, seed: int, num_classes: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_images, train_labels, test_images, test_labels)``, images uint8 ``(N, C, H, W)``.

    ``labels="learnable"``: the class prototypes come from stream ``[seed, 0]`` and are shared by both
    splits; the train images from stream ``[seed, 1]``, the test images from ``[seed, 2]`` (so the
    test set does not depend on ``n_train``). ``labels="random"``: uniform random pixels and labels
    drawn from ``default_rng(seed)``, train then test (the files of lossviz before learnable data).
    """
    if labels not in LABEL_KINDS:
        raise ValueError(f"labels must be one of {LABEL_KINDS}, got {labels!r}")
    try:
        noise = float(noise)
    except (TypeError, ValueError):
        noise = math.nan
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0 (0: clean class prototypes), got {noise!r}")
    if not (isinstance(max_shift, (int, np.integer)) and max_shift >= 0):
        raise ValueError(f"max_shift must be an int >= 0 (pixels), got {max_shift!r}")
    if labels == "random":
        rng = np.random.default_rng(seed)
        tr_x, tr_y = _random_images(n_train, shape, num_classes, rng)
        te_x, te_y = _random_images(n_test, shape, num_classes, rng)
        return tr_x, tr_y, te_x, te_y
    prototypes = _smooth_fields(num_classes, shape, np.random.default_rng([seed, 0]))
    splits = []
    for n, stream in ((n_train, 1), (n_test, 2)):
        rng = np.random.default_rng([seed, stream])
        y = _balanced_labels(n, num_classes, rng)
        splits.append((_prototype_images(y, prototypes, noise, max_shift, flip, rng), y))
    (tr_x, tr_y), (te_x, te_y) = splits
    return tr_x, tr_y, te_x, te_y


def write_fake_cifar10(
    root: str | os.PathLike, n_train: int = 50, n_test: int = 10, seed: int = 0, *,
    labels: str = "learnable", noise: float = 1.0, max_shift: int = 3,
) -> dict[str, np.ndarray]:
    """Write a small CIFAR-10 folder ``root/cifar-10-batches-py`` in the official python format.

    The images are learnable by default (``labels="learnable"``): each of the 10 classes has a fixed
    smooth random colour texture (its prototype, drawn from ``seed`` and shared by train and test),
    and each image is its class's prototype cyclically shifted by up to ``max_shift`` pixels, mirrored
    left-right with probability 1/2, mixed with a smooth random texture of its own with weight
    ``noise`` and given per-pixel grain (see :func:`_prototype_images`). ``noise=0`` is nearly trivial;
    at the default ``1.0`` a nearest-class-mean classifier fitted on 300 images gets about 90% of the
    test images right (a ResNet-20 trained 6 epochs on 512 images, in one run, about 70%); at ``2.0``
    the classes overlap strongly (nearest class mean about 55%, at ``3.0`` about 35%). Labels are
    balanced. ``labels="random"`` writes uniform random pixels with random labels instead (nothing to
    learn but memorization; the files of earlier lossviz versions, byte for byte). The same arguments
    always write the same bytes.

    ``data_batch_1..5`` (the ``n_train`` images split as evenly as possible), ``test_batch`` and
    ``batches.meta`` are pickled dicts with ``data`` (uint8 ``(N, 3072)``, channel-major rows as in
    the real files), ``labels``, ``filenames``, ``batch_label``: the format torchvision's ``CIFAR10``
    reads (it unpickles them; that is CIFAR-10's own format, and these are files we wrote). Read them
    with ``get_data("cifar10", root, verify=False)`` (their MD5s differ from the real ones).

    Returns the written arrays: ``train_images``/``test_images`` uint8 ``(N, 32, 32, 3)`` (HWC, as
    torchvision's ``.data``) and ``train_labels``/``test_labels`` int64.
    """
    if n_train < 5 or n_test < 1:
        raise ValueError(
            f"write_fake_cifar10 needs n_train >= 5 (five batches) and n_test >= 1, got {n_train}, {n_test}"
        )
    tr_x, tr_y, te_x, te_y = _fake_splits(
        n_train, n_test, (3, 32, 32), labels=labels, noise=noise, max_shift=max_shift, flip=True, seed=seed
    )
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(x, y, label, start):
        return {
            "batch_label": label,
            "labels": [int(v) for v in y],
            "data": x.reshape(len(x), 3072),
            "filenames": [f"fake_{start + i:06d}.png" for i in range(len(x))],
        }

    bounds = np.linspace(0, n_train, 6).astype(int)
    for b in range(5):
        lo, hi = bounds[b], bounds[b + 1]
        d = batch(tr_x[lo:hi], tr_y[lo:hi], f"training batch {b + 1} of 5", lo)
        write_atomic(folder / f"data_batch_{b + 1}", pickle.dumps(d, protocol=2))
    write_atomic(folder / "test_batch", pickle.dumps(batch(te_x, te_y, "testing batch 1 of 1", 0), protocol=2))
    meta = {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": int(bounds[1]), "num_vis": 3072}
    write_atomic(folder / "batches.meta", pickle.dumps(meta, protocol=2))
    return {
        "train_images": tr_x.transpose(0, 2, 3, 1),
        "train_labels": tr_y,
        "test_images": te_x.transpose(0, 2, 3, 1),
        "test_labels": te_y,
    }


def _idx_bytes(array: np.ndarray) -> bytes:
    """An idx (ubyte) file: magic ``0x0000 08 <ndim>``, big-endian int32 dims, then the raw bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_fake_mnist(
    root: str | os.PathLike, n_train: int = 60, n_test: int = 10, seed: int = 0, *,
    labels: str = "learnable", noise: float = 1.0, max_shift: int = 2,
) -> dict[str, np.ndarray]:
    """Write a small MNIST folder ``root/MNIST/raw`` with the four uncompressed idx ubyte files
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-...``) torchvision's ``MNIST``
    reads. Returns ``train_images``/``test_images`` uint8 ``(N, 28, 28)`` and the int64 labels.

    Learnable by default, as :func:`write_fake_cifar10`: each class has a smooth grey-level prototype
    shared by train and test, each image is its class's prototype shifted by up to ``max_shift``
    pixels (never mirrored), mixed with its own smooth texture weighted by ``noise`` and grain. At the
    default ``noise=1.0`` a nearest-class-mean classifier fitted on 300 images gets about 90% of the
    test images right. ``labels="random"``: uniform random pixels
    and labels (the earlier files, byte for byte). The same arguments always write the same bytes."""
    if n_train < 1 or n_test < 1:
        raise ValueError(f"write_fake_mnist needs n_train, n_test >= 1, got {n_train}, {n_test}")
    tr_x, tr_y, te_x, te_y = _fake_splits(
        n_train, n_test, (1, 28, 28), labels=labels, noise=noise, max_shift=max_shift, flip=False, seed=seed
    )
    tr_x, te_x = tr_x.reshape(n_train, 28, 28), te_x.reshape(n_test, 28, 28)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, x, y in (("train", tr_x, tr_y), ("t10k", te_x, te_y)):
        write_atomic(raw / f"{prefix}-images-idx3-ubyte", _idx_bytes(x))
        write_atomic(raw / f"{prefix}-labels-idx1-ubyte", _idx_bytes(y.astype(np.uint8)))
    return {"train_images": tr_x, "train_labels": tr_y, "test_images": te_x, "test_labels": te_y}
