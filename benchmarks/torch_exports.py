"""Real torch exports for the benchmarks: VGG-16-BN (timm-style 7x7-conv classifier head) and
ResNet-50, defined here (no torchvision, no timm, no downloads), random weights, exported with
``torch.onnx.export`` by either exporter (``dynamo=False``: TorchScript; ``dynamo=True``).

Both exporters run in eval mode, so BatchNorm is folded into the convolutions as the exporter
decides (TorchScript folds it; the dynamo exporter's optimiser too); each exporter's default
weight storage is kept (the dynamo exporter writes ``MODEL.onnx.data`` beside the model).

Usage: ``python benchmarks/torch_exports.py OUT_DIR [NAME ...]`` with NAME among
``vgg16bn-ts vgg16bn-dynamo resnet50-ts resnet50-dynamo``; needs torch (and onnxscript for the
dynamo exporter).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from onnxrecede.train.models import VGG16_CFG, ConvBNReLU

#: VGG-16 convolution widths; "M" is a 2x2 max pool (the CIFAR layout plus the fifth pool).
VGG16 = (*VGG16_CFG, "M")


class ConvMlp(nn.Module):
    """timm's VGG ``pre_logits``: a 7x7 conv to 4096, ReLU, dropout, a 1x1 conv, ReLU."""

    def __init__(self, cin: int = 512, width: int = 4096, kernel: int = 7) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(cin, width, kernel, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.0)
        self.fc2 = nn.Conv2d(width, width, 1, bias=True)
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.fc2(self.drop(self.act1(self.fc1(x)))))


class VGG16BN(nn.Module):
    """VGG-16 with BatchNorm and timm's conv classifier head (138M parameters, ~553 MB)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in VGG16:
            layers.append(nn.MaxPool2d(2, 2) if item == "M" else ConvBNReLU(cin, int(item)))
            cin = cin if item == "M" else int(item)
        self.features = nn.Sequential(*layers)
        self.pre_logits = ConvMlp(512, 4096, 7)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4096, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.pre_logits(self.features(x)))
        return self.fc(torch.flatten(x, 1))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 (25.6M parameters, ~102 MB)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        stages = []
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * 4
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


ARCHS = {"vgg16bn": VGG16BN, "resnet50": ResNet50}
EXPORTERS = {"ts": False, "dynamo": True}
NAMES = tuple(f"{a}-{e}" for a in ARCHS for e in EXPORTERS)


def build(arch: str, seed: int = 0) -> nn.Module:
    """``arch`` with seeded random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = ARCHS[arch]()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def export(name: str, path: Path, seed: int = 0) -> Path:
    """Export the model ``name`` (``ARCH-EXPORTER``) to ``path`` as the exporter does by default."""
    arch, exporter = name.split("-")
    model = build(arch, seed)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.onnx.export(
            model, (x,), str(path), dynamo=EXPORTERS[exporter], input_names=["input"],
            output_names=["logits"], opset_version=18,
        )  # fmt: skip
    return path


def l1_importances(path: Path) -> dict[str, list[float]]:
    """L1 norms of the output-channel filters of every Conv/Gemm with an initializer weight,
    keyed by node name (read from the exported file, as a user's criterion would)."""
    model = onnx.load(str(path))
    weights = {t.name: t for t in model.graph.initializer}
    out: dict[str, list[float]] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2:
            continue
        tensor = weights.get(node.input[1])
        if tensor is None:
            continue
        w = onnx.numpy_helper.to_array(tensor, base_dir=str(path.parent))
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            w = w if trans_b else w.T
        out[node.name] = np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).astype(float).tolist()
    return out


def main(argv: Sequence[str]) -> int:
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name in argv[1:] or NAMES:
        path = export(name, folder / f"{name}.onnx")
        (folder / f"{name}.imp.json").write_text(json.dumps(l1_importances(path)))
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
