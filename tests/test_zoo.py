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
from lossviz.zoo.models import CifarResNet
from lossviz.zoo.data import CIFAR10_MEAN, CIFAR10_STD, MNIST_MEAN, MNIST_STD

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
    ("torchvision:resnet18", {"num_classes": 3}, (1, 3, 32, 32), 3),
]


def test_every_registered_model_has_a_forward_case():
    assert {name for name, *_ in FORWARD_CASES} >= set(list_models())
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
    with pytest.raises(TypeError, match="not an nn.Module"):
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
    assert list_data() == ["cifar10", "digits", "fakedata", "mnist", "spirals"]
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
    lookup = {tuple(row): int(t) for row, t in zip(ref.data / 16.0, ref.target)}
    rows = np.concatenate([flat.tensors[0].numpy(), flat_test.tensors[0].numpy()]).astype(np.float64)
    labels = np.concatenate([flat.tensors[1].numpy(), flat_test.tensors[1].numpy()])
    assert all(lookup[tuple(r)] == t for r, t in zip(rows, labels))
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
    with pytest.raises(ValueError, match="MD5.*verify=False"):
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
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*data_batch_1"):
        get_data("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match="MNIST.*raw.*train-images-idx3-ubyte"):
        get_data("mnist", tmp_path)
    with pytest.raises(ValueError, match="root"):
        get_data("mnist")
    with pytest.raises(ValueError, match="known data sets: cifar10, digits"):
        get_data("imagenet")
    with pytest.raises(ValueError, match="bad keyword"):
        get_data("spirals", arms=3)
