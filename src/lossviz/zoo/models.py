"""Models by name: small nets for quick experiments and the CIFAR-10 architectures of Li et al. 2018.

``get_model("resnet56")`` builds the CIFAR ResNet-56 of He et al. exactly as the reference
implementation (``tomgoldstein/loss-landscape``, ``cifar10/models/resnet.py``) lays it out: same module
names, so the reference's state dicts load into ours; ``"densenet121"`` is the reference's CIFAR
DenseNet-121 (``cifar10/models/densenet.py``; torchvision's ImageNet one is ``"torchvision:densenet121"``).
``"cnn12"`` ... ``"cnn96"``, ``"cnn48x2"``, ``"cnn48x3"`` are the width-k CNNs (:class:`WidthCNN`).
``"gpt"`` is a small GPT for the tinytext corpus (:class:`lossviz.zoo.language.TinyGPT`: token ids in,
logits (B, T, V) out); ``"hf_gpt2"`` and ``"hf_bert"`` are Hugging Face models built from a config
(:mod:`lossviz.zoo.hf`, random weights).
``"torchvision:<name>"`` builds any torchvision
model (never with pretrained weights: nothing is downloaded) and ``"package.module:factory"`` calls a
user's own factory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP",
    "MODELS",
    "VGG",
    "BasicBlock",
    "CifarDenseNet",
    "CifarResNet",
    "LeNet",
    "SmallCNN",
    "WidthCNN",
    "get_model",
    "list_models",
]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
}


def _activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}: use one of {', '.join(sorted(_ACTIVATIONS))}"
        ) from None


class MLP(nn.Module):
    """Fully connected net ``in -> hidden[0] -> ... -> out`` with an activation between layers.

    Inputs of any shape ``(B, ...)`` are flattened to ``(B, in_features)`` first, so the same MLP
    takes 2-D points or small images.
    """

    def __init__(
        self,
        in_features: int = 2,
        hidden: Sequence[int] | int = (32, 32),
        out_features: int = 2,
        activation: str = "relu",
    ):
        super().__init__()
        hidden = (hidden,) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
        sizes = (int(in_features), *hidden, int(out_features))
        if any(s < 1 for s in sizes):
            raise ValueError(f"MLP layer sizes must be positive, got {sizes}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(_activation(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class LeNet(nn.Module):
    """LeNet-5: two 5x5 convolutions with max pooling, then 120 -> 84 -> classes.

    ``in_channels=1, input_size=28`` for MNIST, ``in_channels=3, input_size=32`` for CIFAR-10.
    """

    def __init__(self, in_channels: int = 1, input_size: int = 28, num_classes: int = 10):
        super().__init__()
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"LeNet needs inputs of at least 12x12 pixels, got input_size={input_size}")
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class SmallCNN(nn.Module):
    """A cheap conv net with BatchNorm: ``[conv3x3 -> BN -> ReLU -> maxpool] x depth``, global average
    pooling, linear classifier. Channels ``width, 2*width, 4*width, ...``; any input size >= 2^(depth-1).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 16, depth: int = 2):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"SmallCNN needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(depth):
            c_out = width * 2**i
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
            if i < depth - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.mean(dim=(2, 3))
        return self.classifier(x)


_VGG_CFG: dict[str, list[int | str]] = {
    "vgg9": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """The reference's CIFAR VGG: conv3x3-BN-ReLU blocks with max pooling, one hidden FC layer with
    BatchNorm, and a linear classifier (module names ``features``, ``fc``, ``classifier`` as there)."""

    def __init__(
        self,
        cfg: str | Sequence[int | str] = "vgg9",
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        width: float = 1.0,
    ):
        super().__init__()
        if isinstance(cfg, str):
            if cfg not in _VGG_CFG:
                raise ValueError(f"unknown VGG config {cfg!r}: use one of {sorted(_VGG_CFG)}")
            cfg = _VGG_CFG[cfg]
        layers: list[nn.Module] = []
        size = int(input_size)
        c_in = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                size = -(-size // 2)
            else:
                c_out = max(1, round(int(v) * float(width)))
                layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c_in * size * size, c_in), nn.BatchNorm1d(c_in), nn.ReLU())
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        return self.classifier(self.fc(x))


class _PadShortcut(nn.Module):
    """He et al.'s option A: identity on subsampled features, zero-padded to the new channel count
    (no parameters)."""

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra = extra_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    ``shortcut``: ``"conv"`` (the reference's: identity, or a 1x1 conv + BN where the shape changes),
    ``"pad"`` (He et al.'s option A: identity or zero padding, no parameters), or ``"none"`` (no
    skip connection: the reference's ``BasicBlock_noshortcut``).
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "conv"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.use_shortcut = shortcut != "none"
        self.shortcut: nn.Module
        if shortcut == "none":
            pass
        elif stride == 1 and in_planes == planes:
            self.shortcut = nn.Sequential()
        elif shortcut == "conv":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        elif shortcut == "pad":
            self.shortcut = _PadShortcut(planes - in_planes, stride)
        else:
            raise ValueError(f"unknown shortcut {shortcut!r}: use 'conv', 'pad' or 'none'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.use_shortcut:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. (depth ``6n+2``): a 3x3 conv with 16 channels, three stages of
    ``n`` basic blocks with ``16, 32, 64`` channels (times ``width``), global average pooling, linear.
    Module names follow the reference (``conv1, bn1, layer1..3, linear``)."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        shortcut: str = "conv",
        width: int = 1,
        in_channels: int = 3,
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.in_planes = 16 * width
        self.conv1 = nn.Conv2d(in_channels, 16 * width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16 * width)
        self.layer1 = self._make_layer(16 * width, n, 1, shortcut)
        self.layer2 = self._make_layer(32 * width, n, 2, shortcut)
        self.layer3 = self._make_layer(64 * width, n, 2, shortcut)
        self.linear = nn.Linear(64 * width, num_classes)

    def _make_layer(self, planes: int, n: int, stride: int, shortcut: str) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(BasicBlock(self.in_planes, planes, s, shortcut))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = out.mean(dim=(2, 3))  # the reference's avg_pool2d(out, 8) on 32x32 inputs
        return self.linear(out)


class DenseBottleneck(nn.Module):
    """DenseNet-BC layer: ``BN -> ReLU -> conv1x1 (4g) -> BN -> ReLU -> conv3x3 (g)``, its ``g`` new
    feature maps put in front of its input's (``cat([new, x])``, the reference's order)."""

    def __init__(self, in_planes: int, growth_rate: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([new, x], 1)


class DenseTransition(nn.Module):
    """Between dense stages: ``BN -> ReLU -> conv1x1 -> 2x2 average pooling``."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class CifarDenseNet(nn.Module):
    """The CIFAR DenseNet-BC of the reference (``cifar10/models/densenet.py``, Huang et al. 2017 with
    a 3x3 stem): a conv to ``2g`` channels, four dense stages of ``blocks`` bottlenecks joined by
    transitions that keep ``floor(reduction * channels)``, BN-ReLU, 4x4 average pooling on 32x32
    inputs (global here), linear. Module names ``conv1, dense1..4, trans1..3, bn, linear`` as there,
    built in the same order, so the reference's checkpoints load and its seeded draws line up.
    DenseNet-121: ``blocks=(6, 12, 24, 16)``, ``growth_rate=32``."""

    def __init__(self, blocks: Sequence[int] = (6, 12, 24, 16), growth_rate: int = 32, reduction: float = 0.5,
                 num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1 or growth_rate < 1:
            raise ValueError(f"CifarDenseNet needs four stages of >= 1 blocks and growth_rate >= 1, got "
                             f"blocks={list(blocks)}, growth_rate={growth_rate}")
        self.growth_rate = growth_rate
        self.reduction = reduction
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, padding=1, bias=False)
        # built stage by stage in the reference's order (its seeded initialization draws line up)
        self.dense1, planes = self._dense(planes, blocks[0])
        self.trans1, planes = self._transition(planes)
        self.dense2, planes = self._dense(planes, blocks[1])
        self.trans2, planes = self._transition(planes)
        self.dense3, planes = self._dense(planes, blocks[2])
        self.trans3, planes = self._transition(planes)
        self.dense4, planes = self._dense(planes, blocks[3])
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def _dense(self, planes: int, n: int) -> tuple[nn.Sequential, int]:
        g = self.growth_rate
        return nn.Sequential(*[DenseBottleneck(planes + i * g, g) for i in range(n)]), planes + n * g

    def _transition(self, planes: int) -> tuple[DenseTransition, int]:
        out_planes = int(planes * self.reduction)
        return DenseTransition(planes, out_planes), out_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.trans1(self.dense1(out))
        out = self.trans2(self.dense2(out))
        out = self.trans3(self.dense3(out))
        out = F.relu(self.bn(self.dense4(out)))
        return self.linear(out.mean(dim=(2, 3)))  # the reference's avg_pool2d(out, 4) on 32x32 inputs


class WidthCNN(nn.Module):
    """The width-``k`` CNN family (CNN-12/24/36/48/96; FlowEr's zoo, whose source is not at hand: built as
    the 5-layer CNN of Nakkiran et al. 2019, "Deep Double Descent"): four stages of 3x3 conv-BN-ReLU with
    ``k, 2k, 4k, 8k`` channels, ``repeats`` convs per stage (CNN-48x2, CNN-48x3), 2x2 max pooling after
    stages 2-4, global max pooling, linear."""

    def __init__(self, width: int = 48, repeats: int = 1, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if width < 1 or repeats < 1:
            raise ValueError(f"WidthCNN needs width >= 1 and repeats >= 1, got width={width}, repeats={repeats}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for stage in range(4):
            c_out = width * 2**stage
            for _ in range(repeats):
                layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
            if stage > 0:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).amax(dim=(2, 3)))


# --- builders ------------------------------------------------------------------------------------


def _mlp(**kw) -> nn.Module:
    return MLP(**kw)


def _lenet(**kw) -> nn.Module:
    return LeNet(**kw)


def _cnn(**kw) -> nn.Module:
    return SmallCNN(**kw)


def _vgg(cfg: str) -> Callable[..., nn.Module]:
    def build(**kw) -> nn.Module:
        return VGG(cfg, **kw)

    build.__doc__ = f"The reference's {cfg.upper()} for CIFAR-10."
    return build


def _resnet(depth: int, noshort: bool) -> Callable[..., nn.Module]:
    def build(**kw) -> nn.Module:
        if noshort:
            if kw.get("shortcut", "none") != "none":
                raise ValueError(f"resnet{depth}_noshort has no shortcuts; drop shortcut={kw['shortcut']!r}")
            kw["shortcut"] = "none"
        return CifarResNet(depth, **kw)

    return build


def _densenet(blocks: tuple[int, ...], growth_rate: int) -> Callable[..., nn.Module]:
    def build(**kw) -> nn.Module:
        return CifarDenseNet(blocks, growth_rate, **kw)

    build.__doc__ = f"The reference's CIFAR DenseNet, blocks {blocks}, growth rate {growth_rate}."
    return build


def _width_cnn(width: int, repeats: int = 1) -> Callable[..., nn.Module]:
    def build(**kw) -> nn.Module:
        return WidthCNN(width, repeats, **kw)

    build.__doc__ = f"CNN-{width}" + (f"x{repeats}" if repeats > 1 else "") + " (see WidthCNN)."
    return build


def _gpt(**kw) -> nn.Module:
    from lossviz.zoo.language import TinyGPT

    return TinyGPT(**kw)


def _hf(name: str) -> Callable[..., nn.Module]:
    def build(**kw) -> nn.Module:
        from lossviz.zoo import hf

        return getattr(hf, name)(**kw)

    build.__doc__ = f"lossviz.zoo.hf.{name} (needs transformers)."
    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _mlp,
    "lenet": _lenet,
    "cnn": _cnn,
    "vgg9": _vgg("vgg9"),
    "vgg16": _vgg("vgg16"),
    "resnet20": _resnet(20, False),
    "resnet56": _resnet(56, False),
    "resnet110": _resnet(110, False),
    "resnet20_noshort": _resnet(20, True),
    "resnet56_noshort": _resnet(56, True),
    "resnet110_noshort": _resnet(110, True),
    "densenet121": _densenet((6, 12, 24, 16), 32),
    "densenet_cifar": _densenet((6, 12, 24, 16), 12),
    **{f"cnn{k}": _width_cnn(k) for k in (12, 24, 36, 48, 96)},
    "cnn48x2": _width_cnn(48, 2),
    "cnn48x3": _width_cnn(48, 3),
    "gpt": _gpt,
    "hf_gpt2": _hf("hf_gpt2"),
    "hf_bert": _hf("hf_bert"),
}
"""Model builders by name; ``get_model(name, **kwargs)`` calls ``MODELS[name](**kwargs)``."""


def list_models() -> list[str]:
    """The registered names (plus the ``torchvision:<name>`` and ``module:factory`` forms)."""
    return sorted(MODELS)


def _known() -> str:
    return ", ".join(list_models()) + ", 'torchvision:<name>', 'package.module:factory'"


def _torchvision_model(name: str, kwargs: dict) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models()
    if name not in available:
        raise ValueError(
            f"torchvision has no model {name!r}; some it has: {', '.join(sorted(available)[:12])}, ..."
        )
    if kwargs.get("weights") is not None:
        raise ValueError("lossviz never downloads weights: drop weights=..., load a checkpoint instead")
    kwargs = {k: v for k, v in kwargs.items() if k != "weights"}
    return torchvision.models.get_model(name, weights=None, **kwargs)


def _factory_model(spec: str, kwargs: dict) -> nn.Module:
    from lossviz.zoo.factory import import_factory

    factory = import_factory(spec, "model", "an nn.Module")
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {spec!r}: the factory returned {type(model).__name__}, not an nn.Module")
    return model


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name.

    ``name`` is a key of :data:`MODELS` (see :func:`list_models`), ``"torchvision:<name>"`` (any
    ``torchvision.models`` builder, ``weights=None``), or ``"package.module:factory"`` (a callable
    returning an ``nn.Module``). ``kwargs`` go to the builder, e.g. ``num_classes=100``, ``width=2``,
    ``hidden=(64, 64)``. Unknown names raise ``ValueError`` listing the known ones.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string; known: {_known()}")
    if name.startswith("torchvision:"):
        return _torchvision_model(name.split(":", 1)[1], dict(kwargs))
    key = name.lower()
    if key in MODELS:
        try:
            return MODELS[key](**kwargs)
        except TypeError as e:
            raise ValueError(f"model {name!r}: bad keyword arguments {kwargs} ({e})") from None
    if ":" in name:
        return _factory_model(name, dict(kwargs))
    raise ValueError(f"unknown model {name!r}; known models: {_known()}")
