"""Timing one small model on one provider: the median of repeated runs after a warm-up."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxrecede.bench.driver import cpu_name, gpu_name
from onnxrecede.bench.timing import DeviceRunner, HostRunner, Runner, measure_interleaved
from onnxrecede.runtime.session import import_ort, provider_full_name, provider_session

SHORT = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "tensorrt",
}


#: the quantile of a point's runs taken as its latency (0: the fastest run; on a machine
#: shared with other jobs most runs of a small op are slowed by other processes)
QUANTILE = 0.0


@dataclass(frozen=True)
class Timing:
    """How each point is timed: warm-up runs, then runs for at least ``seconds`` (per point,
    the points of one layer interleaved)."""

    warmup: int = 3
    seconds: float = 0.03

    def label(self) -> str:
        return f"w{self.warmup}s{self.seconds:g}q{QUANTILE:g}"


@dataclass(frozen=True)
class Device:
    """Where the table is measured: provider (ORT name) and threads."""

    provider: str = "CPUExecutionProvider"
    threads: int | None = None

    @classmethod
    def parse(cls, provider: str, threads: int | None) -> Device:
        return cls(provider_full_name(provider), threads)

    def session(self, model: bytes | str) -> Any:
        """A session that really runs on the provider (:class:`ProviderUnavailableError`)."""
        options = {"device_id": "0"} if self.provider != "CPUExecutionProvider" else {}
        if self.provider == "CUDAExecutionProvider":
            options["cudnn_conv_algo_search"] = "EXHAUSTIVE"
        config = {"session.intra_op.allow_spinning": "0"}
        return provider_session(
            model, self.provider, threads=self.threads, provider_options=options, config=config
        )

    def runner(self, session: Any, feeds: Mapping[str, np.ndarray]) -> Runner:
        if self.provider == "CPUExecutionProvider":
            return HostRunner(session, feeds)
        return DeviceRunner(session, feeds, "cuda", 0)

    def machine(self, timing: Timing) -> dict[str, Any]:
        ort = import_ort()
        return {
            "provider": SHORT[self.provider],
            "device": device_name(self.provider),
            "cpu": cpu_name(),
            "cpu_count": os.cpu_count(),
            "threads": self.threads,
            "onnxruntime_version": ort.__version__,
            "platform": platform.platform(),
            "timing": timing.label(),
        }


def device_name(provider: str) -> str:
    """The CPU model, or the GPU name that nvidia-smi reports (device 0)."""
    return cpu_name() if provider == "CPUExecutionProvider" else gpu_name()


def interleaved_ms(
    device: Device, models: Sequence[tuple[bytes, Mapping[str, np.ndarray]]], timing: Timing
) -> list[float]:
    """Latency in ms of each model, timed interleaved (A B C A B C ...: a busy spell of the
    machine hits every point of a curve alike), each the ``QUANTILE`` of its runs."""
    runners = [device.runner(device.session(m), feeds) for m, feeds in models]
    samples = measure_interleaved(
        runners, warmup=timing.warmup, runs=None, seconds=timing.seconds * len(runners)
    )
    return [1e3 * float(np.quantile(s, QUANTILE)) for s in samples]
