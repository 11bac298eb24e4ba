"""A real trained model: a small CNN trained on scikit-learn's bundled digits (offline, ~30 s).

Shows why importances are normalised per node before a global cut: with ``rank`` (the default)
a 5% global L1 cut keeps the accuracy close to the original and takes about 5% of every layer;
raw norms and ``mean`` normalisation concentrate the cut on the layers whose filter norms vary
most (here the first conv) and lose far more accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnxrecede
from onnxrecede.importance.criteria import compute_importances
from onnxrecede.io.model_files import load_model

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
WIDTHS = (32, 64, 128)


def _cnn() -> torch.nn.Module:
    from torch import nn

    def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    a, b, c = WIDTHS
    return nn.Sequential(
        *block(3, a), nn.MaxPool2d(2), *block(a, b), nn.MaxPool2d(2), *block(b, c, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10),
    )  # fmt: skip


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN trained 8 epochs on the digits training split (one thread: deterministic)."""
    from onnxrecede.data.digits import load_digits_split
    from tests.models.export import export_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        net = _cnn()
        x, y = (torch.from_numpy(a) for a in load_digits_split("train"))
        epochs, batch = 8, 64
        opt = torch.optim.SGD(net.parameters(), 0.05, momentum=0.9, nesterov=True)
        steps = epochs * -(-len(x) // batch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps)
        gen = torch.Generator().manual_seed(0)
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
    path = tmp_path_factory.mktemp("digits") / "cnn.onnx"
    return export_model(net.eval(), (1, 3, 32, 32), path, "torchscript")  # BN folded


def _accuracy(model) -> float:
    from onnxrecede.data.digits import load_digits_split
    from onnxrecede.runtime.session import cpu_session

    x, y = load_digits_split("test")
    proto = onnxrecede.io.model_files.ir.to_proto(model) if not isinstance(model, Path) else None
    session = cpu_session(proto.SerializeToString() if proto is not None else str(model), None)
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    return float((logits.argmax(axis=1) == y).mean())


def _cut(path: Path, normalize: str, ratio: float):
    imp = compute_importances(load_model(path), "l1", normalize=normalize).scores
    model, report = onnxrecede.prune(path, {k: v.tolist() for k, v in imp.items()}, ratio=ratio)
    sizes = {k: len(v) for k, v in imp.items()}
    share = {k: len(v) / sizes[k] for k, v in report.removed_channels.items()}
    return _accuracy(model), share


def test_normalised_global_l1_cut_keeps_accuracy(digits_model):
    original = _accuracy(digits_model)
    assert original >= 0.95  # the fixture really trained
    ranked, ranked_share = _cut(digits_model, "rank", 0.05)
    raw, raw_share = _cut(digits_model, "none", 0.05)
    mean, mean_share = _cut(digits_model, "mean", 0.05)
    summary = f"original {original:.3f}, rank {ranked:.3f}, raw {raw:.3f}, mean {mean:.3f}"
    assert ranked >= original - 0.03, summary
    assert max(ranked_share.values()) <= 0.1, ranked_share  # small everywhere
    # contrast: raw norms and mean normalisation cut one layer deep and lose much more
    assert max(raw_share.values()) >= 0.15 and max(mean_share.values()) >= 0.15, (
        raw_share,
        mean_share,
    )
    assert ranked - max(raw, mean) >= 0.1, summary
