"""What a benchmark found: frozen records and their JSON form."""

from __future__ import annotations

import dataclasses
from typing import Any

from onnxrecede.bench.agreement import Agreement
from onnxrecede.bench.stats import LatencyStats, Speedup
from onnxrecede.engine.cost import Cost

SCHEMA = "onnxrecede-bench/1"


def role_of(index: int, count: int) -> str:
    if index == 0:
        return "reference"
    return "candidate" if count == 2 else f"candidate{index}"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    path: str
    file_size_bytes: int
    cost: Cost | None
    cost_input_shapes: dict[str, tuple[int, ...]]
    cost_error: str | None = None


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A candidate against the reference in one configuration."""

    candidate: int
    speedup: Speedup
    agreement: Agreement


@dataclasses.dataclass(frozen=True)
class Configuration:
    """All models timed on one provider at one batch size."""

    provider: str
    batch: int
    input_shapes: dict[str, tuple[int, ...]]
    copies_timed: bool
    session_create_s: tuple[float, ...]
    latency: tuple[LatencyStats, ...]
    comparisons: tuple[Comparison, ...]
    input_dtypes: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Unavailable:
    provider: str
    reason: str


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """Result of :func:`onnxrecede.bench.benchmark` / :func:`onnxrecede.bench.compare`.

    The *primary* measurement is the first configuration (first provider that ran, first batch)
    and its first candidate: ``speedup`` and ``max_abs_diff`` refer to it.
    """

    models: tuple[ModelInfo, ...]
    configurations: tuple[Configuration, ...]
    unavailable: tuple[Unavailable, ...]
    environment: dict[str, Any]
    options: dict[str, Any]

    @property
    def primary(self) -> Comparison | None:
        if not self.configurations or not self.configurations[0].comparisons:
            return None
        return self.configurations[0].comparisons[0]

    @property
    def speedup(self) -> float | None:
        return self.primary.speedup.value if self.primary else None

    @property
    def max_abs_diff(self) -> float | None:
        return self.primary.agreement.max_abs_diff if self.primary else None

    def ideal_speedup(self, candidate: int = 1) -> float | None:
        """MAC ratio reference / candidate: the speedup if time followed MACs."""
        ref, cand = self.models[0].cost, self.models[candidate].cost
        if ref is None or cand is None or not ref.macs or not cand.macs:
            return None
        return ref.macs / cand.macs

    def to_dict(self) -> dict[str, Any]:
        primary = self.primary
        first = self.configurations[0] if self.configurations else None
        return {
            "schema": SCHEMA,
            "speedup": primary.speedup.value if primary else None,
            "speedup_ci": [primary.speedup.low, primary.speedup.high] if primary else None,
            "ideal_speedup": self.ideal_speedup() if primary else None,
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": primary.agreement.max_rel_diff if primary else None,
            "top1_agreement": primary.agreement.top1_agreement if primary else None,
            "primary": {"provider": first.provider, "batch": first.batch} if first else None,
            "environment": self.environment,
            "options": self.options,
            "models": [self._model_dict(i, m) for i, m in enumerate(self.models)],
            "results": [self._config_dict(c) for c in self.configurations],
            "unavailable_providers": [dataclasses.asdict(u) for u in self.unavailable],
        }

    def _model_dict(self, index: int, model: ModelInfo) -> dict[str, Any]:
        cost = model.cost
        return {
            "role": role_of(index, len(self.models)),
            "path": model.path,
            "file_size_bytes": model.file_size_bytes,
            "macs": cost.macs if cost else None,
            "flops": cost.flops if cost else None,
            "params": cost.params if cost else None,
            "cost_input_shapes": {k: list(v) for k, v in model.cost_input_shapes.items()},
            "cost_unresolved_nodes": list(cost.unresolved) if cost else [],
            "cost_error": model.cost_error,
        }

    def _config_dict(self, config: Configuration) -> dict[str, Any]:
        count = len(self.models)
        return {
            "provider": config.provider,
            "batch": config.batch,
            "input_shapes": {k: list(v) for k, v in config.input_shapes.items()},
            "copies_timed": config.copies_timed,
            "input_dtypes": dict(config.input_dtypes),
            "models": [
                {
                    "role": role_of(i, count),
                    "session_create_s": round(config.session_create_s[i], 6),
                    "latency": stats.to_dict(),
                }
                for i, stats in enumerate(config.latency)
            ],
            "comparisons": [
                {
                    "candidate": role_of(c.candidate, count),
                    **c.speedup.to_dict(),
                    "ideal_speedup": self.ideal_speedup(c.candidate),
                    "agreement": c.agreement.to_dict(),
                }
                for c in config.comparisons
            ],
        }
