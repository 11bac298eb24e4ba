"""Optimiser groups and schedule as the authors set them."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from onnxrecede.train.bounded_bn import bounded_modules, swap_to_bounded  # noqa: E402
from onnxrecede.train.models import build_model  # noqa: E402
from onnxrecede.train.optim import (  # noqa: E402
    OptimConfig,
    make_optimizer,
    make_scheduler,
    milestone_epochs,
)


def _groups(opt):
    return {g["name"]: g for g in opt.param_groups}


def test_groups_for_rni():
    model = swap_to_bounded(build_model("resnet20", width=0.25))
    opt = make_optimizer(model, OptimConfig())
    assert isinstance(opt, torch.optim.SGD)
    g = _groups(opt)
    for grp in opt.param_groups:
        assert grp["momentum"] == 0.9 and grp["nesterov"] is True
    assert g["weights"]["lr"] == 0.1 and g["weights"]["weight_decay"] == 1e-4
    assert g["bounded_bn"]["lr"] == pytest.approx(1.0) and g["bounded_bn"]["weight_decay"] == 0.0
    thetas = {id(m.theta) for _, m in bounded_modules(model)}
    assert {id(p) for p in g["bounded_bn"]["params"]} == thetas
    convs = {
        id(m.weight) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    }
    assert {id(p) for p in g["weights"]["params"]} == convs
    assert sum(len(grp["params"]) for grp in opt.param_groups) == len(list(model.parameters()))


def test_plain_bn_gets_the_same_lr_and_wd_as_the_rest():
    opt = make_optimizer(build_model("vgg16", width=0.125), OptimConfig())
    g = _groups(opt)
    assert "bounded_bn" not in g
    assert g["other"]["lr"] == 0.1 and g["other"]["weight_decay"] == 1e-4


def test_every_value_can_be_overridden():
    model = swap_to_bounded(build_model("vgg16", width=0.125))
    cfg = OptimConfig(
        lr=0.02,
        momentum=0.5,
        nesterov=False,
        weight_decay=5e-4,
        other_weight_decay=0.0,
        bounded_lr_mult=3.0,
    )
    g = _groups(make_optimizer(model, cfg))
    assert g["weights"]["lr"] == 0.02 and g["weights"]["weight_decay"] == 5e-4
    assert g["bounded_bn"]["lr"] == pytest.approx(0.06)
    assert g["other"]["weight_decay"] == 0.0
    assert g["weights"]["momentum"] == 0.5 and g["weights"]["nesterov"] is False


def test_schedule_divides_by_ten_at_half_and_three_quarters():
    assert milestone_epochs(160, (0.5, 0.75)) == [80, 120]
    model = build_model("vgg16", width=0.125)
    opt = make_optimizer(model, OptimConfig())
    sched = make_scheduler(opt, 8, OptimConfig())
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
