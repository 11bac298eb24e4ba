"""Sparsity regularisers and channel importances of the three methods: rni, l1, ucs.

1. rni: bounded BatchNorm; R = sum_c s_c (1 - log s_c), s_c = sigmoid(theta_c + b);
   importance sigmoid(theta_c) (without b); one global threshold.
2. l1 (network slimming): plain BatchNorm; R = sum_c |gamma_c|; importance |gamma_c|; global.
3. ucs (uniform channel scaling): plain BatchNorm; no regulariser; importance |gamma_c|,
   ranked inside each layer (the pruner's ``scope="local"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from onnxrecede.train.bounded_bn import bounded_modules

MethodName = Literal["rni", "l1", "ucs"]
METHODS: tuple[MethodName, ...] = ("rni", "l1", "ucs")

#: Defaults of the authors' code (lambda, b). Their per-model values are in docs/train.md.
DEFAULT_STRENGTH: dict[str, float] = {"rni": 1e-4, "l1": 1e-4, "ucs": 0.0}
DEFAULT_SHIFT = 3.0


class _RecedingPenalty(torch.autograd.Function):
    """Sum of s (1 - log s) with the closed-form gradient -s (1 - s) log s.

    Autograd through the expression cancels s(1-s) terms and rounds to -1e-16 for large theta;
    the closed form keeps the gradient's sign exact (>= 0) and costs one pass.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        log_s = F.logsigmoid(z)
        s = torch.exp(log_s)
        ctx.save_for_backward(z, s, log_s)
        return (s * (1.0 - log_s)).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        z, s, log_s = ctx.saved_tensors
        return grad * (-(s * torch.sigmoid(-z)) * log_s)


def receding_penalty(theta: torch.Tensor, shift: float = DEFAULT_SHIFT) -> torch.Tensor:
    """R = sum s (1 - log s) with s = sigmoid(theta + shift); log s computed stably.

    dR/dtheta = -s (1 - s) log s >= 0, so gradient descent always lowers theta; the push peaks
    near s = 0.236 and vanishes for s -> 0 and s -> 1.
    """
    out = _RecedingPenalty.apply(theta + shift)
    assert isinstance(out, torch.Tensor)
    return out


def _bn_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine
    ]


@dataclass(frozen=True)
class Regularizer:
    """lambda * R(model) for one method; ``strength == 0`` costs nothing."""

    method: MethodName
    strength: float
    shift: float = DEFAULT_SHIFT

    def __call__(self, model: nn.Module) -> torch.Tensor | None:
        if self.strength == 0.0 or self.method == "ucs":
            return None
        if self.method == "rni":
            thetas: list[torch.Tensor] = [m.theta for _, m in bounded_modules(model)]
            if not thetas:
                return None
            return self.strength * receding_penalty(torch.cat(thetas), self.shift)
        gammas: list[torch.Tensor] = [m.weight for _, m in _bn_layers(model)]
        if not gammas:
            return None
        return self.strength * torch.cat(gammas).abs().sum()


def channel_importances(model: nn.Module, method: MethodName) -> dict[str, torch.Tensor]:
    """Importance vector of every BatchNorm layer, keyed by its module path.

    rni: sigmoid(theta) of the bounded layers; l1 and ucs: |gamma| of the plain ones.
    """
    with torch.no_grad():
        if method == "rni":
            return {n: m.scale().detach().cpu().float() for n, m in bounded_modules(model)}
        return {n: m.weight.detach().abs().cpu().float() for n, m in _bn_layers(model)}


def prune_scope(method: MethodName) -> Literal["global", "local"]:
    """How the pruner should rank this method's importances."""
    return "local" if method == "ucs" else "global"
