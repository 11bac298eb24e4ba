"""Bounded BatchNorm: its formula, the swap both ways, the pretrained initialisation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from onnxrecede.train.bounded_bn import (  # noqa: E402
    BoundedBatchNorm1d,
    BoundedBatchNorm2d,
    BoundedBatchNorm3d,
    bounded_modules,
    swap_to_bounded,
    swap_to_standard,
)
from onnxrecede.train.models import build_model  # noqa: E402


def _rand_stats(model: nn.Module, gen: torch.Generator, signed: bool = False) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            lo = -1.0 if signed else 0.05
            m.weight.data.copy_(torch.rand(n, generator=gen) * (1.5 - lo) + lo)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.3)


def test_formula_and_theta_init():
    torch.manual_seed(0)
    bn = BoundedBatchNorm2d(64)
    assert not hasattr(bn, "bias") or getattr(bn, "bias", None) is None
    theta = bn.theta.detach()
    assert abs(float(theta.mean())) < 0.4 and 0.7 < float(theta.std()) < 1.3
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.eval()
    x = torch.randn(4, 64, 5, 5)
    rm, rv = bn.running_mean.view(1, -1, 1, 1), bn.running_var.view(1, -1, 1, 1)
    s = torch.sigmoid(bn.theta).view(1, -1, 1, 1)
    assert torch.allclose(bn(x), s * (x - rm) / torch.sqrt(rv + 1e-5), atol=1e-6)


@pytest.mark.parametrize(
    ("cls", "ref", "shape"),
    [
        (BoundedBatchNorm1d, nn.BatchNorm1d, (8, 6)),
        (BoundedBatchNorm1d, nn.BatchNorm1d, (8, 6, 5)),
        (BoundedBatchNorm2d, nn.BatchNorm2d, (8, 6, 4, 4)),
        (BoundedBatchNorm3d, nn.BatchNorm3d, (8, 6, 2, 3, 3)),
    ],
)
def test_training_statistics_as_batchnorm(cls, ref, shape):
    torch.manual_seed(1)
    b, r = cls(6), ref(6)
    with torch.no_grad():
        r.weight.copy_(torch.sigmoid(b.theta))
        r.bias.zero_()
    for _ in range(3):
        x = torch.randn(*shape)
        assert torch.allclose(b(x), r(x), atol=1e-5)
    assert torch.allclose(b.running_mean, r.running_mean)
    assert torch.allclose(b.running_var, r.running_var)
    assert int(b.num_batches_tracked) == 3


def test_wrong_rank_is_rejected():
    with pytest.raises(ValueError, match="4D"):
        BoundedBatchNorm2d(3)(torch.randn(2, 3))


@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
def test_swap_then_swap_back_keeps_outputs(name):
    gen = torch.Generator().manual_seed(2)
    model = build_model(name, width=0.25)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    swap_to_bounded(model)
    assert len(bounded_modules(model)) == n_bn
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    x = torch.randn(3, 3, 32, 32, generator=gen)
    model.eval()
    with torch.no_grad():
        for _, bn in bounded_modules(model):
            bn.running_mean.normal_(0, 0.2)
            bn.running_var.uniform_(0.5, 2)
        y_bounded = model(x)
        swap_to_standard(model)
        assert not bounded_modules(model)
        assert torch.allclose(model(x), y_bounded, atol=1e-5)
    # training mode too (batch statistics)
    model.train()
    m2 = swap_to_bounded(build_model(name, width=0.25)).train()
    y2 = m2(x)
    swap_to_standard(m2)
    assert torch.allclose(m2(x), y2, atol=1e-5)


def test_swap_in_any_module():
    model = nn.Sequential(
        nn.Linear(4, 6),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2)),
    )
    swap_to_bounded(model)
    assert isinstance(model[1], BoundedBatchNorm1d) and isinstance(model[3][1], BoundedBatchNorm3d)


def test_pretrained_init_theta_and_eval_function():
    gen = torch.Generator().manual_seed(3)
    model = build_model("vgg16", width=0.25)
    _rand_stats(model, gen)
    model.eval()
    x = torch.randn(4, 3, 32, 32, generator=gen)
    with torch.no_grad():
        before = model(x)
    gamma = model.features[0].bn.weight.detach().clone()
    swap_to_bounded(model, init="pretrained")
    bn0 = model.features[0].bn
    ratio = (gamma.abs() / gamma.abs().max()).clamp(0.01, 0.99)
    assert torch.allclose(torch.sigmoid(bn0.theta), ratio, atol=1e-5)
    with torch.no_grad():
        after = model(x)
    # positive gammas: the eval-mode function is kept exactly by the fold into running stats
    assert torch.allclose(after, before, atol=1e-3, rtol=1e-3)


def test_pretrained_init_without_fold_drops_shift_and_scale():
    gen = torch.Generator().manual_seed(4)
    bn = nn.BatchNorm2d(5).eval()
    _rand_stats(nn.Sequential(bn), gen)
    seq = swap_to_bounded(nn.Sequential(bn), init="pretrained", fold_shift=False).eval()
    x = torch.randn(2, 5, 3, 3, generator=gen)
    s = torch.sigmoid(seq[0].theta).view(1, -1, 1, 1)
    xhat = (x - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        bn.running_var.view(1, -1, 1, 1) + bn.eps
    )
    assert torch.allclose(seq(x), s * xhat, atol=1e-5)
