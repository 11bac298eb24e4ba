"""Small torch architectures for pruning tests, each with what a correct pruner must find.

Every ``build()`` seeds torch, so two builds hold identical weights; BatchNorm layers get
random running statistics and affine parameters (a wrong slice then shows numerically) and
the module is returned in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tests.models.expect import Expect
from tests.models.transformers import SequenceEncoder as _SequenceEncoder
from tests.models.transformers import VisionTransformer

SEED = 0


@dataclass(frozen=True)
class ZooModel:
    """A registry entry: how to build the module, its input shape and the expectation."""

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    expect: Expect


# ----------------------------------------------------------------------------- helpers


def randomise_norms(module: nn.Module, seed: int = SEED) -> None:
    """Give every BatchNorm non-trivial running stats and affine parameters."""
    gen = torch.Generator().manual_seed(seed + 1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)


def _seeded(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """Wrap a module factory: seed, build, randomise norms, eval mode."""

    def build() -> nn.Module:
        torch.manual_seed(SEED)
        module = factory()
        randomise_norms(module)
        return module.eval()

    build.__name__ = getattr(factory, "__name__", "build")
    build.__doc__ = factory.__doc__
    return build


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


def conv_bn_relu(
    cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(*conv_bn(cin, cout, k, stride, groups), nn.ReLU())


def conv_act(cin: int, cout: int, fused: bool) -> nn.Sequential:
    """3x3 conv + ReLU, with a BatchNorm module unless ``fused`` (then the conv has a bias)."""
    if fused:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=True), nn.ReLU())
    return conv_bn_relu(cin, cout)


class Head(nn.Module):
    """Global average pool, flatten, linear classifier."""

    def __init__(self, cin: int, classes: int = 10) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


# ----------------------------------------------------------------------------- VGG, flatten heads


class VggChain(nn.Module):
    """conv x4 (two MaxPools) -> Flatten -> Linear -> ReLU -> Linear; input 3x16x16."""

    def __init__(self, fused: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_act(3, 8, fused),
            conv_act(8, 8, fused),
            nn.MaxPool2d(2),
            conv_act(8, 16, fused),
            conv_act(16, 16, fused),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class FlattenGemmHead(nn.Module):
    """Strided conv stack -> torch.flatten -> Linear with no pooling; input 3x16x16."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(3, 8, stride=2)
        self.conv2 = conv_bn_relu(8, 12, stride=2)
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv2(self.conv1(x)), 1))


# ----------------------------------------------------------------------------- ResNets


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN; identity shortcut, or strided 1x1 conv+BN when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module = (
            conv_bn(cin, cout, k=1, stride=stride) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand; strided 1x1 downsample when the shape changes."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.reduce = conv_bn_relu(cin, mid, k=1)
        self.conv = conv_bn_relu(mid, mid, k=3, stride=stride)
        self.expand = conv_bn(mid, cout, k=1)
        self.downsample: nn.Module = (
            conv_bn(cin, cout, k=1, stride=stride) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.conv(self.reduce(x)))
        return F.relu(out + self.downsample(x))


class ResNetBasic(nn.Module):
    """Stem + 2 identity basic blocks + 1 strided block with 1x1 downsample; input 3x16x16."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = BasicBlock(8, 16, stride=2)
        self.head = Head(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer2(self.layer1(self.stem(x))))


class ResNetBottleneck(nn.Module):
    """Stem + identity bottleneck + strided bottleneck with 1x1 downsample; input 3x16x16."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 16)
        self.layer1 = Bottleneck(16, 4, 16)
        self.layer2 = Bottleneck(16, 8, 32, stride=2)
        self.head = Head(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer2(self.layer1(self.stem(x))))


class OptionABlock(nn.Module):
    """CIFAR basic block with option-A shortcut: subsample, zero-pad the channel axis."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, stride=stride)
        self.conv2 = conv_bn(cout, cout)
        self.pad = (cout - cin) // 2
        self.stride = stride

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetOptionA(nn.Module):
    """resnet56-style (one block per stage), widths 8/16/32, option-A shortcuts; input 3x16x16."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8)
        self.layer1 = OptionABlock(8, 8)
        self.layer2 = OptionABlock(8, 16, stride=2)
        self.layer3 = OptionABlock(16, 32, stride=2)
        self.head = Head(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))


# ----------------------------------------------------------------------------- MobileNetV2, SE


class InvertedResidual(nn.Module):
    """1x1 expand + ReLU6, depthwise 3x3 + ReLU6, 1x1 project; residual when shapes agree."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            *conv_bn(cin, hidden, k=1),
            nn.ReLU6(),
            *conv_bn(hidden, hidden, k=3, stride=stride, groups=hidden),
            nn.ReLU6(),
            *conv_bn(hidden, cout, k=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2Block(nn.Module):
    """Stem, residual inverted block, strided block, residual block, 1x1 conv, head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 8), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(8, 8, expand=4, stride=1),
            InvertedResidual(8, 16, expand=3, stride=2),
            InvertedResidual(16, 16, expand=2, stride=1),
        )
        self.last = nn.Sequential(*conv_bn(16, 32, k=1), nn.ReLU6())
        self.head = Head(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.blocks(self.stem(x))))


class SEConvGate(nn.Module):
    """Squeeze-excitation with 1x1 convs: pool -> conv -> ReLU -> conv -> Sigmoid."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))


class SELinearGate(nn.Module):
    """Squeeze-excitation with Linear layers: pool -> flatten -> Linear x2 -> view(N,C,1,1)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, reduced)
        self.fc2 = nn.Linear(reduced, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        s = torch.flatten(self.pool(x), 1)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * gate.view(n, c, 1, 1)


class SENet(nn.Module):
    """conv+BN+ReLU -> SE gate -> conv+BN+ReLU -> head; input 3x16x16."""

    def __init__(self, linear: bool) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(3, 16)
        self.se: nn.Module = SELinearGate(16, 4) if linear else SEConvGate(16, 4)
        self.conv2 = conv_bn_relu(16, 16, stride=2)
        self.head = Head(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv2(self.se(self.conv1(x))))


# ----------------------------------------------------------------------------- concat, U-Net


class DenseNetConcat(nn.Module):
    """Dense block of 3 layers (each cats its input with 4 new channels), transition, head."""

    def __init__(self, stem: int = 8, growth: int = 4, layers: int = 3) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, stem)
        self.dense = nn.ModuleList(conv_bn_relu(stem + i * growth, growth) for i in range(layers))
        self.transition = nn.Sequential(
            *conv_bn_relu(stem + layers * growth, 12, k=1), nn.AvgPool2d(2)
        )
        self.head = Head(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.dense:
            x = torch.cat([x, layer(x)], dim=1)
        return self.head(self.transition(x))


class UNetDecoder(nn.Module):
    """2-level encoder; ConvTranspose up in one level, nearest Upsample in the other; 2-ch map."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = conv_bn_relu(3, 8)
        self.enc2 = conv_bn_relu(8, 16)
        self.mid = conv_bn_relu(16, 16)
        self.up1 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec1 = conv_bn_relu(8 + 16, 16)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = conv_bn_relu(16 + 8, 8)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d1 = self.dec1(torch.cat([self.up1(m), e2], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d1), e1], dim=1))
        return self.out(d2)


# ----------------------------------------------------------------------------- reshapes, splits


class ChannelShuffle(nn.Module):
    """conv -> reshape(N,g,C/g,H,W) -> transpose(1,2) -> reshape(N,C,H,W) -> conv -> head."""

    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups
        self.conv1 = conv_bn_relu(3, 8)
        self.conv2 = conv_bn_relu(8, 16)
        self.head = Head(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        n, c, h, w = x.shape
        x = x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        x = x.reshape(n, c, h, w)
        return self.head(self.conv2(x))


class GroupedConv(nn.Module):
    """conv -> grouped conv (groups=2, not depthwise) x2 -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8)
        self.g1 = conv_bn_relu(8, 16, groups=2)
        self.g2 = conv_bn_relu(16, 16, groups=2)
        self.head = Head(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.g2(self.g1(self.stem(x))))


class ChannelsLastMLP(nn.Module):
    """ConvNeXt-like: patchify, NHWC LayerNorm -> Linear -> GELU -> Linear, residual, 1x1 conv."""

    def __init__(self, dim: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.patchify = nn.Conv2d(3, dim, 2, stride=2)
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.post = conv_bn_relu(dim, 24, k=1)
        self.head = Head(24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patchify(x)
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y))))
        return self.head(self.post(x + y.permute(0, 3, 1, 2)))


class SplitBlock(nn.Module):
    """conv -> torch.chunk(2, dim=1) -> two conv branches -> cat -> conv -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 16)
        self.left = conv_bn_relu(8, 8)
        self.right = conv_bn_relu(8, 12)
        self.fuse = conv_bn_relu(20, 16, k=1)
        self.head = Head(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(self.stem(x), 2, dim=1)
        return self.head(self.fuse(torch.cat([self.left(a), self.right(b)], dim=1)))


class PReluPad(nn.Module):
    """conv+BN -> per-channel PReLU -> spatial F.pad -> valid conv -> PReLU -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_bn(3, 8)
        self.act1 = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=0)
        self.act2 = nn.PReLU(16)
        self.head = Head(16)
        with torch.no_grad():
            self.act1.weight.uniform_(0.05, 0.5)
            self.act2.weight.uniform_(0.05, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.act1(self.conv1(x)), (1, 1, 1, 1))
        return self.head(self.act2(self.conv2(x)))


# ----------------------------------------------------------------------------- registry


def _entry(
    name: str,
    factory: Callable[[], nn.Module],
    expect: Expect,
    input_shape: tuple[int, ...] = (1, 3, 16, 16),
) -> ZooModel:
    return ZooModel(name=name, build=_seeded(factory), input_shape=input_shape, expect=expect)


def _ok(note: str) -> Expect:
    return Expect(prunable=True, note=note)


def _transformer(note: str) -> Expect:
    """The residual stream is blocked by LayerNorm; heads and MLP hidden channels prune
    (with the exporters that keep Linear weights constant)."""
    return Expect(
        prunable=True,
        barrier_ops=frozenset({"LayerNormalization"}) if "Encoder" not in note else frozenset(),
        note=note,
        unscored_with=frozenset({"dynamo_noopt", "torchscript_bn"}),
    )


def _vit(distilled: bool = False) -> nn.Module:
    return VisionTransformer(
        img=16, patch=4, dim=32, depth=2, heads=4, mlp_ratio=2.0, classes=10, distilled=distilled
    )


def SequenceEncoder() -> nn.Module:  # noqa: N802 (a factory named like the module it builds)
    return _SequenceEncoder(d=32, heads=4, layers=2, ff=64)


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in [
        _entry(
            "vgg_chain_bn", VggChain, _ok("chain with BN; flatten->Gemm columns in blocks of 16")
        ),
        _entry(
            "vgg_chain_fused",
            lambda: VggChain(fused=True),
            _ok("as vgg_chain_bn but conv+bias, no BN module"),
        ),
        _entry("resnet_basic", ResNetBasic, _ok("identity adds couple stem+layer1 outputs")),
        _entry(
            "resnet_bottleneck", ResNetBottleneck, _ok("bottleneck inner channels freely prunable")
        ),
        _entry(
            "mobilenetv2_block",
            MobileNetV2Block,
            _ok("depthwise couples in/out; expand channels prunable"),
        ),
        _entry("se_block", lambda: SENet(linear=False), _ok("SE with 1x1 convs; Mul couples gate")),
        _entry(
            "se_block_linear",
            lambda: SENet(linear=True),
            _ok("SE with Linear + view(N,C,1,1) -> Mul"),
        ),
        _entry("densenet_concat", DenseNetConcat, _ok("concat offsets into transition conv")),
        _entry(
            "unet_decoder",
            UNetDecoder,
            _ok("ConvTranspose, Resize, skip concats; output conv (2 ch) not prunable"),
        ),
        _entry("flatten_gemm_head", FlattenGemmHead, _ok("flatten without pooling, blocks of 16")),
        _entry(
            "channel_shuffle",
            ChannelShuffle,
            Expect(
                prunable=True,
                barrier_ops=frozenset({"Reshape"}),
                note="channels into the shuffle are blocked; conv2 outputs prunable",
            ),
        ),
        _entry("grouped_conv", GroupedConv, _ok("groups=2 conv: prune evenly per group")),
        _entry(
            "channels_last_mlp",
            ChannelsLastMLP,
            Expect(
                prunable=True,
                barrier_ops=frozenset({"LayerNormalization"}),
                note="LN blocks dim; MLP hidden prunable where the weight is constant; post conv",
            ),
        ),
        _entry("split_block", SplitBlock, _ok("chunk on channel axis, branches, cat")),
        _entry("prelu_pad", PReluPad, _ok("per-channel PReLU slope; spatial Pad passes channels")),
        _entry(
            "resnet56_optionA",
            ResNetOptionA,
            _ok("option-A shortcut: Slice + Pad on the channel axis (index map or barrier)"),
        ),
        _entry("vit_small_heads", _vit, _transformer("timm-like ViT, fused qkv: heads and MLPs")),
        _entry(
            "deit_small_heads",
            lambda: _vit(distilled=True),
            _transformer("DeiT-like: distillation token, two heads averaged"),
        ),
        _entry(
            "transformer_encoder",
            SequenceEncoder,
            _transformer("nn.TransformerEncoder (MultiheadAttention), sequence first"),
            input_shape=(6, 2, 32),
        ),
    ]
}
