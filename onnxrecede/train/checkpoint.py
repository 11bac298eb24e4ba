"""Checkpoints: what they hold, atomic saving, safe loading and rebuilding the model.

A checkpoint is a dict of tensors and plain values, loaded with ``weights_only=True`` so that a
crafted file cannot run code. ``last.pt`` holds everything to resume; ``best.pt`` only the model
chosen on the validation set (both are accepted by ``onnxrecede export``).
"""

from __future__ import annotations

import math
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


def check_arch(arch: Any, source: str = "the checkpoint") -> None:
    """Refuse an ``arch`` entry that no built-in model can be rebuilt from, before building:

    1. a dict with ``model`` (a built-in name), ``num_classes`` (an int >= 1) and ``width``
       (a finite number > 0); ``bn`` absent, ``standard`` or ``bounded``; ``cut`` absent or a
       dict of module path -> list of channel indices;
    2. a model whose parameters would not fit in the available memory (counted on torch's
       ``meta`` device, which allocates nothing).
    """
    from onnxrecede.runtime.memory import check_allocation
    from onnxrecede.train.models import MODELS

    fix = "it is damaged or was not written by `onnxrecede train`"
    if not isinstance(arch, dict):
        raise InputError(f"{source}: 'arch' is {type(arch).__name__}, not a dict; {fix}")
    name, classes, width = arch.get("model"), arch.get("num_classes"), arch.get("width", 1.0)
    if not isinstance(name, str) or name not in MODELS:
        raise InputError(
            f"{source}: arch model {name!r} is not one of {', '.join(MODELS)}; {fix}"[:300]
        )
    if type(classes) is not int or classes < 1:
        raise InputError(f"{source}: arch num_classes {classes!r} is not an int >= 1; {fix}"[:300])
    if not isinstance(width, (int, float)) or isinstance(width, bool):
        raise InputError(f"{source}: arch width {width!r} is not a number; {fix}"[:300])
    if not math.isfinite(width) or width <= 0:
        raise InputError(f"{source}: arch width {width!r} is not a number > 0; {fix}"[:300])
    if arch.get("bn") not in (None, "standard", "bounded"):
        raise InputError(
            f"{source}: arch bn {arch.get('bn')!r} is not standard or bounded; {fix}"[:300]
        )
    cut = arch.get("cut")
    if cut is not None and not (
        isinstance(cut, dict)
        and all(isinstance(k, str) and isinstance(v, list) for k, v in cut.items())
        and all(type(i) is int for v in cut.values() for i in v)
    ):
        raise InputError(f"{source}: arch cut is not a dict of module path -> channel list; {fix}")
    try:
        with torch.device("meta"):
            meta = build_model(name, num_classes=classes, width=float(width))
        count = sum(p.numel() for p in meta.parameters())
    except (RuntimeError, ValueError, OverflowError):
        raise InputError(
            f"{source}: the model ({name}, width {width:g}) is too large to build; {fix}"
        ) from None
    check_allocation(
        count * 4, f"{source}: the model ({name}, width {width:g}, {count} parameters)", fix
    )


def model_from_arch(arch: dict[str, Any], source: str = "the checkpoint") -> nn.Module:
    """An untrained model of the architecture a checkpoint describes (checked first).

    ``arch["cut"]`` (a fine-tuning checkpoint): Conv module path -> removed output channels,
    applied with :func:`onnxrecede.train.cut.apply_module_cut`.
    """
    check_arch(arch, source)
    model = build_model(arch["model"], num_classes=arch["num_classes"], width=float(arch["width"]))
    if arch.get("bn") == "bounded":
        swap_to_bounded(model)
    if arch.get("cut"):
        from onnxrecede.train.cut import apply_module_cut

        apply_module_cut(model, arch["cut"])
    return model


def model_from_checkpoint(ckpt: dict[str, Any], source: str = "the checkpoint") -> nn.Module:
    """The checkpoint's model with its weights; non-finite weights are refused, named."""
    model = model_from_arch(ckpt.get("arch"), source)  # type: ignore[arg-type]
    weights = ckpt.get("model")
    if not isinstance(weights, dict):
        raise InputError(f"{source}: holds no model weights ('model' is not a dict)")
    for key, value in weights.items():
        floating = isinstance(value, torch.Tensor) and value.is_floating_point()
        if floating and not bool(torch.isfinite(value).all()):
            raise InputError(
                f"{source}: weight '{key}' holds NaN or infinity (did training diverge? "
                "export best.pt, or retrain with a lower --lr)"
            )
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, IndexError) as e:
        raise InputError(
            f"{source}: checkpoint weights do not fit its architecture: {e}".splitlines()[0]
        ) from None
    return model.eval()
