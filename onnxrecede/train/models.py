"""CIFAR models of the paper, with a width multiplier so that they train on a CPU.

1. ``vgg16``: 13 conv3x3 (+BN+ReLU), 4 max-pools (the fifth dropped), AvgPool(2), one Linear.
2. ``resnet56``: stem conv3x3 + BN, three stages of 9 basic blocks (16/32/64 channels, stride 2 at
   stages 2 and 3), option-A shortcut, global average pool, Linear.

The option-A shortcut subsamples with a 1x1 max-pool of stride 2 (the same values as
``x[:, :, ::2, ::2]``) and zero-pads channels with ``F.pad``, so the exported graph holds MaxPool
and Pad rather than strided Slice: ops the pruner analyses.

Each model lists ``prune_candidates``: the BatchNorm layers the authors prune (VGG: all 13;
ResNet-56: the first BN of every block, never the residual stream).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from onnxrecede.errors import InputError

VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)  # fmt: skip


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)


class VGG16(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                cout = scaled(int(v), width)
                layers.append(ConvBNReLU(cin, cout))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2)
        self.classifier = nn.Linear(cin, num_classes)
        self.prune_candidates = [
            f"features.{i}.bn" for i, m in enumerate(layers) if isinstance(m, ConvBNReLU)
        ]
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class _ChannelPad(torch.autograd.Function):
    """Zero-pads the channel axis; exports to TorchScript as one Pad with constant pads.

    TorchScript's own ``F.pad`` export computes the pads at run time (ConstantOfShape, Concat,
    Slice, Transpose, Cast), which constant folding cannot remove; the dynamo exporter does not
    use this class.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:  # type: ignore[override]
        ctx.lo, ctx.c = lo, x.shape[1]
        return F.pad(x, (0, 0, 0, 0, lo, hi))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[no-untyped-def,override]
        return grad[:, ctx.lo : ctx.lo + ctx.c], None, None

    @staticmethod
    def symbolic(g, x, lo: int, hi: int):  # type: ignore[no-untyped-def]
        pads = torch.tensor([0, lo, 0, 0, 0, hi, 0, 0], dtype=torch.int64)
        return g.op("Pad", x, g.op("Constant", value_t=pads), mode_s="constant")


class OptionAShortcut(nn.Module):
    """Strided subsample + zero-padded channels (no parameters)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_lo = (cout - cin) // 2
        self.pad_hi = cout - cin - self.pad_lo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = F.max_pool2d(x, kernel_size=1, stride=self.stride)
        if torch.jit.is_tracing():  # the TorchScript exporter
            out = _ChannelPad.apply(x, self.pad_lo, self.pad_hi)
            assert isinstance(out, torch.Tensor)
            return out
        return F.pad(x, (0, 0, 0, 0, self.pad_lo, self.pad_hi))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = (
            OptionAShortcut(cin, cout, stride) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, depth: int = 56, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise InputError(f"ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        stages = []
        for i, cout in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(cin, cout, stride))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cin, num_classes)
        self.prune_candidates = [f"layer{i + 1}.{j}.bn1" for i in range(3) for j in range(n)]
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(torch.flatten(self.pool(x), 1))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "vgg16": lambda num_classes=10, width=1.0: VGG16(num_classes, width),
    "resnet56": lambda num_classes=10, width=1.0: ResNetCifar(56, num_classes, width),
    "resnet20": lambda num_classes=10, width=1.0: ResNetCifar(20, num_classes, width),
}


def build_model(name: str, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """A built-in model with plain BatchNorm (swap it for the bounded one to train with rni)."""
    if name not in MODELS:
        raise InputError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}")
    if not width > 0:
        raise InputError(f"--width must be positive, got {width}")
    return MODELS[name](num_classes=num_classes, width=width)
