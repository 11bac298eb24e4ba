"""Bounded BatchNorm: scale = sigmoid(theta), no shift; and swapping it in and out of any model.

The forward pass is written with ``F.batch_norm(weight=sigmoid(theta), bias=None)`` so that it
is an ordinary BatchNorm to every exporter. :func:`to_standard_batchnorm` goes further and turns
it into an ``nn.BatchNorm`` with weight = sigmoid(theta) and bias = 0, the same function in eval
mode, which exporters fold into the preceding convolution like any BatchNorm.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

InitMode = Literal["random", "pretrained"]

#: clamp of |gamma| / max|gamma| before the logit, in the pretrained initialisation.
PRETRAINED_CLAMP = (0.01, 0.99)


class _BoundedBatchNorm(nn.Module):
    """y_c = sigmoid(theta_c) * (x_c - mu_c) / sqrt(var_c + eps); no shift term.

    Running statistics, momentum and eps behave exactly as in ``nn.BatchNorm``.
    theta is drawn from N(0, 1) at construction.
    """

    _expected_dim: int = 0

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.theta = nn.Parameter(torch.empty(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.running_mean.zero_()  # type: ignore[operator]
        self.running_var.fill_(1.0)  # type: ignore[operator]
        self.num_batches_tracked.zero_()  # type: ignore[operator]
        nn.init.normal_(self.theta, 0.0, 1.0)

    def scale(self) -> torch.Tensor:
        """The bounded scale sigmoid(theta), which is also the channel importance."""
        return torch.sigmoid(self.theta)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        allowed = (2, 3) if self._expected_dim == 1 else (self._expected_dim + 2,)
        if x.dim() not in allowed:
            raise ValueError(
                f"{type(self).__name__} expects a {' or '.join(f'{d}D' for d in allowed)} input, "
                f"got {x.dim()}D"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)  # type: ignore[operator]
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm
                factor = 1.0 / float(self.num_batches_tracked.item())  # type: ignore[operator]
        return F.batch_norm(
            x,
            self.running_mean,  # type: ignore[arg-type]
            self.running_var,  # type: ignore[arg-type]
            weight=torch.sigmoid(self.theta),
            bias=None,
            training=self.training,
            momentum=factor,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BoundedBatchNorm1d(_BoundedBatchNorm):
    _expected_dim = 1


class BoundedBatchNorm2d(_BoundedBatchNorm):
    _expected_dim = 2


class BoundedBatchNorm3d(_BoundedBatchNorm):
    _expected_dim = 3


_TO_BOUNDED: dict[type[nn.Module], type[_BoundedBatchNorm]] = {
    nn.BatchNorm1d: BoundedBatchNorm1d,
    nn.BatchNorm2d: BoundedBatchNorm2d,
    nn.BatchNorm3d: BoundedBatchNorm3d,
}
_TO_STANDARD: dict[type[nn.Module], type[nn.modules.batchnorm._BatchNorm]] = {
    BoundedBatchNorm1d: nn.BatchNorm1d,
    BoundedBatchNorm2d: nn.BatchNorm2d,
    BoundedBatchNorm3d: nn.BatchNorm3d,
}


def is_bounded(module: nn.Module) -> bool:
    return isinstance(module, _BoundedBatchNorm)


def bounded_modules(model: nn.Module) -> list[tuple[str, _BoundedBatchNorm]]:
    """Every bounded BatchNorm of ``model`` with its module path, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _BoundedBatchNorm)]


def _pretrained_theta(gamma: torch.Tensor) -> torch.Tensor:
    mag = gamma.detach().abs().float()
    top = float(mag.max()) if mag.numel() else 0.0
    ratio = mag / top if top > 0 else torch.full_like(mag, 0.5)
    s = ratio.clamp(*PRETRAINED_CLAMP)
    return torch.log(s) - torch.log1p(-s)


def _fold_into_running_stats(
    bn: nn.modules.batchnorm._BatchNorm, s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Running statistics that make s * xhat' equal |gamma| * xhat + beta in eval mode.

    s (x - mu') / sigma' = |g| (x - mu) / sigma + beta  holds for  sigma' = sigma s / |g|  and
    mu' = mu - beta sigma / |g|. It is exact while sigma'^2 >= eps; channels with gamma = 0 keep
    their statistics (their output is beta, a constant, which the bounded BN cannot produce).
    """
    assert bn.running_mean is not None and bn.running_var is not None
    g = bn.weight.detach().abs().float()
    beta = bn.bias.detach().float() if bn.bias is not None else torch.zeros_like(g)
    mu, var = bn.running_mean.float(), bn.running_var.float()
    sigma = torch.sqrt(var + bn.eps)
    ok = g > 0
    g_safe = torch.where(ok, g, torch.ones_like(g))
    new_sigma = sigma * s / g_safe
    new_var = (new_sigma.square() - bn.eps).clamp_min(0.0)
    new_mu = mu - beta * sigma / g_safe
    inexact = int((ok & (new_sigma.square() < bn.eps)).sum()) + int((~ok).sum())
    if inexact:
        log.info("pretrained swap: %d channel(s) cannot keep their exact eval-mode output", inexact)
    return torch.where(ok, new_mu, mu), torch.where(ok, new_var, var)


def _to_bounded(bn: nn.modules.batchnorm._BatchNorm, init: InitMode, fold: bool) -> nn.Module:
    cls = _TO_BOUNDED[type(bn)]
    new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum)
    if bn.running_mean is not None and bn.running_var is not None:
        new.running_mean.copy_(bn.running_mean)  # type: ignore[operator]
        new.running_var.copy_(bn.running_var)  # type: ignore[operator]
    if bn.num_batches_tracked is not None:
        new.num_batches_tracked.copy_(bn.num_batches_tracked)  # type: ignore[operator]
    if init == "pretrained" and bn.affine:
        theta = _pretrained_theta(bn.weight)
        with torch.no_grad():
            new.theta.copy_(theta)
            if fold and bn.running_mean is not None:
                mu, var = _fold_into_running_stats(bn, torch.sigmoid(theta))
                new.running_mean.copy_(mu)  # type: ignore[operator]
                new.running_var.copy_(var)  # type: ignore[operator]
    new.train(bn.training)
    return new.to(device=_device_of(bn))


def _to_standard(bn: _BoundedBatchNorm) -> nn.Module:
    cls = _TO_STANDARD[type(bn)]
    new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum)
    with torch.no_grad():
        new.weight.copy_(torch.sigmoid(bn.theta))
        new.bias.zero_()
        new.running_mean.copy_(bn.running_mean)  # type: ignore[union-attr,arg-type]
        new.running_var.copy_(bn.running_var)  # type: ignore[union-attr,arg-type]
        new.num_batches_tracked.copy_(bn.num_batches_tracked)  # type: ignore[union-attr,arg-type]
    new.train(bn.training)
    return new.to(device=_device_of(bn))


def _device_of(module: nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def _replace(model: nn.Module, want: tuple[type[nn.Module], ...], make) -> int:  # type: ignore[no-untyped-def]
    count = 0
    for name, child in model.named_children():
        if type(child) in want:
            setattr(model, name, make(child))
            count += 1
        else:
            count += _replace(child, want, make)
    return count


def swap_to_bounded(
    model: nn.Module, init: InitMode = "random", fold_shift: bool = True
) -> nn.Module:
    """Replace every ``nn.BatchNorm1d/2d/3d`` of ``model`` (in place) with its bounded version.

    ``init="random"`` (training from scratch): theta ~ N(0, 1); running statistics are kept.

    ``init="pretrained"``: theta = logit(clamp(|gamma| / max|gamma|, 0.01, 0.99)) per layer, so the
    importance ranking inside a layer starts as the |gamma| ranking. What this does to the
    function: (1) the layer's overall scale max|gamma| is dropped; after a ReLU the next
    BatchNorm renormalises it away, so only a BN feeding an Add or the classifier changes scale;
    (2) the sign of a negative gamma is lost; (3) beta is dropped, which no fold can undo in
    training mode. With ``fold_shift`` (default), (1) and (3) are folded into the running
    statistics, so the model in eval mode computes |gamma| xhat + beta exactly right after the
    swap; training mode normalises with batch statistics and the fold fades as they update.
    Fine-tune to recover. Returns ``model``.
    """
    n = _replace(model, tuple(_TO_BOUNDED), lambda bn: _to_bounded(bn, init, fold_shift))
    log.debug("swapped %d BatchNorm layer(s) for bounded ones (init=%s)", n, init)
    return model


def swap_to_standard(model: nn.Module) -> nn.Module:
    """Replace every bounded BatchNorm with an ``nn.BatchNorm`` computing the same function.

    weight = sigmoid(theta), bias = 0, running statistics copied: outputs are unchanged in eval
    and in training mode. This is what the exporter sees. Returns ``model``.
    """
    _replace(model, tuple(_TO_STANDARD), _to_standard)
    return model
