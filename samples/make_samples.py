"""Write the sample model and importances in samples/ (run once, outputs are committed).

    python samples/make_samples.py [--out samples]

Writes ``resnet_small.onnx`` (a CIFAR-shaped ResNet with one squeeze-excitation block, exported
with the dynamo exporter, BatchNorm fused into Conv, one self-contained file) and
``resnet_small.imp.json`` (synthetic bimodal importances keyed by BatchNorm module path).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

SEED = 0
INPUT_SHAPE = (1, 3, 32, 32)
LOW_FRACTION = 0.3


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 conv reduce -> ReLU -> 1x1 conv expand -> Sigmoid gate."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN, optional SE, identity or strided 1x1 conv+BN shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1, se: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se: nn.Module = SqueezeExcite(cout, cout // 4) if se else nn.Identity()
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + self.downsample(x))


class ResNetSmall(nn.Module):
    """3 stages (16, 32, 64 channels; 2, 1, 1 blocks), SE in the last block, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, stride=2))
        self.layer3 = nn.Sequential(BasicBlock(32, 64, stride=2, se=True))
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_model() -> ResNetSmall:
    """Seeded model with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(SEED)
    model = ResNetSmall()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
    return model.eval()


def export_onnx(model: nn.Module, path: Path) -> None:
    """Dynamo export (optimize=True), then re-saved as one self-contained file."""
    sink = io.StringIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with (
        torch.no_grad(),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(INPUT_SHAPE),),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["input"],
            output_names=["logits"],
        )
    proto = onnx.load(str(path))
    onnx.save(proto, str(path), save_as_external_data=False)
    data = Path(str(path) + ".data")
    if data.exists():
        os.remove(data)


def bimodal_importances(model: nn.Module, seed: int = SEED) -> dict[str, list[float]]:
    """Per BatchNorm: most channels near 0.9-1.0, about LOW_FRACTION near 0.0-0.05."""
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            high = rng.uniform(0.9, 1.0, c)
            low = rng.uniform(0.0, 0.05, c)
            values = np.where(rng.random(c) < LOW_FRACTION, low, high)
            scores[name] = [round(float(v), 6) for v in values]
    return scores


def write_importances(scores: dict[str, list[float]], path: Path) -> None:
    doc = {
        "format": "onnxrecede.importances",
        "version": 1,
        "producer": {"tool": "samples/make_samples.py", "note": "synthetic bimodal importances"},
        "importances": scores,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def check_against_torch(model: nn.Module, path: Path) -> float:
    """Max absolute difference between ONNX Runtime and torch on a random input."""
    x = np.random.default_rng(1).standard_normal(INPUT_SHAPE).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": x})
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    return float(np.abs(y - expected).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    model = build_model()
    onnx_path = args.out / "resnet_small.onnx"
    export_onnx(model, onnx_path)
    onnx.checker.check_model(str(onnx_path), full_check=True)
    diff = check_against_torch(model, onnx_path)
    if diff > 1e-4:
        raise SystemExit(f"exported model differs from torch by {diff:.2e}")
    write_importances(bimodal_importances(model), args.out / "resnet_small.imp.json")
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {onnx_path} ({params} parameters, max diff vs torch {diff:.1e})")


if __name__ == "__main__":
    main()
