"""Optimiser and schedule as the authors set them; every value can be overridden.

Parameter groups:
1. conv and linear weights: lr, weight decay ``weight_decay`` (1e-4);
2. bounded-BN parameters (theta): lr x ``bounded_lr_mult`` (10), weight decay 0;
3. everything else (biases, plain-BN gamma/beta): lr, weight decay ``other_weight_decay``
   (default: the same as conv/linear weights, as in the authors' code where plain BN is not
   singled out).
SGD with momentum 0.9, Nesterov; lr divided by 10 at 50% and 75% of the epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from onnxrecede.train.bounded_bn import bounded_modules


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    other_weight_decay: float | None = None  # None: same as weight_decay
    bounded_lr_mult: float = 10.0
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1


_WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """The three groups described in the module docstring (empty groups are left out)."""
    bounded = {id(p) for _, m in bounded_modules(model) for p in m.parameters(recurse=False)}
    weights = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, _WEIGHT_LAYERS) and isinstance(m.weight, nn.Parameter)
    }
    groups: dict[str, list[nn.Parameter]] = {"weights": [], "bounded_bn": [], "other": []}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        key = "bounded_bn" if id(p) in bounded else "weights" if id(p) in weights else "other"
        groups[key].append(p)
    other_wd = cfg.weight_decay if cfg.other_weight_decay is None else cfg.other_weight_decay
    settings = {
        "weights": {"lr": cfg.lr, "weight_decay": cfg.weight_decay},
        "bounded_bn": {"lr": cfg.lr * cfg.bounded_lr_mult, "weight_decay": 0.0},
        "other": {"lr": cfg.lr, "weight_decay": other_wd},
    }
    return [{"params": ps, "name": name, **settings[name]} for name, ps in groups.items() if ps]


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.SGD:
    return torch.optim.SGD(
        param_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov
    )


def milestone_epochs(epochs: int, fractions: tuple[float, ...]) -> list[int]:
    """Epochs (0-based, at whose start the lr drops) for fractions of the run: 160 -> 80, 120."""
    return sorted({max(1, round(epochs * f)) for f in fractions if round(epochs * f) < epochs})


def make_scheduler(
    optimizer: torch.optim.Optimizer, epochs: int, cfg: OptimConfig
) -> torch.optim.lr_scheduler.MultiStepLR:
    """Stepped once per epoch."""
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=milestone_epochs(epochs, cfg.milestones), gamma=cfg.gamma
    )
