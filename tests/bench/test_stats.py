"""Latency statistics and the bootstrap interval of the speedup."""

from __future__ import annotations

import pytest

from onnxrecede.bench.stats import LatencyStats, speedup_interval


def test_latency_stats_from_known_samples() -> None:
    stats = LatencyStats.from_samples([0.001 * i for i in range(1, 11)], batch=4)
    assert stats.runs == 10
    assert stats.median == pytest.approx(0.0055)
    assert stats.mean == pytest.approx(0.0055)
    assert stats.p90 == pytest.approx(0.0091)
    assert (stats.min, stats.max) == (pytest.approx(0.001), pytest.approx(0.010))
    assert stats.throughput == pytest.approx(4 / 0.0055)
    d = stats.to_dict()
    assert d["median_ms"] == pytest.approx(5.5) and d["runs"] == 10


def test_speedup_is_ratio_of_medians_with_seeded_interval() -> None:
    reference = [0.010 + 0.0001 * (i % 7) for i in range(50)]
    candidate = [0.005 + 0.0001 * (i % 5) for i in range(50)]
    s = speedup_interval(reference, candidate, resamples=500, seed=3)
    assert s.value == pytest.approx(0.0103 / 0.0052)
    assert s.low <= s.value <= s.high
    assert s == speedup_interval(reference, candidate, resamples=500, seed=3)


def test_identical_series_give_a_degenerate_interval_at_one() -> None:
    series = [0.002, 0.003, 0.0025, 0.004, 0.0021]
    s = speedup_interval(series, series, resamples=200)
    assert (s.value, s.low, s.high) == (1.0, 1.0, 1.0)
