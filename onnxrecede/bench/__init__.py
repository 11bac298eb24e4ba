"""Latency benchmarking with ONNX Runtime: interleaved timing, cost counts, output agreement.

``compare(reference, candidate, options)`` is the library entry point used by ``onnxrecede
bench`` and ``onnxrecede prune --bench``; ``format_comparison`` renders its result.
"""

from __future__ import annotations

from onnxrecede.bench.agreement import Agreement, OutputAgreement
from onnxrecede.bench.driver import benchmark, compare, model_file_size
from onnxrecede.bench.gate import EXIT_TOO_SLOW, SpeedupBelowBarError, check_speedup
from onnxrecede.bench.options import BenchOptions
from onnxrecede.bench.report import format_comparison
from onnxrecede.bench.result import BenchResult, Comparison, Configuration, ModelInfo
from onnxrecede.bench.stats import LatencyStats, Speedup, speedup_interval

__all__ = [
    "EXIT_TOO_SLOW",
    "SpeedupBelowBarError",
    "check_speedup",
    "Agreement",
    "BenchOptions",
    "BenchResult",
    "Comparison",
    "Configuration",
    "LatencyStats",
    "ModelInfo",
    "OutputAgreement",
    "Speedup",
    "benchmark",
    "compare",
    "format_comparison",
    "model_file_size",
    "speedup_interval",
]
