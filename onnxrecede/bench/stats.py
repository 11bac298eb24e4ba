"""Latency statistics and a seeded bootstrap interval for the ratio of medians."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Latency of one model in one configuration; times in seconds."""

    runs: int
    median: float
    p90: float
    mean: float
    std: float
    min: float
    max: float
    batch: int

    @classmethod
    def from_samples(cls, samples: Sequence[float], batch: int) -> LatencyStats:
        a = np.asarray(samples, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no latency samples")
        return cls(
            runs=int(a.size),
            median=float(np.median(a)),
            p90=float(np.percentile(a, 90)),
            mean=float(a.mean()),
            std=float(a.std(ddof=1)) if a.size > 1 else 0.0,
            min=float(a.min()),
            max=float(a.max()),
            batch=batch,
        )

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return self.batch / self.median if self.median > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        ms = {
            k: round(getattr(self, k) * 1e3, 6)
            for k in ("median", "p90", "mean", "std", "min", "max")
        }
        return {
            "runs": self.runs,
            **{f"{k}_ms": v for k, v in ms.items()},
            "throughput_per_s": round(self.throughput, 4),
        }


@dataclasses.dataclass(frozen=True)
class Speedup:
    """``median(reference) / median(candidate)`` with a bootstrap confidence interval."""

    value: float
    low: float
    high: float
    confidence: float

    def to_dict(self) -> dict[str, float]:
        return {
            "speedup": round(self.value, 6),
            "ci_low": round(self.low, 6),
            "ci_high": round(self.high, 6),
            "confidence": self.confidence,
        }


def speedup_interval(
    reference: Sequence[float],
    candidate: Sequence[float],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Speedup:
    """Percentile bootstrap of the ratio of medians.

    Runs were interleaved, so run *i* of both models saw the same machine state: when both
    series have the same length the pairs are resampled together (a paired bootstrap), which
    keeps that shared drift out of the interval.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    value = float(np.median(ref) / np.median(cand))
    if resamples < 1 or ref.size < 2 or cand.size < 2:
        return Speedup(value, value, value, confidence)
    rng = np.random.default_rng(seed)
    idx_ref = rng.integers(0, ref.size, size=(resamples, ref.size))
    idx_cand = (
        idx_ref
        if ref.size == cand.size
        else rng.integers(0, cand.size, size=(resamples, cand.size))
    )
    ratios = np.median(ref[idx_ref], axis=1) / np.median(cand[idx_cand], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Speedup(value, float(low), float(high), confidence)
