"""The rule registry: per-op channel behaviour, keyed by (domain, op type).

A rule describes which ports of a node carry a channel axis and their role: it produces
channels, consumes them, passes them through, couples several inputs, or maps indices. It also
knows how to slice that node's own initializers and attributes, and nothing else.

``analyze`` returns ``None`` when it understood the node, or a reason (a string) when the node
is a barrier: the caller then blocks every channel group the node touches. It never raises for
an unsupported case, so the reason can be reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import onnx_ir as ir

if TYPE_CHECKING:
    from onnxrecede.engine.context import AnalysisContext, RewriteContext


class Rule:
    """Base rule: subclasses override :meth:`analyze` and, if they own parameters, :meth:`rewrite`."""

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        raise NotImplementedError

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        """Slice this node's parameters and attributes to the kept channels (default: nothing)."""


_RULES: dict[tuple[str, str], Rule] = {}

R = TypeVar("R", bound=type[Rule])


def register(*op_types: str, domain: str = "") -> Callable[[R], R]:
    """Class decorator: register one instance of the rule for each op type."""

    def deco(cls: R) -> R:
        instance = cls()
        for op in op_types:
            _RULES[(domain, op)] = instance
        return cls

    return deco


def rule_for(node: ir.Node) -> Rule | None:
    domain = "" if node.domain == "ai.onnx" else node.domain
    _load_rules()
    return _RULES.get((domain, node.op_type))


def registered_ops() -> list[str]:
    _load_rules()
    return sorted(op if not d else f"{d}::{op}" for d, op in _RULES)


_loaded = False


def _load_rules() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import onnxrecede.engine.rules  # noqa: F401  (registers every family)
