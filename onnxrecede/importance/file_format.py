"""The importances file: reading, writing and resolving its keys against a model.

Format (JSON)::

    {"format": "onnxrecede.importances", "version": 1,
     "producer": {...free-form...},
     "importances": {KEY: [float, ...]}}

A bare ``{KEY: [float, ...]}`` object is accepted too. Higher means more important.

A KEY names the output channels of one node, as any of (tried together; a key must name exactly
one node):

1. the node's name (Conv, ConvTranspose, Gemm, MatMul, BatchNormalization, InstanceNormalization);
2. the name of one of its output tensors (any op type);
3. the name of its weight initializer (``layer1.0.conv1.weight``, the dynamo exporter's naming);
4. a torch module path (``layer1.0.bn1``), read from the dynamo exporter's
   ``pkg.torch.onnx.name_scopes`` metadata (a fused Conv carries its BatchNorm's path), from
   TorchScript-style node names (``/layer1/layer1.0/conv1/Conv``), or as ``PATH.weight``.
"""

from __future__ import annotations

import ast
import difflib
import functools
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.engine import registry
from onnxrecede.errors import ImportancesError
from onnxrecede.io.outputs import atomic_write_text

FORMAT = "onnxrecede.importances"
VERSION = 1

#: op types whose output channels a key may name directly, and the input that holds the
#: per-channel parameter whose initializer name is also accepted as a key (asked of each op's
#: rule: Conv, ConvTranspose, Gemm, MatMul, BatchNormalization, InstanceNormalization).
CHANNEL_OPS: dict[str, int] = registry.weight_inputs()


@dataclass(frozen=True)
class Importances:
    """Per-channel importance vectors keyed as described in the module docstring."""

    scores: Mapping[str, np.ndarray]
    producer: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class ResolvedKey:
    """Where a key points: the node and the output tensor whose channels it scores."""

    key: str
    node: ir.Node
    value: ir.Value
    how: str  # "node name" | "output name" | "weight name" | "module path"


def _where(source: str | None) -> str:
    return f" in {source}" if source else ""


def _check_vector(key: str, raw: Any, source: str | None) -> np.ndarray:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ImportancesError(
            f"importances for key '{key}'{_where(source)} must be a non-empty list of numbers, "
            f"got {type(raw).__name__}{' (empty)' if isinstance(raw, (list, tuple)) else ''}"
        )
    for i, v in enumerate(raw):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ImportancesError(
                f"importances for key '{key}'{_where(source)}: element {i} is {v!r}, not a number"
            )
        if not math.isfinite(v):
            raise ImportancesError(
                f"importances for key '{key}'{_where(source)}: element {i} is {v}; "
                "every importance must be a finite number (no NaN or infinity)"
            )
    return np.asarray(raw, dtype=np.float64)


def importances_from_dict(data: Any, source: str | None = None) -> Importances:
    """Validate a parsed importances document (full or bare form)."""
    if not isinstance(data, dict):
        raise ImportancesError(
            f"importances{_where(source)} must be a JSON object, got {type(data).__name__}"
        )
    producer: dict[str, Any] = {}
    if "format" in data or "importances" in data:
        if "format" in data and data["format"] != FORMAT:
            raise ImportancesError(
                f"importances{_where(source)}: 'format' is {data.get('format')!r}, expected '{FORMAT}'"
            )
        if "version" in data and data["version"] != VERSION:
            raise ImportancesError(
                f"importances{_where(source)}: version {data.get('version')!r} is not supported "
                f"(this onnxrecede reads version {VERSION})"
            )
        producer = data.get("producer") or {}
        if not isinstance(producer, dict):
            raise ImportancesError(f"importances{_where(source)}: 'producer' must be an object")
        body = data.get("importances")
        if not isinstance(body, dict):
            raise ImportancesError(
                f"importances{_where(source)}: 'importances' must be an object mapping keys to lists"
            )
    else:
        body = data
    if not body:
        raise ImportancesError(
            f"importances{_where(source)} holds no keys; give at least one KEY: [floats] entry"
        )
    scores = {str(k): _check_vector(str(k), v, source) for k, v in body.items()}
    return Importances(scores=scores, producer=producer, source=source)


def load_importances(
    source: str | os.PathLike[str] | Mapping[str, Any] | Importances,
) -> Importances:
    """Read an importances file (or accept an already parsed mapping)."""
    if isinstance(source, Importances):
        return source
    if isinstance(source, Mapping):
        return importances_from_dict(dict(source))
    path = os.fspath(source)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ImportancesError(f"importances file not found: {path}") from None
    except IsADirectoryError:
        raise ImportancesError(f"importances {path} is a folder; give a JSON file") from None
    except UnicodeDecodeError:
        raise ImportancesError(
            f"importances file {path} is not text (binary data, or not UTF-8); give the JSON "
            "file written by `onnxrecede importances` or the trainer"
        ) from None
    except OSError as e:
        raise ImportancesError(f"cannot read importances file {path}: {e.strerror}") from None
    if not text.strip():
        raise ImportancesError(f"importances file {path} is empty")
    try:
        data = json.loads(text, object_pairs_hook=functools.partial(_no_duplicates, path))
    except json.JSONDecodeError as e:
        raise ImportancesError(
            f"importances file {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    return importances_from_dict(data, source=path)


def _no_duplicates(path: str, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique (``json`` would let the last copy win silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ImportancesError(
                f"importances file {path}: key '{key}' appears more than once; keep one copy"
            )
        out[key] = value
    return out


def save_importances(
    path: str | os.PathLike[str],
    scores: Mapping[str, Sequence[float] | np.ndarray],
    producer: Mapping[str, Any] | None = None,
) -> None:
    """Write an importances file atomically (validated on the way out)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "producer": dict(producer or {}),
        "importances": {k: [float(x) for x in np.asarray(v).ravel()] for k, v in scores.items()},
    }
    importances_from_dict(doc, source=os.fspath(path))
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


# ----------------------------------------------------------------------------- key resolution


def module_paths(node: ir.Node) -> list[str]:
    """Torch module paths that a node may be called by (deepest first)."""
    paths: list[str] = []
    scopes = node.metadata_props.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            parsed = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, list) and len(parsed) >= 2:
            # The last entry names the traced function; the others are module paths.
            paths.extend(str(p) for p in reversed(parsed[:-1]) if p)
            return paths[:1]
    name = node.name or ""
    if name.startswith("/"):
        path = torchscript_module_path([p for p in name.split("/")[1:-1] if p])
        if path:
            paths.append(path)
    return paths


def torchscript_module_path(scopes: Sequence[str]) -> str:
    """The module path from TorchScript's scope levels, one level per module.

    TorchScript names each level by the module's qualified name cut back to its last
    non-numeric part (``layer2.0`` for a block of ``layer2``, ``downsample.0`` for the conv of
    ``layer2.0.downsample``), so each level below the first adds exactly its last part:
    ``/layer2/layer2.0/downsample/downsample.0/Conv`` -> ``layer2.0.downsample.0``, and
    ``/features/denseblock1/denselayer1/conv1/Conv`` -> ``features.denseblock1.denselayer1.conv1``.
    """
    if not scopes:
        return ""
    return ".".join([scopes[0], *(level.rsplit(".", 1)[-1] for level in scopes[1:])])


def _weight_name(node: ir.Node) -> str | None:
    idx = CHANNEL_OPS.get(node.op_type)
    if idx is None or node.domain not in ("", "ai.onnx") or len(node.inputs) <= idx:
        return None
    v = node.inputs[idx]
    # Follow Transpose/Cast/Identity chains back to the initializer (Linear exported as MatMul).
    for _ in range(4):
        if v is None or v.is_initializer():
            break
        producer = v.producer()
        if (
            producer is None
            or producer.op_type not in ("Transpose", "Cast", "Identity")
            or not producer.inputs
        ):
            return None
        v = producer.inputs[0]
    if v is None or not v.is_initializer():
        return None
    return v.name


class KeyIndex:
    """Lookup tables from every accepted kind of key to the node it names."""

    def __init__(self, graph: ir.Graph) -> None:
        self._by_kind: dict[str, dict[str, list[tuple[ir.Node, ir.Value]]]] = {
            "node name": {},
            "output name": {},
            "weight name": {},
            "module path": {},
        }
        for node in graph:
            is_channel_op = node.op_type in CHANNEL_OPS and node.domain in ("", "ai.onnx")
            if not node.outputs:
                continue
            out = node.outputs[0]
            for o in node.outputs:
                if o.name:
                    self._add("output name", o.name, node, o)
            if not is_channel_op:
                continue
            if node.name:
                self._add("node name", node.name, node, out)
            w = _weight_name(node)
            if w:
                self._add("weight name", w, node, out)
                if w.endswith(".weight"):
                    self._add("module path", w[: -len(".weight")], node, out)
            for p in module_paths(node):
                self._add("module path", p, node, out)

    def _add(self, kind: str, key: str, node: ir.Node, value: ir.Value) -> None:
        hits = self._by_kind[kind].setdefault(key, [])
        if all(h[1] is not value for h in hits):
            hits.append((node, value))

    def candidates(self) -> list[str]:
        keys: set[str] = set()
        for kind, table in self._by_kind.items():
            if kind != "output name":
                keys.update(table)
        return sorted(keys)

    def resolve(self, key: str) -> ResolvedKey:
        found: list[tuple[str, ir.Node, ir.Value]] = []
        for kind, table in self._by_kind.items():
            for node, value in table.get(key, []):
                if all(f[2] is not value for f in found):
                    found.append((kind, node, value))
        if not found:
            near = difflib.get_close_matches(key, self.candidates(), n=5, cutoff=0.5)
            hint = f"; nearest candidates: {', '.join(near)}" if near else ""
            raise ImportancesError(
                f"importances key '{key}' matches no node of the model (tried node names, output "
                f"names, weight names and torch module paths){hint}. "
                "Run `onnxrecede inspect MODEL` to list the prunable nodes."
            )
        if len(found) > 1:
            what = ", ".join(f"{n.op_type} '{n.name}' (by {k})" for k, n, _ in found[:5])
            raise ImportancesError(
                f"importances key '{key}' is ambiguous: it matches {what}. "
                "Use the node name or its output tensor name instead."
            )
        kind, node, value = found[0]
        return ResolvedKey(key=key, node=node, value=value, how=kind)


def channel_count(node: ir.Node) -> int | None:
    """Output-channel count of a channel op, read from its parameters (None if unknown)."""
    rule = registry.rule_for(node)
    return None if rule is None or rule.weight_input is None else rule.output_channels(node)


def resolve_importances(
    model: ir.Model, importances: Importances, keys: Iterable[str] | None = None
) -> dict[str, ResolvedKey]:
    """Resolve every key; errors name the key, the file and the nearest candidates."""
    index = KeyIndex(model.graph)
    resolved: dict[str, ResolvedKey] = {}
    by_value: dict[int, str] = {}
    for key in keys if keys is not None else importances.scores:
        r = index.resolve(key)
        vec = importances.scores[key]
        n = channel_count(r.node) if r.value is r.node.outputs[0] else None
        if n is not None and len(vec) != n:
            raise ImportancesError(
                f"importances key '{key}'{_where(importances.source)} has {len(vec)} values, but "
                f"{r.node.op_type} '{r.node.name}' has {n} output channels"
            )
        other = by_value.get(id(r.value))
        if other is not None:
            raise ImportancesError(
                f"importances keys '{other}' and '{key}' both name the channels of "
                f"{r.node.op_type} '{r.node.name}'; keep one of them"
            )
        by_value[id(r.value)] = key
        resolved[key] = r
    return resolved


def scores_by_value(model: ir.Model, importances: Importances) -> dict[ir.Value, tuple[str, np.ndarray]]:
    """The scores of every key, by the tensor whose channels it scores: value -> (key, scores)."""
    resolved = resolve_importances(model, importances)
    return {r.value: (key, importances.scores[key]) for key, r in resolved.items()}
