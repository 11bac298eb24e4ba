"""Fine-tune after a cut: carry an ONNX prune report back to a checkpoint's model and retrain it.

1. load the checkpoint (``best.pt`` or ``last.pt`` of ``onnxrecede train``, or of an earlier
   fine-tune) and rebuild its model;
2. apply the report's cut with :func:`onnxrecede.train.cut.apply_cut`, using the node -> module
   mapping of the importances file the export wrote (the file given to ``prune``);
3. train with the regulariser off and the authors' schedule (everything overridable through the
   :class:`TrainConfig`), with progress, checkpoints, resume and DDP exactly as ``train``;
   with ``epochs=0`` nothing is trained: the cut model is written as it is;
4. the checkpoints record the cut in ``arch["cut"]`` (module path -> removed channels, composed
   with any earlier cut) so that ``onnxrecede export`` and a further fine-tune rebuild the model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from onnxrecede.errors import InputError
from onnxrecede.io.outputs import atomic_write_text
from onnxrecede.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from onnxrecede.train.cut import (
    ModuleCut,
    apply_module_cut,
    load_json_arg,
    module_cut,
    node_modules_of,
    removed_channels_of,
)
from onnxrecede.train.data import load_data
from onnxrecede.train.loop import ProgressFn, TrainConfig, TrainResult, evaluate, fit, pick_device
from onnxrecede.train.models import build_model

log = logging.getLogger(__name__)


@dataclass
class CutSource:
    """Where a fine-tune's cut comes from."""

    checkpoint: str
    report: str | None
    importances: str | None
    removed: int  # channels removed by this cut


def compose_cuts(arch: dict[str, Any], old: ModuleCut, new: ModuleCut) -> ModuleCut:
    """A cut of an already cut model, as removed channels of the original model."""
    base = build_model(arch["model"], int(arch["num_classes"]), float(arch["width"]))
    out: ModuleCut = {}
    for path in sorted(set(old) | set(new)):
        width = int(base.get_submodule(path).out_channels)  # type: ignore[arg-type]
        gone_old = set(old.get(path, []))
        kept = [i for i in range(width) if i not in gone_old]
        more = new.get(path, [])
        if any(j >= len(kept) for j in more):
            raise InputError(f"the report removes channels of '{path}' beyond its current width")
        out[path] = sorted(gone_old | {kept[j] for j in more})
    return out


def checkpoint_data(ckpt: dict[str, Any]) -> str:
    """The ``--data`` source the checkpoint was trained on (a fine-tune's default)."""
    old = ckpt.get("config", {})
    source = old.get("data", "synthetic") if isinstance(old, dict) else "synthetic"
    return str(source)


def finetune_config(ckpt: dict[str, Any], **overrides: Any) -> TrainConfig:
    """The fine-tune's TrainConfig: the checkpoint's model, method and data; regulariser off;
    the authors' schedule (160 epochs, batch 64, lr 0.1 /10 at 50 % and 75 %), then overrides."""
    old = ckpt.get("config", {})
    arch = ckpt["arch"]
    cfg = TrainConfig(
        model=arch["model"],
        method=ckpt.get("method", old.get("method", "rni")),
        data=checkpoint_data(ckpt),
        width=float(arch["width"]),
        strength=0.0,
        seed=int(old.get("seed", 0)),
        val_fraction=float(old.get("val_fraction", 0.1)),
    )
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    if cfg.strength != 0.0:
        raise InputError("fine-tuning runs with the regulariser off (strength 0)")
    return cfg


def cut_model(
    checkpoint: str | os.PathLike[str], report: Any, keys: Any
) -> tuple[nn.Module, dict[str, Any], dict[str, Any], int]:
    """The checkpoint's model with the report's cut applied, its arch (with the composed cut),
    the checkpoint, and the number of channels this cut removed."""
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    keys_doc = load_json_arg(keys, "importances file")
    producer = keys_doc.get("producer", {}) if isinstance(keys_doc, dict) else {}
    if isinstance(producer, dict) and producer.get("arch") not in (None, ckpt["arch"]):
        raise InputError(
            f"the importances file was exported from another model ({producer['arch']}) than "
            f"{checkpoint} ({ckpt['arch']}); give the one exported from this checkpoint"
        )
    cut = module_cut(removed_channels_of(report), node_modules_of(keys_doc))
    apply_module_cut(model, cut)
    arch = dict(ckpt["arch"])
    arch["cut"] = compose_cuts(arch, dict(arch.get("cut") or {}), cut)
    return model, arch, ckpt, sum(len(v) for v in cut.values())


def finetune(
    checkpoint: str | os.PathLike[str],
    report: Any,
    keys: Any,
    cfg: TrainConfig,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Cut the checkpoint's model as ``report`` says and train it as ``cfg`` says (see module).

    ``cfg.out`` receives ``best.pt``, ``last.pt`` (not with 0 epochs) and ``log.json``; the
    log gains a ``finetune`` block naming the checkpoint, report and channels removed.
    """
    model, arch, _, removed = cut_model(checkpoint, report, keys)
    source = CutSource(
        str(checkpoint),
        str(report) if isinstance(report, (str, os.PathLike)) else None,
        str(keys) if isinstance(keys, (str, os.PathLike)) else None,
        removed,
    )
    if cfg.epochs == 0:
        result = _no_training(model, arch, cfg)
    else:
        result = fit(cfg, model=model, progress=progress, arch=arch)
    if cfg.out and int(os.environ.get("RANK", "0")) == 0:
        path = Path(cfg.out) / "log.json"
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["finetune"] = dataclasses.asdict(source)
        atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return result


def _no_training(model: nn.Module, arch: dict[str, Any], cfg: TrainConfig) -> TrainResult:
    """``epochs=0``: evaluate the cut model and write it as ``best.pt`` with a log."""
    bundle = load_data(cfg.data, cfg.val_fraction, cfg.seed)
    device = pick_device(cfg.device)
    model.to(device)
    val = evaluate(model, bundle.val, bundle, device)
    test = evaluate(model, bundle.test, bundle, device) if bundle.test is not None else None
    model.cpu().eval()
    norm = {"mean": list(bundle.mean), "std": list(bundle.std)}
    config = dataclasses.asdict(cfg)
    if cfg.out and int(os.environ.get("RANK", "0")) == 0:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        save_checkpoint(
            out / "best.pt",
            {
                "arch": arch,
                "method": cfg.method,
                "normalization": norm,
                "config": config,
                "epoch": 0,
                "model": state,
                "val_acc": val["acc"],
            },
        )
        doc = {
            "config": config,
            "arch": arch,
            "world_size": 1,
            "normalization": norm,
            "best_epoch": 0,
            "best_val_acc": val["acc"],
            "test": test,
            "epochs": [],
        }
        atomic_write_text(out / "log.json", json.dumps(doc, indent=1) + "\n")
    return TrainResult(model, [], 0, val["acc"], test, arch, norm)
