"""Typed sections of a prune report, each built once by the stage that owns it.

A section is read-only; ``to_dict`` gives its JSON form. For one release a section also reads
as the mapping it used to be (``report.policy["threshold"]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class Section(Mapping[str, Any]):
    """Read-only mapping view of :meth:`to_dict` (the dict a report section used to be)."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass(frozen=True, eq=False)
class SpeedupSection:
    """``--target-speedup``: the target and the measured search (rounds, curve, choice)."""

    target: float
    search: Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class AccuracySearchSection:
    """``--target-accuracy-drop``: the bound (top-1 points) and the measured search (the
    original's top-1, every step, the choice)."""

    max_drop: float
    search: Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class LatencySection:
    """``--target-latency`` (or ``--target-speedup`` with a table): the target, the table's
    prediction and, once the cut is measured, the measured latencies."""

    target: float
    details: Mapping[str, Any]

    @classmethod
    def of(cls, chosen: Mapping[str, Any]) -> LatencySection:
        """From the latency search's report (``target_latency``, ``latency``)."""
        return cls(float(chosen["target_latency"]), dict(chosen["latency"]))


@dataclass(frozen=True, eq=False)
class PolicySection(Section):
    """How much was removed: the policy applied and how it was chosen."""

    ratio: float | str | None
    threshold: float | None
    scope: str
    aggregate: str
    min_channels: int
    round_to: int
    auto: Mapping[str, Any] | None = None  #: ``ratio="auto"``: the valley found
    target: tuple[str, float] | None = None  #: ("macs" | "params", fraction)
    search: Mapping[str, Any] | None = None  #: the budget search that met the target
    speedup: SpeedupSection | None = None
    accuracy: AccuracySearchSection | None = None
    latency: LatencySection | None = None

    def measured_latency(self, measured: Mapping[str, Any]) -> PolicySection:
        """This section with the cut's measured latencies added to its latency part."""
        assert self.latency is not None
        both = LatencySection(self.latency.target, {**self.latency.details, **measured})
        return dataclasses.replace(self, latency=both)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ratio": self.ratio,
            "threshold": self.threshold,
            "scope": self.scope,
            "aggregate": self.aggregate,
            "min_channels": self.min_channels,
            "round_to": self.round_to,
        }
        if self.auto is not None:
            doc["auto"] = dict(self.auto)
        if self.target is not None:
            doc[f"target_{self.target[0]}"] = self.target[1]
        if self.search is not None:
            doc["search"] = dict(self.search)
        if self.speedup is not None:
            doc["target_speedup"] = self.speedup.target
            doc["speedup_search"] = dict(self.speedup.search)
        if self.accuracy is not None:
            doc["target_accuracy_drop"] = {"max_drop_points": self.accuracy.max_drop,
                                           **self.accuracy.search}  # fmt: skip
        if self.latency is not None:
            doc["target_latency"] = self.latency.target
            doc["latency"] = dict(self.latency.details)
        return doc
