"""Channel spaces: every channel of every tracked tensor axis is labelled by an element id.

Producers (a Conv's output, a pad block, a constant) create *atoms*: runs of fresh element ids.
A tensor axis is described by a :class:`ChannelView`, the element id of each of its positions.
Ops that pass channels through hand the same labels on; Concat concatenates label arrays; Split
and Slice take sub-arrays; Flatten repeats each label over its H*W columns. Ops that require two
axes to hold the same channels (a residual Add, an SE gate) *couple* them: their elements are
unioned position by position. A channel group is then a connected set of atoms, and one pruning
decision is taken per union-find class of elements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

#: atom kinds
PRODUCER = "producer"  # output channels of a Conv / ConvTranspose / Gemm / MatMul
PAD = "pad"  # channels added by a constant Pad on the channel axis (always zero)
FIXED = "fixed"  # channels that can never be removed (constants, unknown sources)


@dataclass(frozen=True)
class ChannelView:
    """The channel axis of one tensor and the element id at each position along it."""

    axis: int
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Atom:
    """A run of element ids created by one node."""

    index: int
    start: int
    size: int
    kind: str
    node: ir.Node | None
    value: ir.Value | None


class ElementSpace:
    """Allocates element ids in atoms and keeps a union-find over them."""

    def __init__(self) -> None:
        self.atoms: list[Atom] = []
        self._parent: list[int] = []
        self._atom_of: list[int] = []

    @property
    def size(self) -> int:
        return len(self._parent)

    def new_atom(
        self, size: int, kind: str, node: ir.Node | None = None, value: ir.Value | None = None
    ) -> np.ndarray:
        start = len(self._parent)
        atom = Atom(len(self.atoms), start, size, kind, node, value)
        self.atoms.append(atom)
        self._parent.extend(range(start, start + size))
        self._atom_of.extend([atom.index] * size)
        return np.arange(start, start + size, dtype=np.int64)

    def find(self, e: int) -> int:
        parent = self._parent
        root = e
        while parent[root] != root:
            root = parent[root]
        while parent[e] != root:  # path compression
            parent[e], e = root, parent[e]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller id wins so that roots are deterministic.
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self._parent[hi] = lo

    def union_labels(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            if x != y:
                self.union(x, y)

    def roots(self) -> np.ndarray:
        """Root element of every element."""
        return np.fromiter(
            (self.find(e) for e in range(self.size)), dtype=np.int64, count=self.size
        )

    def atom_of(self) -> np.ndarray:
        return np.asarray(self._atom_of, dtype=np.int64)
