"""Export a trained model to plain ONNX plus an importances file whose keys resolve in it.

Steps:
1. copy the model to the CPU in eval mode and turn every bounded BatchNorm into a standard one
   (weight = sigmoid(theta), bias = 0): the same function, which exporters treat as ordinary
   BatchNorm (the dynamo exporter and TorchScript in eval mode fold it into the conv);
2. find, by running the model once with hooks, the Conv or Linear whose output feeds each
   BatchNorm: its node is what the importances name;
3. export with the dynamo or TorchScript exporter, batch axis dynamic, as one file unless the
   weights pass 2 GB; TorchScript's shared folded-bias initializers (Identity nodes) are
   given their own copies so that each conv owns its parameters, and Constant nodes become
   initializers;
4. key each importance vector by the producing node's name in the file: the BatchNorm's module
   path is looked up first (a dynamo-fused Conv carries it; an unfused BatchNormalization leads
   to its input's Conv), then the conv's module path (TorchScript folds BN away);
5. write the importances and check every key with :func:`resolve_importances` before success.
   The importances file's ``producer`` block also records ``node_modules``: the name of the
   node producing the channels of every BatchNorm (candidate or not) -> the torch module path
   of its Conv/Linear. :func:`onnxrecede.train.apply_cut` reads it to carry a prune report
   (keyed by node names) back to the torch model.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx
import onnx_ir as ir
import torch
from torch import nn

from onnxrecede.errors import ImportancesError, InputError
from onnxrecede.importance.file_format import (
    KeyIndex,
    load_importances,
    resolve_importances,
    save_importances,
)
from onnxrecede.io.model_files import EXTERNAL_DATA_THRESHOLD
from onnxrecede.io.outputs import atomic_dir
from onnxrecede.train.bounded_bn import swap_to_standard

log = logging.getLogger(__name__)

Exporter = Literal["dynamo", "torchscript"]
_PRODUCERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class ExportResult:
    onnx_path: Path
    importances_path: Path
    keys: dict[str, str] = field(default_factory=dict)  # BN module path -> key written
    exporter: str = "dynamo"
    external_data: bool = False


def producer_of_bn(model: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """BatchNorm module path -> path of the Conv/Linear whose output is the BN's input."""
    out_owner: dict[int, str] = {}
    pairs: dict[str, str] = {}
    hooks = []
    names = {m: n for n, m in model.named_modules()}
    for mod, name in names.items():
        if isinstance(mod, _PRODUCERS):
            hooks.append(
                mod.register_forward_hook(
                    lambda m, i, o, name=name: out_owner.__setitem__(id(o), name)
                )
            )
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            hooks.append(
                mod.register_forward_pre_hook(
                    lambda m, i, name=name: pairs.__setitem__(name, out_owner.get(id(i[0]), ""))
                )
            )
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return {bn: p for bn, p in pairs.items() if p}


def _export_file(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    exporter: Exporter,
    opset: int | None,
    external: bool,
) -> None:
    kw: dict[str, Any] = {
        "input_names": ["input"],
        "output_names": ["logits"],
        "opset_version": opset,
        "external_data": external,
    }
    if exporter == "dynamo":
        kw["dynamo"] = True
        kw["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    else:
        kw["dynamo"] = False
        kw["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
    chatter = io.StringIO()  # the exporters print progress to stdout, which carries results
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed" for every export
    with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(path), **kw)
        except Exception as e:
            interrupt = _interrupt_behind(e)
            if interrupt is not None:  # the exporter wrapped a SIGINT/SIGTERM: let it through
                raise interrupt from None
            raise InputError(
                f"the {exporter} exporter failed: {type(e).__name__}: {e}".splitlines()[0]
            ) from None
        finally:
            onnx_log.setLevel(level)
    log.debug("%s", chatter.getvalue())
    if opset is not None:
        written = _default_opset(path)
        if written != opset:
            low, high = opset_range(exporter)
            raise InputError(
                f"the {exporter} exporter wrote opset {written} when asked for {opset}; "
                f"it writes opsets {low}..{high}"
            )


def opset_range(exporter: Exporter) -> tuple[int, int]:
    """The opsets ``exporter`` can write: TorchScript its own range (7 .. torch's maximum); the
    dynamo exporter writes 18 and converts upward only (onnx's version converter fails on the
    way down), up to the newest opset the installed onnx knows."""
    from torch.onnx import _constants

    if exporter == "torchscript":
        return getattr(_constants, "ONNX_MIN_OPSET", 7), getattr(_constants, "ONNX_MAX_OPSET", 20)
    return 18, int(onnx.defs.onnx_opset_version())


def check_opset(exporter: Exporter, opset: int | None) -> None:
    """Refuse, before any work, an opset the exporter cannot write (see :func:`opset_range`)."""
    if opset is None:
        return
    low, high = opset_range(exporter)
    if not low <= opset <= high:
        other = "torchscript" if exporter == "dynamo" else "dynamo"
        olow, ohigh = opset_range(other)  # type: ignore[arg-type]
        raise InputError(
            f"--opset {opset}: the {exporter} exporter writes opsets {low}..{high} "
            f"(--exporter {other}: {olow}..{ohigh})"
        )


def _default_opset(path: Path) -> int | None:
    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _interrupt_behind(error: BaseException) -> BaseException | None:
    """A KeyboardInterrupt (SIGINT, or the command line's SIGTERM) that ``error`` wraps."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _untie_identity_initializers(model: onnx.ModelProto) -> int:
    """Replace ``Identity(initializer)`` nodes by a copy of the initializer under the output name."""
    inits = {t.name: t for t in model.graph.initializer}

    def source(node: onnx.NodeProto) -> onnx.TensorProto | None:
        if node.op_type == "Identity" and len(node.input) == 1:
            return inits.get(node.input[0])
        return None

    return _nodes_to_initializers(model, source)


def _lift_constants(model: onnx.ModelProto) -> int:
    """Turn ``Constant`` nodes holding a tensor into initializers (the pads of a Pad, say)."""

    def source(node: onnx.NodeProto) -> onnx.TensorProto | None:
        if (
            node.op_type != "Constant"
            or len(node.attribute) != 1
            or node.domain not in ("", "ai.onnx")
        ):
            return None
        attr = node.attribute[0]
        return attr.t if attr.name == "value" else None

    return _nodes_to_initializers(model, source)


def _nodes_to_initializers(
    model: onnx.ModelProto, source: Callable[[onnx.NodeProto], onnx.TensorProto | None]
) -> int:
    """Replace each node for which ``source`` gives a tensor by a copy named as its output."""
    keep, n = [], 0
    for node in model.graph.node:
        tensor = source(node)
        if tensor is None:
            keep.append(node)
            continue
        t = copy.deepcopy(tensor)
        t.name = node.output[0]
        model.graph.initializer.append(t)
        n += 1
    if n:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return n


def _producer_node(index: KeyIndex, key: str) -> ir.Node | None:
    try:
        node = index.resolve(key).node
    except ImportancesError:
        return None
    if node.op_type == "BatchNormalization":
        src = node.inputs[0]
        up = src.producer() if src is not None else None
        return up if up is not None and up.op_type in ("Conv", "Gemm", "MatMul") else node
    return node


def _key_for(node: ir.Node) -> str:
    return node.name or node.outputs[0].name or ""


def choose_keys(
    onnx_model: ir.Model, bn_paths: Sequence[str], producers: Mapping[str, str]
) -> dict[str, str]:
    """BN module path -> name of the node producing its channels in ``onnx_model``."""
    index = KeyIndex(onnx_model.graph)
    keys: dict[str, str] = {}
    for bn in bn_paths:
        node = _producer_node(index, bn)
        if node is None and bn in producers:
            node = _producer_node(index, producers[bn])
        if node is None or not _key_for(node):
            raise InputError(
                f"cannot find the node producing the channels of '{bn}' in the exported model"
            )
        keys[bn] = _key_for(node)
    return keys


def node_modules(onnx_model: ir.Model, producers: Mapping[str, str]) -> dict[str, str]:
    """Producer node name -> torch module path of its Conv/Linear, for every BN's producer."""
    out: dict[str, str] = {}
    for bn, conv in producers.items():
        try:
            node = choose_keys(onnx_model, [bn], producers)[bn]
        except InputError:
            log.debug("no node found for the producer of '%s'", bn)
            continue
        out[node] = conv
    return out


def export_model(
    model: nn.Module,
    onnx_path: str | os.PathLike[str],
    importances_path: str | os.PathLike[str],
    importances: Mapping[str, torch.Tensor],
    *,
    exporter: Exporter = "dynamo",
    opset: int | None = None,
    input_shape: Sequence[int] = (3, 32, 32),
    producer: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Export ``model`` and ``importances`` (BN module path -> vector); see the module docstring.

    The two outputs (and the model's ``.data`` file) must be distinct files
    (:func:`onnxrecede.io.paths.check_paths`, as on the command line).
    """
    from onnxrecede.io.paths import check_paths

    check_paths([], [
        ("onnx_path", onnx_path), ("the external data of onnx_path", f"{os.fspath(onnx_path)}.data"),
        ("importances_path", importances_path),
    ])  # fmt: skip
    if exporter not in ("dynamo", "torchscript"):
        raise InputError(f"unknown exporter '{exporter}'; use dynamo or torchscript")
    check_opset(exporter, opset)
    onnx_path, importances_path = Path(onnx_path), Path(importances_path)
    m = swap_to_standard(copy.deepcopy(model).cpu().eval())
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    producers = producer_of_bn(m, example)
    external = (
        sum(p.numel() * p.element_size() for p in m.state_dict().values()) > EXTERNAL_DATA_THRESHOLD
    )
    with atomic_dir(onnx_path) as tmp:
        raw = tmp / "raw.onnx"
        _export_file(m, example, raw, exporter, opset, external)
        proto = onnx.load(str(raw))
        if _untie_identity_initializers(proto):
            log.debug("gave shared initializers their own copies")
        _lift_constants(proto)
        staged = tmp / onnx_path.name
        onnx.save(
            proto,
            str(staged),
            save_as_external_data=external,
            all_tensors_to_one_file=True,
            location=onnx_path.name + ".data",
        )
        staged_ir = ir.load(staged)
        keys = choose_keys(staged_ir, list(importances), producers)
        scores = {keys[bn]: importances[bn].detach().cpu().double().numpy() for bn in importances}
        staged_imp = tmp / "importances.json"
        meta = {
            **dict(producer or {}),
            "exporter": exporter,
            "module_paths": keys,
            "node_modules": node_modules(staged_ir, producers),
        }
        save_importances(staged_imp, scores, meta)
        resolve_importances(ir.load(staged), load_importances(staged_imp))
        if external:
            os.replace(
                tmp / (onnx_path.name + ".data"), onnx_path.with_name(onnx_path.name + ".data")
            )
        os.replace(staged, onnx_path)
    save_importances(importances_path, scores, meta)
    log.info(
        "wrote %s and %s (%d keys, %s exporter)", onnx_path, importances_path, len(keys), exporter
    )
    return ExportResult(onnx_path, importances_path, keys, exporter, external)


def importances_to_export(
    model: nn.Module, method: str, all_layers: bool = False
) -> dict[str, torch.Tensor]:
    """The BatchNorm importances of ``model``; only its ``prune_candidates`` unless ``all_layers``.

    The built-in models list the layers the authors prune (ResNet-56: the first BN of each block).
    """
    from onnxrecede.train.regularizer import channel_importances

    imps = channel_importances(model, method)  # type: ignore[arg-type]
    wanted = getattr(model, "prune_candidates", None)
    if all_layers or not wanted:
        return imps
    return {k: v for k, v in imps.items() if k in set(wanted)}


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    importances_path: str | os.PathLike[str],
    *,
    exporter: Exporter = "dynamo",
    opset: int | None = None,
    all_layers: bool = False,
) -> ExportResult:
    """Export the model of an ``onnxrecede train`` checkpoint (``best.pt`` or ``last.pt``)."""
    from onnxrecede.train.checkpoint import load_checkpoint, model_from_checkpoint
    from onnxrecede.train.regularizer import prune_scope

    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, str(checkpoint))
    method = str(ckpt.get("method", "rni"))
    producer = {
        "tool": "onnxrecede train",
        "method": method,
        "scope": prune_scope(method),  # type: ignore[arg-type]
        "arch": ckpt.get("arch"),
        "epoch": ckpt.get("epoch"),
        "val_acc": ckpt.get("val_acc"),
        "input_normalization": ckpt.get("normalization"),
    }
    return export_model(
        model,
        onnx_path,
        importances_path,
        importances_to_export(model, method, all_layers),
        exporter=exporter,
        opset=opset,
        producer=producer,
    )
