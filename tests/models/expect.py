"""What a correct pruner must find in a test model."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Expect:
    """Expected pruning outcome.

    ``prunable``: at ratio 0.5 with random importances, at least one channel is removed.
    ``barrier_ops``: ONNX op types that must appear among the reasons for blocked groups.
    """

    prunable: bool
    barrier_ops: frozenset[str] = field(default_factory=frozenset)
    note: str = ""
    #: exporters whose export feeds every prunable MatMul a run-time ``Transpose(W)``: the
    #: random importances (tests/models/importances.py) score nothing there, nothing is cut
    unscored_with: frozenset[str] = field(default_factory=frozenset)
