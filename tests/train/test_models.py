"""The paper's CIFAR architectures and the width multiplier."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from onnxrecede.errors import InputError  # noqa: E402
from onnxrecede.train.models import build_model  # noqa: E402


def _bns(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_vgg16_as_in_the_paper():
    model = build_model("vgg16", num_classes=100)
    assert len(_bns(model)) == 13 and sum(m.num_features for m in _bns(model)) == 4224
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
    assert model.classifier.in_features == 512 and model.classifier.out_features == 100
    assert len(model.prune_candidates) == 13


def test_resnet56_as_in_the_paper():
    model = build_model("resnet56")
    blocks = [m for m in model.modules() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 27 and len(_bns(model)) == 55
    assert [
        model.layer1[0].conv1.out_channels,
        model.layer2[0].conv1.out_channels,
        model.layer3[0].conv1.out_channels,
    ] == [16, 32, 64]
    assert len(model.prune_candidates) == 27
    assert all(p.endswith(".bn1") and p.startswith("layer") for p in model.prune_candidates)


@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
@pytest.mark.parametrize("width", [0.125, 0.3])
def test_width_multiplier_forward(name, width):
    model = build_model(name, width=width).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_option_a_shortcut_is_subsample_plus_zero_channels():
    model = build_model("resnet20", width=0.5).eval()
    sc = model.layer2[0].shortcut
    x = torch.randn(1, 8, 16, 16)
    y = sc(x)
    assert y.shape == (1, 16, 8, 8)
    assert torch.equal(y[:, sc.pad_lo : sc.pad_lo + 8], x[:, :, ::2, ::2])
    assert float(y[:, : sc.pad_lo].abs().sum()) == 0.0


def test_unknown_model_and_bad_width():
    with pytest.raises(InputError, match="unknown model"):
        build_model("alexnet")
    with pytest.raises(InputError, match="width"):
        build_model("vgg16", width=0)
