"""Carry a cut made in ONNX back to the torch model it was exported from.

``onnxrecede prune --report`` lists, per producer node of the *ONNX* model, the output channels it
removed (``removed_channels``). The trainer's exporter recorded, in the importances file, which
torch module each producer node came from (``producer.node_modules``: node name -> Conv module
path). :func:`apply_cut` joins the two and removes the same channels from the torch model:

1. the Conv's output channels (weight rows, bias);
2. the BatchNorm after it, bounded (theta) or plain (weight, bias), with its running statistics;
3. the input channels of every module that reads those channels: the next Conv, or the
   classifier's input columns;
4. coupled groups: a ResNet's residual stream (stem and every block's second Conv of a stage add
   into the same channels) is cut once, and every producer of the stream must have lost the same
   channels in the report; an option-A shortcut's zero padding shrinks to the kept padded
   channels, and the channels it passes through must be exactly the kept channels of the stage
   before.

Nothing is re-analysed in torch: which channels go comes from the report only. The wiring used
in step 3 and 4 (which module reads which channels) is that of the trainer's built-in models,
:class:`~onnxrecede.train.models.VGG16` and :class:`~onnxrecede.train.models.ResNetCifar`.
A report that does not fit the model (unknown nodes, indices out of range, a coupled group cut
unevenly) raises :class:`InputError` and leaves the model untouched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from onnxrecede.errors import InputError
from onnxrecede.train.bounded_bn import is_bounded
from onnxrecede.train.models import VGG16, BasicBlock, OptionAShortcut, ResNetCifar

#: A cut in torch terms: Conv module path -> sorted output channels removed.
ModuleCut = dict[str, list[int]]


@dataclass
class _Stream:
    """Channels produced by one or more Convs (added together) and read by ``readers``."""

    producers: list[tuple[str, str]]  # (conv path, bn path)
    readers: list[str]  # Conv/Linear module paths whose input channels these are
    shortcut_into: tuple[str, str] | None = None  # (shortcut path, next stream's first conv)
    width: int = 0
    keep: list[int] = field(default_factory=list)


def _streams(model: nn.Module) -> list[_Stream]:
    """The channel wiring of a built-in model, in forward order."""
    if isinstance(model, VGG16):
        convs = [
            f"features.{i}"
            for i, m in enumerate(model.features)
            if isinstance(m, nn.Sequential) and hasattr(m, "conv")
        ]
        out = []
        for i, c in enumerate(convs):
            reader = f"{convs[i + 1]}.conv" if i + 1 < len(convs) else "classifier"
            out.append(_Stream([(f"{c}.conv", f"{c}.bn")], [reader]))
        return out
    if isinstance(model, ResNetCifar):
        streams: list[_Stream] = []
        stage_streams: list[_Stream] = []
        for s, layer in enumerate((model.layer1, model.layer2, model.layer3), start=1):
            blocks: list[BasicBlock] = list(layer)  # type: ignore[arg-type]
            if s > 1 and isinstance(blocks[0].shortcut, OptionAShortcut):
                # the previous stream also feeds this stage's first block and its shortcut
                stage_streams[-1].shortcut_into = (f"layer{s}.0.shortcut", f"layer{s}.0.conv2")
            elif s > 1:
                raise InputError(
                    f"layer{s}.0 has no option-A shortcut; apply_cut supports the built-in ResNets"
                )
            readers_prev = f"layer{s}.0.conv1"
            if s == 1:  # the stem's channels: layer1.0 has an identity shortcut
                stream = _Stream([("conv1", "bn1")], [readers_prev])
            else:
                stage_streams[-1].readers.append(readers_prev)
                stream = _Stream([], [])
            for j in range(len(blocks)):
                p = f"layer{s}.{j}"
                streams.append(_Stream([(f"{p}.conv1", f"{p}.bn1")], [f"{p}.conv2"]))
                stream.producers.append((f"{p}.conv2", f"{p}.bn2"))
                if j + 1 < len(blocks):
                    stream.readers.append(f"layer{s}.{j + 1}.conv1")
            stage_streams.append(stream)
        stage_streams[-1].readers.append("linear")
        return streams + stage_streams
    raise InputError(
        f"apply_cut supports the trainer's built-in models (vgg16, resnet20, resnet56), "
        f"not {type(model).__name__}"
    )


def _get(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise InputError(f"the model has no module '{path}'") from None


def _index(keep: list[int]) -> torch.Tensor:
    return torch.tensor(keep, dtype=torch.long)


def _cut_param(module: nn.Module, name: str, keep: torch.Tensor, dim: int) -> None:
    t = getattr(module, name, None)
    if t is None:
        return
    new = t.detach().index_select(dim, keep.to(t.device)).clone()
    if isinstance(t, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=t.requires_grad))
    else:
        module._buffers[name] = new


def _cut_outputs(conv: nn.Module, bn: nn.Module, keep: torch.Tensor) -> None:
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise InputError(f"cannot cut the outputs of {type(conv).__name__}")
    _cut_param(conv, "weight", keep, 0)
    _cut_param(conv, "bias", keep, 0)
    conv.out_channels = len(keep)
    names = ("theta",) if is_bounded(bn) else ("weight", "bias")
    for n in (*names, "running_mean", "running_var"):
        _cut_param(bn, n, keep, 0)
    bn.num_features = len(keep)  # type: ignore[assignment]


def _cut_inputs(reader: nn.Module, keep: torch.Tensor) -> None:
    _cut_param(reader, "weight", keep, 1)
    if isinstance(reader, nn.Conv2d):
        reader.in_channels = len(keep)
    elif isinstance(reader, nn.Linear):
        reader.in_features = len(keep)
    else:
        raise InputError(f"cannot cut the inputs of {type(reader).__name__}")


def module_cut(
    removed_channels: Mapping[str, list[int]], node_modules: Mapping[str, str]
) -> ModuleCut:
    """Turn a report's ``removed_channels`` (node names) into Conv module paths."""
    out: ModuleCut = {}
    unknown = [k for k in removed_channels if k not in node_modules]
    if unknown:
        raise InputError(
            f"the report removes channels of node(s) {', '.join(unknown[:3])} that the exporter's "
            "key mapping does not know; give the importances file written with the exported "
            "model that was pruned"
        )
    for node, idx in removed_channels.items():
        path = node_modules[node]
        if path in out:
            raise InputError(f"the report cuts module '{path}' twice (node '{node}')")
        if not isinstance(idx, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in idx
        ):
            raise InputError(f"removed_channels['{node}'] must be a list of channel indices")
        out[path] = sorted(set(idx))
    return out


def _plan(model: nn.Module, cut: Mapping[str, list[int]]) -> list[_Stream]:
    """Keep lists for every stream; checks ranges and coupled groups before anything changes."""
    streams = _streams(model)
    known = {c for s in streams for c, _ in s.producers}
    extra = sorted(set(cut) - known)
    if extra:
        raise InputError(
            f"the cut names module(s) {', '.join(extra[:3])} whose channels cannot be removed "
            "on their own in this model"
        )
    for s in streams:
        widths = {int(_get(model, c).out_channels) for c, _ in s.producers}  # type: ignore[arg-type]
        if len(widths) != 1:
            raise InputError(f"producers {[c for c, _ in s.producers]} differ in width")
        s.width = widths.pop()
        removed = [tuple(cut.get(c, [])) for c, _ in s.producers]
        if len(set(removed)) > 1:
            what = ", ".join(f"{c}: {len(r)}" for (c, _), r in zip(s.producers, removed))
            raise InputError(
                "the report cuts a coupled group unevenly (the producers of one residual stream "
                f"must lose the same channels; removed per producer: {what})"
            )
        gone = set(removed[0])
        if any(i < 0 or i >= s.width for i in gone):
            raise InputError(
                f"the report removes channel indices outside 0..{s.width - 1} of "
                f"{s.producers[0][0]}; it does not come from this model"
            )
        s.keep = [i for i in range(s.width) if i not in gone]
        if not s.keep:
            raise InputError(f"the report removes every channel of {s.producers[0][0]}")
    for s, sc, nxt in _shortcuts(model, streams):
        middle = [i - sc.pad_lo for i in nxt.keep if sc.pad_lo <= i < sc.pad_lo + s.width]
        if middle != s.keep:
            where = s.shortcut_into[0] if s.shortcut_into else "?"
            raise InputError(
                f"the report cuts the option-A shortcut '{where}' inconsistently: "
                "the channels it passes on must be cut exactly as the stream that feeds it"
            )
    return streams


def _shortcuts(
    model: nn.Module, streams: list[_Stream]
) -> list[tuple[_Stream, OptionAShortcut, _Stream]]:
    """(stream, option-A shortcut it feeds, the stream the shortcut adds into)."""
    by_first = {s.producers[0][0]: s for s in streams}
    out = []
    for s in streams:
        if s.shortcut_into is not None:
            sc = _get(model, s.shortcut_into[0])
            assert isinstance(sc, OptionAShortcut)
            out.append((s, sc, by_first[s.shortcut_into[1]]))
    return out


def apply_module_cut(model: nn.Module, cut: Mapping[str, list[int]]) -> nn.Module:
    """Remove channels given by Conv module path (see :func:`module_cut`); in place."""
    streams = _plan(model, cut)
    shortcuts = _shortcuts(model, streams)
    for s in streams:
        if len(s.keep) == s.width:
            continue
        keep = _index(s.keep)
        for conv, bn in s.producers:
            _cut_outputs(_get(model, conv), _get(model, bn), keep)
        for r in s.readers:
            _cut_inputs(_get(model, r), keep)
    for s, sc, nxt in shortcuts:
        lo, hi = sc.pad_lo, sc.pad_lo + s.width
        sc.pad_lo = sum(1 for i in nxt.keep if i < lo)
        sc.pad_hi = sum(1 for i in nxt.keep if i >= hi)
    return model


def load_json_arg(source: Any, what: str) -> Any:
    """A path's parsed JSON (InputError when missing or invalid); anything else as given."""
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{what} not found: {p}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"cannot read {what} {p}: {e}") from None
    return source


def removed_channels_of(report: Any) -> dict[str, list[int]]:
    """``removed_channels`` of a PruneReport, its ``to_dict()``, or a ``--report`` JSON file."""
    doc = load_json_arg(report, "prune report")
    if hasattr(doc, "removed_channels"):
        return dict(doc.removed_channels)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("removed_channels"), Mapping):
        raise InputError("the prune report has no 'removed_channels' (write it with --report)")
    return dict(doc["removed_channels"])


def node_modules_of(keys: Any) -> dict[str, str]:
    """The exporter's node -> module mapping: from an importances file/Importances, or a dict."""
    doc = load_json_arg(keys, "importances file")
    producer = getattr(doc, "producer", None)
    if producer is None and isinstance(doc, Mapping):
        producer = doc.get("producer", None)
        if producer is None and all(isinstance(v, str) for v in doc.values()):
            return dict(doc)  # a bare node -> module mapping
    mapping = producer.get("node_modules") if isinstance(producer, Mapping) else None
    if not isinstance(mapping, Mapping):
        raise InputError(
            "the importances file has no 'node_modules' mapping; it must be written by "
            "`onnxrecede train` or `onnxrecede export` of this onnxrecede version"
        )
    return {str(k): str(v) for k, v in mapping.items()}


def apply_cut(model: nn.Module, report: Any, keys: Any) -> nn.Module:
    """Remove from ``model`` (in place) the channels a prune report removed from its export.

    ``report``: a :class:`~onnxrecede.reports.PruneReport`, its ``to_dict()``, or the path of
    ``prune --report``. ``keys``: the importances file the trainer's export wrote (path, parsed
    dict or :class:`~onnxrecede.importances.Importances`), whose ``node_modules`` maps the
    report's node names to module paths; or that mapping itself. Returns ``model``.
    """
    cut = module_cut(removed_channels_of(report), node_modules_of(keys))
    return apply_module_cut(model, cut)
