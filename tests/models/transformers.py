"""Transformer definitions for the head-pruning tests and benchmark (timm-like, no timm).

- :class:`VisionTransformer`: patch embedding (Conv2d), class token (and, for DeiT, a
  distillation token), learned position embedding, pre-norm blocks with a fused q/k/v projection
  reshaped to (3, heads, head_dim) and ``F.scaled_dot_product_attention`` (timm's layout),
  GELU MLP, final LayerNorm, linear head(s) (DeiT averages its two heads in eval mode);
- :class:`SequenceEncoder`: ``nn.TransformerEncoder`` over a sequence-first input (the
  ``batch_first=False`` layout; TorchScript cannot export the batch-first inference fast path,
  ``aten::_native_multi_head_attention``).

Weights are random: ``trunc_normal(std=0.02)`` for linear layers as timm initialises them, and
every parameter distinct (the TorchScript exporter would merge identical initializers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class VisionTransformer(nn.Module):
    def __init__(
        self,
        img: int = 224,
        patch: int = 16,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        classes: int = 1000,
        channels: int = 3,
        distilled: bool = False,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        tokens = (img // patch) ** 2 + (2 if distilled else 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        self.head_dist = nn.Linear(dim, classes) if distilled else None
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.dist_token is not None:
            tokens.append(self.dist_token.expand(x.shape[0], -1, -1))
        x = self.norm(self.blocks(torch.cat([*tokens, x], dim=1) + self.pos_embed))
        if self.head_dist is None:
            return self.head(x[:, 0])
        return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2


class SequenceEncoder(nn.Module):
    """[N, B, d] -> nn.TransformerEncoder -> mean over tokens -> Linear."""

    def __init__(self, d: int = 128, heads: int = 4, layers: int = 2, ff: int = 256) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(0))


def init_weights(module: nn.Module, seed: int = 0) -> None:
    """timm-like random weights, every tensor distinct."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2 or name.endswith(("_token", "pos_embed")):
                p.copy_((torch.randn(p.shape, generator=gen) * 0.02).clamp(-0.04, 0.04))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))


def vit_tiny(**kw: object) -> VisionTransformer:
    return VisionTransformer(dim=192, depth=12, heads=3, **kw)  # type: ignore[arg-type]


def deit_tiny(**kw: object) -> VisionTransformer:
    return VisionTransformer(dim=192, depth=12, heads=3, distilled=True, **kw)  # type: ignore[arg-type]
