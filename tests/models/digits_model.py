"""A small CNN (plain BatchNorm) trained for a few seconds on scikit-learn's digits, exported to
ONNX with BatchNorm folded into the convs: a real trained model for the cut-quality tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from tests.models.export import _quiet

WIDTHS = (16, 32, 32, 64)
POOL_AFTER = (0, 1)  # 32x32 -> 16x16 -> 8x8
SEED = 0


def build() -> nn.Module:
    layers: list[nn.Module] = []
    cin = 3
    for i, w in enumerate(WIDTHS):
        layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
        if i in POOL_AFTER:
            layers.append(nn.MaxPool2d(2))
        cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def train(epochs: int = 10, batch: int = 64) -> nn.Module:
    """Plain training (AdamW, weight decay 5e-4, one-cycle schedule, random shifts of up to 2
    pixels), fixed seed."""
    from onnxrecede.data.digits import load_digits_split

    torch.manual_seed(SEED)
    x, y = (torch.from_numpy(a) for a in load_digits_split("train"))
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, 3e-3, total_steps=epochs * (-(-len(x) // batch))
    )
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch):
            idx = perm[start : start + batch]
            xb = nn.functional.pad(x[idx], (2, 2, 2, 2))
            dy, dx = torch.randint(0, 5, (2,), generator=gen).tolist()
            xb = xb[:, :, dy : dy + 32, dx : dx + 32]
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def export(model: nn.Module, path: Path) -> Path:
    """TorchScript export, eval mode: BatchNorm folded into the convs; dynamic batch."""
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        )  # fmt: skip
    proto = onnx.load(str(path))
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    return path


def l1_importances(path: Path) -> dict[str, list[float]]:
    """Filter L1 norm of every Conv's output channels, keyed by node name."""
    proto = onnx.load(str(path))
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    return {
        n.name: np.abs(weights[n.input[1]])
        .reshape(weights[n.input[1]].shape[0], -1)
        .sum(1)
        .tolist()
        for n in proto.graph.node
        if n.op_type == "Conv"
    }
