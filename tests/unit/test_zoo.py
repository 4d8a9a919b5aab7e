"""The model and data zoo: every model builds and runs; parameter counts; data shapes and determinism;
fake CIFAR-10 / MNIST folders read back by torchvision's own loaders."""

import math
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from lossviz.zoo import (
    MODELS,
    get_data,
    get_model,
    list_data,
    list_models,
    make_spirals,
    write_fake_cifar10,
    write_fake_mnist,
)
from lossviz.zoo.data import CIFAR10_MEAN, CIFAR10_STD, MNIST_MEAN, MNIST_STD
from lossviz.zoo.models import CifarResNet

torch.set_num_threads(1)

# (name, kwargs, input shape, number of outputs)
FORWARD_CASES = [
    ("mlp", {}, (4, 2), 2),
    ("mlp", {"in_features": 64, "hidden": [16], "out_features": 10, "activation": "tanh"}, (3, 1, 8, 8), 10),
    ("lenet", {}, (2, 1, 28, 28), 10),
    ("lenet", {"in_channels": 3, "input_size": 32}, (2, 3, 32, 32), 10),
    ("cnn", {}, (2, 3, 32, 32), 10),
    ("cnn", {"in_channels": 1, "width": 4}, (2, 1, 8, 8), 10),
    ("vgg9", {}, (2, 3, 32, 32), 10),
    ("vgg16", {"width": 0.125}, (2, 3, 32, 32), 10),
    ("resnet20", {}, (2, 3, 32, 32), 10),
    ("resnet20", {"num_classes": 100}, (2, 3, 32, 32), 100),
    ("resnet56", {}, (2, 3, 32, 32), 10),
    ("resnet110", {}, (1, 3, 32, 32), 10),
    ("resnet20_noshort", {}, (2, 3, 32, 32), 10),
    ("resnet56_noshort", {}, (1, 3, 32, 32), 10),
    ("resnet110_noshort", {}, (1, 3, 32, 32), 10),
    ("densenet121", {}, (1, 3, 32, 32), 10),
    ("densenet_cifar", {"num_classes": 100}, (2, 3, 32, 32), 100),
    ("cnn12", {}, (2, 3, 32, 32), 10),
    ("cnn24", {}, (2, 3, 32, 32), 10),
    ("cnn36", {}, (2, 3, 32, 32), 10),
    ("cnn48", {}, (2, 3, 32, 32), 10),
    ("cnn96", {}, (1, 3, 32, 32), 10),
    ("cnn48x2", {}, (1, 3, 32, 32), 10),
    ("cnn48x3", {"in_channels": 1}, (1, 1, 28, 28), 10),
    ("torchvision:resnet18", {"num_classes": 3}, (1, 3, 32, 32), 3),
]


# token models: (name, kwargs, (batch, tokens), outputs' last dimension); their own tests in
# tests/unit/test_language.py (TinyGPT) and tests/unit/test_hf_models.py (Hugging Face)
TOKEN_FORWARD_CASES = [
    ("gpt", {}, (2, 32), 27),
    ("gpt", {"n_layer": 1, "d_model": 16, "n_head": 2, "block_size": 8, "vocab_size": 5}, (3, 8), 5),
    ("hf_gpt2", {}, (2, 20), 27),
    ("hf_bert", {}, (2, 20), 3),
]


def test_every_registered_model_has_a_forward_case():
    assert {name for name, *_ in FORWARD_CASES + TOKEN_FORWARD_CASES} >= set(list_models())
    assert list_models() == sorted(MODELS)


@pytest.mark.parametrize("name,kwargs,shape,n_out", FORWARD_CASES, ids=lambda v: str(v)[:24])
def test_model_builds_and_runs(name, kwargs, shape, n_out):
    torch.manual_seed(0)
    model = get_model(name, **kwargs).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (shape[0], n_out)
    assert torch.isfinite(out).all()
    # a different input gives a different output: the net is wired to its input (deep plain nets
    # at initialization shrink their input's signal below float precision: the point of shortcuts)
    if name not in ("resnet56_noshort", "resnet110_noshort"):
        with torch.no_grad():
            assert not torch.equal(model(x + 1.0), out)


@pytest.mark.parametrize("name,kwargs,shape,n_out", TOKEN_FORWARD_CASES, ids=lambda v: str(v)[:24])
def test_token_model_builds_and_runs(name, kwargs, shape, n_out):
    from lossviz.losses import logits_of

    torch.manual_seed(0)
    model = get_model(name, **kwargs).eval()
    ids = torch.randint(0, kwargs.get("vocab_size", 27), shape)
    with torch.no_grad():
        out = logits_of(model(input_ids=ids))
        other = logits_of(model(input_ids=(ids + 1) % kwargs.get("vocab_size", 27)))
    assert out.shape == ((shape[0], n_out) if name == "hf_bert" else (*shape, n_out))
    assert torch.isfinite(out).all() and not torch.equal(out, other)


def test_mlp_matches_manual_forward():
    torch.manual_seed(1)
    model = get_model("mlp", in_features=3, hidden=[5, 4], out_features=2, activation="tanh").double()
    x = torch.randn(7, 3, dtype=torch.float64)
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    h = torch.tanh(x @ lin[0].weight.T + lin[0].bias)
    h = torch.tanh(h @ lin[1].weight.T + lin[1].bias)
    expected = h @ lin[2].weight.T + lin[2].bias
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-12)
    assert [m.out_features for m in lin] == [5, 4, 2]


def _cifar_resnet_params(depth: int, classes: int = 10, projection: bool = False) -> int:
    """Parameter count of He et al.'s CIFAR ResNet from its definition (conv weights, BN gamma/beta)."""
    n = (depth - 2) // 6
    total = 3 * 16 * 9 + 2 * 16  # first conv + BN
    c_in = 16
    for c in (16, 32, 64):
        for b in range(n):
            total += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c
            if projection and b == 0 and c_in != c:
                total += c_in * c + 2 * c  # 1x1 conv + BN
            c_in = c
    return total + 64 * classes + classes


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth,paper_millions", [(20, 0.27), (56, 0.85), (110, 1.7)])
def test_resnet_parameter_counts_match_the_paper(depth, paper_millions):
    he = get_model(f"resnet{depth}", shortcut="pad")  # He et al.'s option A shortcuts
    assert _count(he) == _cifar_resnet_params(depth)
    assert round(_count(he) / 1e6, 2 if depth < 100 else 1) == paper_millions
    # the reference's default (1x1 conv + BN where the shape changes) adds exactly two projections
    ref = get_model(f"resnet{depth}")
    assert _count(ref) == _cifar_resnet_params(depth, projection=True)
    assert abs(_count(ref) - paper_millions * 1e6) / (paper_millions * 1e6) < 0.02
    noshort = get_model(f"resnet{depth}_noshort")
    assert _count(noshort) == _count(he)


def test_noshort_differs_only_in_the_skip_connections():
    torch.manual_seed(0)
    with_skip = get_model("resnet20", shortcut="pad").eval()
    without = get_model("resnet20_noshort").eval()
    # identical parameter names and shapes: the same weights load into both
    assert {k: v.shape for k, v in with_skip.state_dict().items()} == {
        k: v.shape for k, v in without.state_dict().items()
    }
    without.load_state_dict(with_skip.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = with_skip(x), without(x)
    assert not torch.allclose(a, b, atol=1e-3)
    # and with every residual branch's last BN scaled to zero, only the shortcut path carries signal:
    # the no-shortcut net then sees relu(0) = 0 after each block and outputs the bias alone
    with torch.no_grad():
        for net in (with_skip, without):
            for m in net.modules():
                if hasattr(m, "bn2"):
                    m.bn2.weight.zero_()
                    m.bn2.bias.zero_()
        assert torch.allclose(without(x), without.linear.bias.expand(2, 10))
        assert not torch.allclose(with_skip(x), with_skip.linear.bias.expand(2, 10))


def test_reference_state_dict_names():
    """The reference's checkpoints (cifar10/models/resnet.py, vgg.py) use these keys and shapes."""
    sd = get_model("resnet56").state_dict()
    assert sd["conv1.weight"].shape == (16, 3, 3, 3)
    assert sd["layer2.0.shortcut.0.weight"].shape == (32, 16, 1, 1)
    assert sd["layer2.0.shortcut.1.running_var"].shape == (32,)
    assert sd["layer3.8.conv2.weight"].shape == (64, 64, 3, 3)
    assert sd["linear.weight"].shape == (10, 64)
    assert not any("shortcut" in k for k in get_model("resnet56_noshort").state_dict())
    vgg = get_model("vgg9").state_dict()
    assert vgg["features.0.weight"].shape == (64, 3, 3, 3)
    assert vgg["features.1.running_mean"].shape == (64,)
    assert vgg["fc.0.weight"].shape == (256, 256 * 4 * 4)
    assert vgg["fc.1.weight"].shape == (256,)
    assert vgg["classifier.weight"].shape == (10, 256)


def test_user_factory_and_errors(tmp_path, monkeypatch):
    (tmp_path / "my_models_for_lossviz.py").write_text(
        textwrap.dedent(
            """
            import torch.nn as nn
            def tiny(width=3):
                return nn.Linear(2, width)
            def not_a_model():
                return 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    m = get_model("my_models_for_lossviz:tiny", width=5)
    assert isinstance(m, nn.Linear) and m.out_features == 5
    with pytest.raises(TypeError, match=r"not an nn\.Module"):
        get_model("my_models_for_lossviz:not_a_model")
    with pytest.raises(ValueError, match="no attribute 'nope'"):
        get_model("my_models_for_lossviz:nope")
    with pytest.raises(ValueError, match="cannot import"):
        get_model("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="resnet56") as e:
        get_model("resnet57")
    assert "unknown model 'resnet57'" in str(e.value)
    with pytest.raises(ValueError, match="torchvision has no model"):
        get_model("torchvision:not_a_net")
    with pytest.raises(ValueError, match="never downloads"):
        get_model("torchvision:resnet18", weights="DEFAULT")
    with pytest.raises(ValueError, match="bad keyword"):
        get_model("mlp", hiden=3)
    with pytest.raises(ValueError, match="activation"):
        get_model("mlp", activation="swishy")
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(depth=21)
    del sys.modules["my_models_for_lossviz"]


# --- data ------------------------------------------------------------------------------------------


def test_spirals_shapes_determinism_and_geometry():
    assert list_data() == ["cifar10", "digits", "fakedata", "mnist", "spirals", "tinytext", "tinytext_kinds"]
    train, test = get_data("spirals", n=300, n_test=90, k=3)
    X, y = train.tensors
    assert X.shape == (300, 2) and X.dtype == torch.float32
    assert y.shape == (300,) and y.dtype == torch.int64
    assert test.tensors[0].shape == (90, 2)
    assert torch.equal(torch.bincount(y), torch.tensor([100, 100, 100]))
    again, _ = get_data("spirals", n=300, n_test=90, k=3)
    assert torch.equal(again.tensors[0], X) and torch.equal(again.tensors[1], y)
    other, _ = get_data("spirals", n=300, n_test=90, k=3, seed=1)
    assert not torch.equal(other.tensors[0], X)
    assert not torch.equal(test.tensors[0][:90], X[:90])
    # without noise every point lies on its arm: angle = 2π·turns·r + 2πc/k (mod 2π)
    Xc, yc = make_spirals(200, k=2, noise=0.0, turns=1.5, seed=3)
    Xc, yc = Xc.double(), yc.double()
    r = Xc.norm(dim=1)
    angle = torch.atan2(Xc[:, 1], Xc[:, 0])
    resid = angle - (2 * math.pi * 1.5 * r + math.pi * yc)
    wrapped = torch.remainder(resid + math.pi, 2 * math.pi) - math.pi
    assert wrapped.abs().max() < 1e-5
    assert r.max() <= 1.0 + 1e-6


def test_digits_shapes_scaling_and_fixed_split():
    from sklearn.datasets import load_digits

    train, test = get_data("digits")
    X, y = train.tensors
    assert X.shape[1:] == (1, 8, 8) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert len(train) + len(test) == 1797 and len(test) == round(1797 * 0.25)
    assert float(X.min()) == 0.0 and float(X.max()) == 1.0
    flat, flat_test = get_data("digits", flat=True)
    assert flat.tensors[0].shape == (len(train), 64)
    assert torch.equal(flat.tensors[0], X.reshape(-1, 64))
    assert torch.equal(flat_test.tensors[1], test.tensors[1])
    # every row is a scikit-learn digit scaled by 1/16 with its own label; train and test are disjoint
    ref = load_digits()
    lookup = {tuple(row): int(t) for row, t in zip(ref.data / 16.0, ref.target, strict=True)}
    rows = np.concatenate([flat.tensors[0].numpy(), flat_test.tensors[0].numpy()]).astype(np.float64)
    labels = np.concatenate([flat.tensors[1].numpy(), flat_test.tensors[1].numpy()])
    assert all(lookup[tuple(r)] == t for r, t in zip(rows, labels, strict=True))
    train_rows = {tuple(r) for r in flat.tensors[0].numpy()}
    dup_in_sklearn = len(lookup) < 1797  # identical images can appear twice in the data set itself
    overlap = sum(tuple(r) in train_rows for r in flat_test.tensors[0].numpy())
    assert overlap == 0 or dup_in_sklearn


def test_fakedata_shapes_and_determinism():
    train, test = get_data("fakedata", size=6, test_size=3)
    assert len(train) == 6 and len(test) == 3
    x, t = train[2]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= t < 10
    again, _ = get_data("fakedata", size=6, test_size=3)
    assert torch.equal(again[2][0], x) and again[2][1] == t
    assert not torch.equal(test[2][0], x)
    small, _ = get_data("fakedata", size=2, image_size=(1, 8, 8), num_classes=3)
    assert small[0][0].shape == (1, 8, 8)


def test_fake_cifar10_reads_back_through_torchvision(tmp_path):
    from torchvision import datasets

    written = write_fake_cifar10(tmp_path, n_train=13, n_test=4, seed=5)
    files = sorted(p.name for p in (tmp_path / "cifar-10-batches-py").iterdir())
    assert files == ["batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                     "data_batch_5", "test_batch"]
    raw_train, raw_test = get_data("cifar10", tmp_path, verify=False, normalize=False)
    assert isinstance(raw_train, datasets.CIFAR10)
    assert np.array_equal(raw_train.data, written["train_images"])
    assert raw_train.targets == written["train_labels"].tolist()
    assert np.array_equal(raw_test.data, written["test_images"])
    assert raw_test.targets == written["test_labels"].tolist()
    assert raw_train.classes[0] == "airplane" and len(raw_train.classes) == 10
    train, _ = get_data("cifar10", tmp_path, verify=False)
    x, t = train[7]
    pixels = torch.from_numpy(written["train_images"][7]).permute(2, 0, 1).double() / 255.0
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float64)[:, None, None]
    std = torch.tensor(CIFAR10_STD, dtype=torch.float64)[:, None, None]
    torch.testing.assert_close(x.double(), (pixels - mean) / std, rtol=0, atol=1e-5)
    assert t == written["train_labels"][7]
    with pytest.raises(ValueError, match=r"MD5.*verify=False"):
        get_data("cifar10", tmp_path)  # the real checksums do not match fake files


def test_fake_mnist_reads_back_through_torchvision(tmp_path):
    from torchvision import datasets

    written = write_fake_mnist(tmp_path, n_train=9, n_test=4, seed=2)
    direct = datasets.MNIST(str(tmp_path), train=True, download=False)
    assert np.array_equal(direct.data.numpy(), written["train_images"])
    assert np.array_equal(direct.targets.numpy(), written["train_labels"])
    train, test = get_data("mnist", tmp_path)
    assert np.array_equal(test.data.numpy(), written["test_images"])
    assert np.array_equal(test.targets.numpy(), written["test_labels"])
    x, t = train[3]
    assert x.shape == (1, 28, 28)
    pixels = torch.from_numpy(written["train_images"][3]).double() / 255.0
    torch.testing.assert_close(x[0].double(), (pixels - MNIST_MEAN[0]) / MNIST_STD[0], rtol=0, atol=1e-5)
    assert t == written["train_labels"][3]


def test_missing_files_and_unknown_names(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py.*data_batch_1"):
        get_data("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"MNIST.*raw.*train-images-idx3-ubyte"):
        get_data("mnist", tmp_path)
    with pytest.raises(ValueError, match="root"):
        get_data("mnist")
    with pytest.raises(ValueError, match="known data sets: cifar10, digits"):
        get_data("imagenet")
    with pytest.raises(ValueError, match="bad keyword"):
        get_data("spirals", arms=3)


# --- learnable fake CIFAR-10 / MNIST --------------------------------------------------------------


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("write", [write_fake_cifar10, write_fake_mnist], ids=["cifar10", "mnist"])
def test_fake_files_are_fixed_by_the_seed(tmp_path, write):
    for labels in ("learnable", "random"):
        write(tmp_path / labels / "a", n_train=20, n_test=6, seed=3, labels=labels)
        write(tmp_path / labels / "b", n_train=20, n_test=6, seed=3, labels=labels)
        write(tmp_path / labels / "c", n_train=20, n_test=6, seed=4, labels=labels)
        same, again, other = (_files(tmp_path / labels / k) for k in "abc")
        assert len(same) in (4, 7) and same == again
        assert all(same[k] != other[k] for k in same if "meta" not in k)
    # learnable: train and test are different images; the test split does not depend on n_train
    more = write(tmp_path / "more", n_train=30, n_test=6, seed=3)
    learn = write(tmp_path / "learn", n_train=20, n_test=6, seed=3)
    assert np.array_equal(more["test_images"], learn["test_images"])
    assert np.array_equal(more["test_labels"], learn["test_labels"])
    flat_train = {x.tobytes() for x in learn["train_images"]}
    assert not any(x.tobytes() in flat_train for x in learn["test_images"])
    # labels are balanced: 20 images of 10 classes, two each
    assert np.array_equal(np.bincount(learn["train_labels"], minlength=10), np.full(10, 2))


@pytest.mark.parametrize("write,shape", [(write_fake_cifar10, (3, 32, 32)), (write_fake_mnist, (28, 28))],
                         ids=["cifar10", "mnist"])
def test_random_labels_are_the_earlier_uniform_files(tmp_path, write, shape):
    """labels="random": pixels and labels uniform from default_rng(seed), train then test."""
    got = write(tmp_path, n_train=12, n_test=5, seed=9, labels="random")
    rng = np.random.default_rng(9)
    expected = {}
    for split, n in (("train", 12), ("test", 5)):
        images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        expected[f"{split}_labels"] = rng.integers(0, 10, size=n)
        expected[f"{split}_images"] = images.transpose(0, 2, 3, 1) if len(shape) == 3 else images
    for key, value in expected.items():
        assert np.array_equal(got[key], value), key


def _nearest_class_mean_accuracy(train_x, train_y, test_x, test_y) -> float:
    """Fit one mean image per class on the train split; classify test images by the nearest mean."""
    tr = train_x.reshape(len(train_x), -1).astype(np.float64)
    te = test_x.reshape(len(test_x), -1).astype(np.float64)
    means = np.stack([tr[train_y == k].mean(axis=0) for k in range(10)])
    dist = ((te[:, None, :] - means[None]) ** 2).sum(axis=-1)
    return float((dist.argmin(axis=1) == test_y).mean())


@pytest.mark.parametrize("write", [write_fake_cifar10, write_fake_mnist], ids=["cifar10", "mnist"])
def test_default_fake_data_is_learnable_and_random_labels_are_not(tmp_path, write):
    def accuracy(**kw):
        d = write(tmp_path / str(len(list(tmp_path.iterdir()))), n_train=300, n_test=200, seed=0, **kw)
        return _nearest_class_mean_accuracy(d["train_images"], d["train_labels"], d["test_images"], d["test_labels"])

    default, clean, hard = accuracy(), accuracy(noise=0.0), accuracy(noise=3.0)
    random = accuracy(labels="random")
    assert default > 0.5, default  # chance is 0.1
    assert random < 0.25, random
    assert clean > 0.9 and clean > default > hard  # noise sets the difficulty


def test_tiny_cnn_learns_fake_cifar10_through_torchvision(tmp_path):
    """A tiny CNN trained on 300 images read by torchvision's CIFAR10 beats chance on the test split;
    the same training on random labels does not."""
    results = {}
    for labels in ("learnable", "random"):
        write_fake_cifar10(tmp_path / labels, n_train=300, n_test=200, seed=1, labels=labels)
        train, test = get_data("cifar10", tmp_path / labels, verify=False)
        X = torch.stack([train[i][0] for i in range(len(train))])
        y = torch.tensor(train.targets)
        Xt = torch.stack([test[i][0] for i in range(len(test))])
        yt = torch.tensor(test.targets)
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.AvgPool2d(4), nn.Flatten(),
                            nn.Linear(8 * 8 * 8, 10))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(5):
            for idx in torch.randperm(len(y)).split(30):
                loss = nn.functional.cross_entropy(net(X[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            results[labels] = (net(Xt).argmax(1) == yt).double().mean().item()
    assert results["learnable"] > 0.4, results
    assert results["random"] < 0.25, results


def test_fake_data_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"labels must be one of.*'learnable'.*'random'"):
        write_fake_cifar10(tmp_path, labels="shuffled")
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        write_fake_mnist(tmp_path, noise=-1)
    with pytest.raises(ValueError, match="noise must be a finite number"):
        write_fake_mnist(tmp_path, noise="loud")
    with pytest.raises(ValueError, match="max_shift must be an int >= 0"):
        write_fake_cifar10(tmp_path, max_shift=1.5)


def _reference_densenet_shapes(blocks=(6, 12, 24, 16), g=32, num_classes=10) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes of the reference's cifar10/models/densenet.py, written out from its
    layout (a 3x3 stem to 2g, Bottleneck bn1/conv1 (4g, 1x1)/bn2/conv2 (g, 3x3), Transition bn/conv to
    floor(c/2), final bn and linear)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (2 * g, 3, 3, 3)}

    def bn(prefix, c):
        shapes.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                       f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    c = 2 * g
    for stage, n in enumerate(blocks, start=1):
        for i in range(n):
            p = f"dense{stage}.{i}"
            bn(f"{p}.bn1", c)
            shapes[f"{p}.conv1.weight"] = (4 * g, c, 1, 1)
            bn(f"{p}.bn2", 4 * g)
            shapes[f"{p}.conv2.weight"] = (g, 4 * g, 3, 3)
            c += g
        if stage < 4:
            bn(f"trans{stage}.bn", c)
            shapes[f"trans{stage}.conv.weight"] = (c // 2, c, 1, 1)
            c //= 2
    bn("bn", c)
    shapes.update({"linear.weight": (num_classes, c), "linear.bias": (num_classes,)})
    return shapes


def test_densenet121_is_the_references_layout_and_its_checkpoints_load(tmp_path):
    from lossviz.io.checkpoints import load_checkpoint_into

    model = get_model("densenet121")
    want = _reference_densenet_shapes()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == want
    assert list(model.state_dict()) == list(want)  # the same order: the reference's direction lists line up
    assert want["linear.weight"] == (10, 1024) and want["trans3.conv.weight"] == (512, 1024, 1, 1)
    # a checkpoint as the reference saves it (a DataParallel state dict under 'state_dict', no counters)
    torch.manual_seed(1)
    sd = {f"module.{k}": torch.randn(s) for k, s in want.items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": sd, "epoch": 300}, tmp_path / "densenet121.t7")
    load_checkpoint_into(model, tmp_path / "densenet121.t7")
    assert torch.equal(model.linear.weight, sd["module.linear.weight"])
    # a bottleneck puts its new features first: cat([conv2(relu(bn2(conv1(relu(bn1(x)))))), x])
    block = get_model("densenet121").dense1[0].eval()  # fresh BN statistics
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        new = block.conv2(torch.relu(block.bn2(block.conv1(torch.relu(block.bn1(x))))))
        out = block(x)
    assert out.shape == (2, 96, 8, 8) and torch.equal(out[:, :32], new) and torch.equal(out[:, 32:], x)


@pytest.mark.parametrize("name,width,repeats", [("cnn12", 12, 1), ("cnn48", 48, 1), ("cnn96", 96, 1),
                                                ("cnn48x2", 48, 2), ("cnn48x3", 48, 3)])
def test_width_cnn_parameter_counts(name, width, repeats):
    # four stages of `repeats` 3x3 convs (with bias) + BN, widths k, 2k, 4k, 8k; a linear 8k -> 10
    widths = [width * 2**s for s in range(4)]
    count, c_in = 0, 3
    for c in widths:
        for _ in range(repeats):
            count += c_in * c * 9 + c + 2 * c
            c_in = c
    count += 8 * width * 10 + 10
    model = get_model(name)
    assert _count(model) == count
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [c for c in widths for _ in range(repeats)]


def test_cifar10_training_augmentation_is_a_padded_crop_and_flip(tmp_path):
    write_fake_cifar10(tmp_path, n_train=10, n_test=5, seed=2)
    plain_train, plain_test = get_data("cifar10", tmp_path, verify=False)
    aug_train, aug_test = get_data("cifar10", tmp_path, verify=False, augment=True)
    torch.manual_seed(0)
    zero = torch.tensor(CIFAR10_MEAN).view(3, 1, 1).neg() / torch.tensor(CIFAR10_STD).view(3, 1, 1)  # 0 px
    flips, shifts = 0, set()
    for i in range(10):
        img, label = plain_train[i]
        got, got_label = aug_train[i]
        assert got_label == label and got.shape == img.shape
        padded = zero.expand(3, 40, 40).clone()
        padded[:, 4:36, 4:36] = img
        match = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                 if torch.allclose((lambda c: c.flip(-1) if f else c)(padded[:, dy:dy + 32, dx:dx + 32]), got,
                                   atol=1e-6)]
        assert match, f"image {i} is no 4-pixel-padded crop (or its mirror) of the original"
        flips += match[0][2]
        shifts.add(match[0][:2])
    assert 0 < flips < 10 and len(shifts) > 1  # random, not a fixed transform
    for i in range(5):  # the test split is never augmented, and the train split's plain view is not either
        assert torch.equal(aug_test[i][0], plain_test[i][0])
        assert torch.equal(aug_train.plain[i][0], plain_train[i][0])
    torch.manual_seed(5)
    a = aug_train[3][0]
    torch.manual_seed(5)
    assert torch.equal(aug_train[3][0], a)  # drawn from torch's global generator (the training loop seeds it)
