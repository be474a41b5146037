"""The built-in model zoo: small nets for the 8x8 digits, and any torchvision classifier by name.

Architectures are named by a string and built from keyword arguments, so that a checkpoint
can record `arch` and `arch_args` and rebuild the exact same module later:

- `digits-cnn`: `depth` convolution blocks (Conv3x3 - BatchNorm - ReLU, followed by a 2x2
  max-pool while the feature map is at least 4 pixels wide), then `pool` (global average
  pool: the penultimate features, (N, width)) and a linear `head` (the logits). Every
  block is a named top-level child (`block1`, `block2`, ...) of its own class, so the
  default layer selection (extract/layers.py) gives one layer per block: `block1`, ...,
  `pool`, `logits`.
- `digits-mlp`: the input flattened, then `depth` hidden layers (`hidden1`, ...; each
  Linear - ReLU) and a linear `head`: layers `hidden1`, ..., `logits`. `depth=1` is the
  one-hidden-layer net.
- `small-resnet`: a ResNet for small images (He, Zhang, Ren & Sun 2016): a `stem`
  ConvBlock, then `depth` residual blocks `block1`, ... (two Conv3x3-BatchNorm with a ReLU
  between, added to the input, then a ReLU; a 1x1 convolution on the shortcut where the shape
  changes). From `block2` on, a block halves the feature map and doubles the channels while
  the map is at least 8 pixels wide (28 -> 14 -> 7 for MNIST-sized inputs, 32 -> 16 -> 8 -> 4
  for CIFAR), then `pool` and `head` as in digits-cnn.
- `torchvision:NAME`: `torchvision.models.get_model(NAME, weights=None, num_classes=C)`, or
  for a model class of torchvision.models (`torchvision:VisionTransformer`) the class called
  with the architecture arguments (`num_classes=C` and its sizes);
  random weights, nothing is ever downloaded.

Arguments of the built-in nets: `width` (channels or hidden units, default 32), `depth`
(default 3), `num_classes` (10), `in_channels` (1) and `input_size` (8, the side of the
square input image), so the same families also fit MNIST (1, 28) or CIFAR (3, 32).
"""

from __future__ import annotations

import difflib
from collections import OrderedDict

import torch
from torch import nn

from ..errors import InputError
from ..validation import check_positive

ARCHITECTURES: tuple[str, ...] = ("digits-cnn", "digits-mlp", "small-resnet")
"""Names of the built-in architectures; `torchvision:NAME` names any torchvision classifier."""

TORCHVISION_PREFIX = "torchvision:"

DIGITS_DEFAULTS: dict[str, int] = {
    "width": 32,
    "depth": 3,
    "num_classes": 10,
    "in_channels": 1,
    "input_size": 8,
}
"""Default arguments of the built-in architectures (all whole numbers)."""

TORCHVISION_DEFAULT_CLASSES = 1000


class ConvBlock(nn.Sequential):
    """Conv3x3 (no bias) - BatchNorm - ReLU, then a 2x2 max-pool if `pool`: one profile layer.

    A class of its own (not a bare nn.Sequential), so layer selection treats the block as a
    unit and records its output, not the output of each module inside it.
    """

    def __init__(self, in_channels: int, out_channels: int, *, pool: bool) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            bn=nn.BatchNorm2d(out_channels),
            relu=nn.ReLU(),
        )
        if pool:
            layers["pool"] = nn.MaxPool2d(2)
        super().__init__(layers)


class DenseBlock(nn.Sequential):
    """Linear - ReLU: one hidden layer of an MLP, recorded as one layer (see ConvBlock)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(OrderedDict(linear=nn.Linear(in_features, out_features), relu=nn.ReLU()))


class GlobalAvgPool(nn.Module):
    """The mean over all spatial positions: (N, C, H, W) -> (N, C), the penultimate features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class DigitsCNN(nn.Sequential):
    """`depth` ConvBlocks, a GlobalAvgPool `pool` and a linear `head` (see the module docstring).

    A Sequential, so its blocks are top-level children and it scripts and exports as is.
    """

    def __init__(
        self,
        width: int = 32,
        depth: int = 3,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 8,
    ) -> None:
        children: OrderedDict[str, nn.Module] = OrderedDict()
        channels, size = in_channels, input_size
        for index in range(1, depth + 1):
            pool = size >= 4
            children[f"block{index}"] = ConvBlock(channels, width, pool=pool)
            channels, size = width, size // 2 if pool else size
        children["pool"] = GlobalAvgPool()
        children["head"] = nn.Linear(width, num_classes)
        super().__init__(children)


class DigitsMLP(nn.Sequential):
    """Flattened input, `depth` DenseBlocks `hidden1`... and a linear `head`.

    A Sequential whose forward flattens the input first (so no flatten child shows up as a
    layer); it scripts and exports as is.
    """

    def __init__(
        self,
        width: int = 32,
        depth: int = 3,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 8,
    ) -> None:
        children: OrderedDict[str, nn.Module] = OrderedDict()
        features = in_channels * input_size * input_size
        for index in range(1, depth + 1):
            children[f"hidden{index}"] = DenseBlock(features, width)
            features = width
        children["head"] = nn.Linear(width, num_classes)
        super().__init__(children)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        for module in self:
            x = module(x)
        return x


class ResidualBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)): one profile layer of `small-resnet`.

    `conv1` has stride `stride`; the shortcut is the identity when the shape is kept, else a
    strided 1x1 convolution with BatchNorm (ResNet's option B).
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Sequential):
    """A `stem` ConvBlock, `depth` ResidualBlocks, `pool` and `head` (see the module docstring)."""

    def __init__(
        self,
        width: int = 32,
        depth: int = 3,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 8,
    ) -> None:
        children: OrderedDict[str, nn.Module] = OrderedDict(stem=ConvBlock(in_channels, width, pool=False))
        channels, size = width, input_size
        for index in range(1, depth + 1):
            downsample = index >= 2 and size >= 8
            out_channels = channels * 2 if downsample else channels
            children[f"block{index}"] = ResidualBlock(channels, out_channels, stride=2 if downsample else 1)
            channels, size = out_channels, (size + 1) // 2 if downsample else size
        children["pool"] = GlobalAvgPool()
        children["head"] = nn.Linear(channels, num_classes)
        super().__init__(children)


_DIGITS_CLASSES = {"digits-cnn": DigitsCNN, "digits-mlp": DigitsMLP, "small-resnet": SmallResNet}


def torchvision_names() -> list[str]:
    """The classification architectures of torchvision.models (detection and the like excluded)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_class(name: str) -> type | None:
    """A model class of torchvision.models named `name` (`VisionTransformer`, `ResNet`), built
    with the architecture arguments themselves (any size: `torchvision:VisionTransformer` with
    image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim); None otherwise."""
    import torchvision

    cls = getattr(torchvision.models, name, None) if name[:1].isupper() else None
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def _unknown_arch(arch: str) -> InputError:
    if arch.startswith(TORCHVISION_PREFIX):
        name = arch[len(TORCHVISION_PREFIX) :]
        close = difflib.get_close_matches(name, torchvision_names(), n=5, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else "see torchvision.models.list_models()"
        return InputError(
            f"unknown torchvision architecture {name!r} ({hint}); "
            "use torchvision:NAME with a classification model of torchvision.models."
        )
    close = difflib.get_close_matches(arch, list(ARCHITECTURES), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    return InputError(
        f"unknown architecture {arch!r}: {hint}use one of {', '.join(ARCHITECTURES)} or torchvision:NAME."
    )


def architecture_args(arch: str, arch_args: dict | None = None) -> dict:
    """All arguments of `arch`, defaults filled in and values checked (what a checkpoint stores).

    Raises InputError for an unknown architecture, an unknown argument or a bad value.
    """
    given = dict(arch_args or {})
    if arch in _DIGITS_CLASSES:
        unknown = sorted(set(given) - set(DIGITS_DEFAULTS))
        if unknown:
            raise InputError(
                f"{arch} has no argument {unknown[0]!r}; its arguments are {', '.join(DIGITS_DEFAULTS)}."
            )
        full = {**DIGITS_DEFAULTS, **given}
        for name, value in full.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"{arch} argument {name} must be a whole number, got {value!r}.")
            full[name] = check_positive(value, name=name, integer=True)
        return full
    if arch.startswith(TORCHVISION_PREFIX):
        name = arch[len(TORCHVISION_PREFIX) :]
        if name not in torchvision_names() and _torchvision_class(name) is None:
            raise _unknown_arch(arch)
        full = {"num_classes": TORCHVISION_DEFAULT_CLASSES, **given}
        full["num_classes"] = check_positive(full["num_classes"], name="num_classes", integer=True)
        return full
    raise _unknown_arch(arch)


def build_model(arch: str, **arch_args) -> nn.Module:
    """A freshly initialised model of architecture `arch` (weights drawn from torch's global RNG).

    `arch` is a name in ARCHITECTURES or `torchvision:NAME`; `arch_args` override the defaults
    (see `architecture_args`). Seed with `torch.manual_seed` first for reproducible weights.
    """
    full = architecture_args(arch, arch_args)
    if arch in _DIGITS_CLASSES:
        return _DIGITS_CLASSES[arch](**full)
    import torchvision

    name = arch[len(TORCHVISION_PREFIX) :]
    try:
        if (cls := _torchvision_class(name)) is not None:
            return cls(**full)
        return torchvision.models.get_model(name, weights=None, **full)
    except (TypeError, ValueError) as exc:
        raise InputError(f"could not build {arch} with arguments {full}: {exc}") from None


def input_shape(arch: str, arch_args: dict | None = None) -> tuple[int, ...] | None:
    """The (channels, height, width) a model of `arch` expects, or None when it is not fixed."""
    if arch in _DIGITS_CLASSES:
        full = architecture_args(arch, arch_args)
        return (full["in_channels"], full["input_size"], full["input_size"])
    return None
