"""The receding regulariser, the L1 baseline and the importances against their formulas."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from onnxrecede.train.bounded_bn import BoundedBatchNorm2d, swap_to_bounded  # noqa: E402
from onnxrecede.train.models import build_model  # noqa: E402
from onnxrecede.train.regularizer import (  # noqa: E402
    DEFAULT_SHIFT,
    DEFAULT_STRENGTH,
    Regularizer,
    channel_importances,
    prune_scope,
    receding_penalty,
)


def test_defaults_are_the_authors():
    assert DEFAULT_STRENGTH["rni"] == 1e-4
    assert DEFAULT_SHIFT == 3.0


@pytest.mark.parametrize("shift", [0.0, 3.0, -1.5])
def test_penalty_matches_formula(shift):
    theta = torch.linspace(-8, 8, 41, dtype=torch.float64)
    expected = sum(
        s * (1 - math.log(s)) for s in (1 / (1 + math.exp(-(t + shift))) for t in theta.tolist())
    )
    assert float(receding_penalty(theta, shift)) == pytest.approx(expected, rel=1e-12)


def test_gradient_always_lowers_theta():
    theta = torch.linspace(-30, 30, 2001, dtype=torch.float64, requires_grad=True)
    receding_penalty(theta, 0.0).backward()
    g = theta.grad
    assert g is not None and bool((g >= 0).all())
    # dR/dtheta = -s (1 - s) log s
    s = torch.sigmoid(theta.detach())
    assert torch.allclose(g, -s * (1 - s) * torch.log(s), atol=1e-12)
    assert bool((g[theta.detach().abs() < 10] > 0).all())  # strictly positive where finite


def test_push_peaks_near_0236_and_vanishes_at_both_ends():
    theta = torch.linspace(-10, 10, 20001, dtype=torch.float64, requires_grad=True)
    receding_penalty(theta, 0.0).backward()
    g = theta.grad
    assert g is not None
    peak = int(g.argmax())
    assert float(torch.sigmoid(theta.detach()[peak])) == pytest.approx(0.236, abs=0.005)
    assert float(g[peak]) == pytest.approx(0.26, abs=0.01)
    assert float(g[0]) < 1e-3 and float(g[-1]) < 1e-3


def test_shift_moves_the_push_towards_low_importances():
    theta = torch.linspace(-10, 10, 20001, dtype=torch.float64, requires_grad=True)
    receding_penalty(theta, 3.0).backward()
    assert theta.grad is not None
    peak = float(torch.sigmoid(theta.detach()[int(theta.grad.argmax())]))
    assert peak == pytest.approx(1 / (1 + math.exp(-(math.log(0.236 / 0.764) - 3))), abs=0.002)


def test_rni_regulariser_sums_every_bounded_channel():
    model = swap_to_bounded(build_model("vgg16", width=0.125))
    thetas = torch.cat([m.theta for m in model.modules() if isinstance(m, BoundedBatchNorm2d)])
    reg = Regularizer("rni", 1e-3, 3.0)(model)
    assert reg is not None
    assert float(reg.detach()) == pytest.approx(
        1e-3 * float(receding_penalty(thetas.detach(), 3.0)), rel=1e-6
    )
    assert thetas.numel() == sum(
        m.num_features for m in model.modules() if isinstance(m, BoundedBatchNorm2d)
    )


def test_l1_regulariser_and_importances():
    model = build_model("vgg16", width=0.125)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, -1, 1)
    gammas = torch.cat([m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    reg = Regularizer("l1", 1e-4)(model)
    assert reg is not None and float(reg.detach()) == pytest.approx(
        1e-4 * float(gammas.detach().abs().sum()), rel=1e-6
    )
    imps = channel_importances(model, "l1")
    assert torch.equal(torch.cat(list(imps.values())), gammas.detach().abs())
    assert Regularizer("ucs", 0.0)(model) is None
    assert prune_scope("ucs") == "local" and prune_scope("rni") == prune_scope("l1") == "global"


def test_rni_importance_is_sigmoid_theta_without_shift():
    model = swap_to_bounded(build_model("vgg16", width=0.125))
    imps = channel_importances(model, "rni")
    assert list(imps) == model.prune_candidates
    bn = model.features[0].bn
    assert torch.equal(imps["features.0.bn"], torch.sigmoid(bn.theta).detach())


def test_gradient_matches_autograd_of_the_expression():
    theta = torch.randn(50, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: receding_penalty(t, 3.0), (theta,))
