"""The trained digits CNNs the tests prune, committed beside this script with fixed weights.

A trained model's accuracy after a cut depends on the CPU's kernels (the same seed trains a
different model on an Intel and an AMD machine), so the tests never train: they prune these
files, whose weights are the same everywhere. Regenerate (needs torch and scikit-learn) with::

    python -m tests.data.digits_models          # rewrites tests/data/digits_*.onnx

and review the accuracies the tests then measure. ``benchmarks/normalisation.py`` trains the
policy CNN with other seeds through :func:`train_policy_cnn`.

1. ``digits_policy_cnn.onnx`` (tests/policy/test_digits.py): conv widths 32/64/128, SGD with
   Nesterov momentum, one-cycle schedule, 8 epochs, one thread, seed 0; BatchNorm folded.
2. ``digits_quality_cnn.onnx`` (tests/quality): ``tests.quality.digits_model`` (widths
   16/32/32/64, AdamW, random shifts), 10 epochs, one thread; BatchNorm folded, dynamic batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent
POLICY_CNN = DATA / "digits_policy_cnn.onnx"
QUALITY_CNN = DATA / "digits_quality_cnn.onnx"
POLICY_WIDTHS = (32, 64, 128)


def _policy_net() -> Any:
    from torch import nn

    def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    a, b, c = POLICY_WIDTHS
    return nn.Sequential(
        *block(3, a), nn.MaxPool2d(2), *block(a, b), nn.MaxPool2d(2), *block(b, c, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10),
    )  # fmt: skip


def train_policy_cnn(seed: int = 0, epochs: int = 8, batch: int = 64) -> Any:
    """The policy CNN trained on the digits training split (one thread), in eval mode."""
    import torch

    from onnxrecede.digits import load_digits_split

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        net = _policy_net()
        x, y = (torch.from_numpy(a) for a in load_digits_split("train"))
        opt = torch.optim.SGD(net.parameters(), 0.05, momentum=0.9, nesterov=True)
        steps = epochs * -(-len(x) // batch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps)
        gen = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch):
                idx = perm[i : i + batch]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def export_policy_cnn(net: Any, path: Path) -> Path:
    """TorchScript export with BatchNorm folded into the convs (batch 1)."""
    from tests.models.export import export_model

    return export_model(net, (1, 3, 32, 32), path, "torchscript")


def train_quality_cnn() -> Any:
    import torch

    from tests.quality.digits_model import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train()
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    from tests.quality.digits_model import export

    tmp = POLICY_CNN.with_suffix(".tmp.onnx")
    export_policy_cnn(train_policy_cnn(), tmp).replace(POLICY_CNN)
    tmp = QUALITY_CNN.with_suffix(".tmp.onnx")
    export(train_quality_cnn(), tmp).replace(QUALITY_CNN)
    for path in (POLICY_CNN, QUALITY_CNN):
        print(f"wrote {path.relative_to(DATA.parent.parent)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
