"""Checkpoints: what they hold, atomic saving, safe loading and rebuilding the model.

A checkpoint is a dict of tensors and plain values, loaded with ``weights_only=True`` so that a
crafted file cannot run code. ``last.pt`` holds everything to resume; ``best.pt`` only the model
chosen on the validation set (both are accepted by ``onnxrecede export``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from onnxrecede.errors import InputError
from onnxrecede.io.outputs import atomic_dir
from onnxrecede.train.bounded_bn import swap_to_bounded
from onnxrecede.train.models import build_model

FORMAT = "onnxrecede.train-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    with atomic_dir(path) as tmp:
        part = tmp / Path(path).name
        torch.save({"format": FORMAT, "version": VERSION, **state}, part)
        os.replace(part, path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint not found: {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for foreign or corrupt files
        raise InputError(
            f"{p} is not a readable onnxrecede checkpoint: {e}".splitlines()[0]
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{p} is not an onnxrecede checkpoint (written by `onnxrecede train`)")
    if ckpt.get("version") != VERSION:
        raise InputError(f"{p}: checkpoint version {ckpt.get('version')} is not supported")
    return ckpt


def model_from_arch(arch: dict[str, Any]) -> nn.Module:
    """An untrained model of the architecture a checkpoint describes.

    ``arch["cut"]`` (a fine-tuning checkpoint): Conv module path -> removed output channels,
    applied with :func:`onnxrecede.train.cut.apply_module_cut`.
    """
    model = build_model(
        arch["model"], num_classes=int(arch["num_classes"]), width=float(arch["width"])
    )
    if arch.get("bn") == "bounded":
        swap_to_bounded(model)
    if arch.get("cut"):
        from onnxrecede.train.cut import apply_module_cut

        apply_module_cut(model, arch["cut"])
    return model


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    model = model_from_arch(ckpt["arch"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise InputError(
            f"checkpoint weights do not fit its architecture: {e}".splitlines()[0]
        ) from None
    return model.eval()
