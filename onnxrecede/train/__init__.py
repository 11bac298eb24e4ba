"""Training side: bounded BatchNorm, the receding regulariser, baselines, loop and export.

Needs the ``[train]`` extra (torch, onnxscript, matplotlib). ``import onnxrecede`` never imports
this package.
"""

from __future__ import annotations

from onnxrecede.train.bounded_bn import (
    BoundedBatchNorm1d,
    BoundedBatchNorm2d,
    BoundedBatchNorm3d,
    bounded_modules,
    swap_to_bounded,
    swap_to_standard,
)
from onnxrecede.train.cut import apply_cut, apply_module_cut
from onnxrecede.train.export import export_checkpoint, export_model, importances_to_export
from onnxrecede.train.finetune import finetune, finetune_config
from onnxrecede.train.loop import TrainConfig, TrainResult, evaluate, fit
from onnxrecede.train.models import build_model
from onnxrecede.train.optim import OptimConfig, make_optimizer, make_scheduler, param_groups
from onnxrecede.train.regularizer import (
    Regularizer,
    channel_importances,
    prune_scope,
    receding_penalty,
)

__all__ = [
    "BoundedBatchNorm1d",
    "BoundedBatchNorm2d",
    "BoundedBatchNorm3d",
    "OptimConfig",
    "Regularizer",
    "TrainConfig",
    "TrainResult",
    "apply_cut",
    "apply_module_cut",
    "bounded_modules",
    "build_model",
    "channel_importances",
    "evaluate",
    "export_checkpoint",
    "export_model",
    "finetune",
    "finetune_config",
    "fit",
    "importances_to_export",
    "make_optimizer",
    "make_scheduler",
    "param_groups",
    "prune_scope",
    "receding_penalty",
    "swap_to_bounded",
    "swap_to_standard",
]
