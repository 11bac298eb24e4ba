"""Export a torch module to ONE self-contained .onnx file with one of four exporters."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import onnx
import torch
from torch import nn

Exporter = Literal["dynamo", "dynamo_noopt", "torchscript", "torchscript_bn"]
EXPORTERS: tuple[Exporter, ...] = ("dynamo", "dynamo_noopt", "torchscript", "torchscript_bn")
TORCHSCRIPT_OPSET = 17
MAX_IR_VERSION = 10
_CHATTY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow the exporters' prints, warnings and log lines."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    sink = io.StringIO()
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export(module: nn.Module, x: torch.Tensor, path: Path, exporter: Exporter) -> None:
    common = {"input_names": ["input"], "output_names": ["output"], "verbose": False}
    if exporter in ("dynamo", "dynamo_noopt"):
        torch.onnx.export(
            module,
            (x,),
            str(path),
            dynamo=True,
            optimize=exporter == "dynamo",
            external_data=False,
            **common,
        )
    elif exporter in ("torchscript", "torchscript_bn"):
        torch.onnx.export(
            module,
            (x,),
            str(path),
            dynamo=False,
            opset_version=TORCHSCRIPT_OPSET,
            do_constant_folding=exporter == "torchscript",
            **common,
        )
    else:
        raise ValueError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")


def _make_self_contained(path: Path) -> None:
    """Inline any external data, cap the IR version, drop the side files."""
    model = onnx.load(str(path), load_external_data=False)
    data_files = {
        entry.value
        for init in model.graph.initializer
        for entry in init.external_data
        if entry.key == "location"
    }
    onnx.load_external_data_for_model(model, str(path.parent))
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.save(model, str(path), save_as_external_data=False)
    for name in data_files | {path.name + ".data"}:
        side = path.parent / name
        if side.exists():
            os.remove(side)


def export_model(
    module: nn.Module,
    input_shape: tuple[int, ...],
    path: str | os.PathLike[str],
    exporter: Exporter,
) -> Path:
    """Export ``module`` (eval mode) for an input of ``input_shape`` to ``path``; return it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    x = torch.zeros(input_shape)
    with torch.no_grad(), _quiet():
        _export(module, x, out, exporter)
    _make_self_contained(out)
    return out
