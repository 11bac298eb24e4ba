"""Timed runs: one runner per session, timed interleaved so machine drift hits all alike."""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from onnxrecede.bench.options import MIN_RUNS
from onnxrecede.progress import Progress
from onnxrecede.runtime.session import import_ort


class Runner(Protocol):
    """Runs one inference and says how long it took."""

    def run(self) -> float:
        """One inference; the elapsed time in seconds."""
        ...

    def outputs(self) -> list[np.ndarray]:
        """Outputs of one (untimed) inference, on the host."""
        ...


class HostRunner:
    """``session.run`` with host arrays: on a GPU this times host<->device copies too."""

    def __init__(self, session: Any, feeds: Mapping[str, np.ndarray]) -> None:
        self._session = session
        self._feeds = dict(feeds)

    def run(self) -> float:
        start = time.perf_counter()
        self._session.run(None, self._feeds)
        return time.perf_counter() - start

    def outputs(self) -> list[np.ndarray]:
        return list(self._session.run(None, self._feeds))


class DeviceRunner:
    """IO binding with inputs and outputs kept on the device, so copies are not timed."""

    def __init__(
        self,
        session: Any,
        feeds: Mapping[str, np.ndarray],
        device: str = "cuda",
        device_id: int = 0,
        fixed_outputs: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """``fixed_outputs``: bind each output to a device buffer shaped like the given array
        (fixed addresses, as CUDA graphs need) instead of letting ORT allocate it."""
        ort = import_ort()
        self._session = session
        self._feeds = dict(feeds)
        self._binding = session.io_binding()
        # Keep the device copies alive as long as the binding refers to them.
        self._device_inputs = {
            name: ort.OrtValue.ortvalue_from_numpy(array, device, device_id)
            for name, array in feeds.items()
        }
        for name, value in self._device_inputs.items():
            self._binding.bind_ortvalue_input(name, value)
        self._fixed = {
            name: ort.OrtValue.ortvalue_from_numpy(np.zeros_like(a), device, device_id)
            for name, a in (fixed_outputs or {}).items()
        }
        for out in session.get_outputs():
            if out.name in self._fixed:
                self._binding.bind_ortvalue_output(out.name, self._fixed[out.name])
            else:
                self._binding.bind_output(out.name, device, device_id)
        self._binding.synchronize_inputs()

    def run(self) -> float:
        start = time.perf_counter()
        self._session.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()
        return time.perf_counter() - start

    def outputs(self) -> list[np.ndarray]:
        return list(self._session.run(None, self._feeds))


def measure_interleaved(
    runners: Sequence[Runner],
    *,
    warmup: int,
    runs: int | None,
    seconds: float | None,
    progress: Progress | None = None,
    stage: str = "timing",
) -> list[list[float]]:
    """Latency samples of every runner, timed in turn: A B A B ... (or A B C A B C ...).

    Exactly ``runs`` rounds, or rounds until ``seconds`` have passed (at least ``MIN_RUNS``).
    The garbage collector is paused meanwhile so that its pauses land on no run.
    """
    if (runs is None) == (seconds is None):
        raise ValueError("give exactly one of runs and seconds")
    for _ in range(warmup):
        for runner in runners:
            runner.run()
    samples: list[list[float]] = [[] for _ in runners]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = last_report = time.perf_counter()
        rounds = 0
        while True:
            for runner, series in zip(runners, samples, strict=True):
                series.append(runner.run())
            rounds += 1
            now = time.perf_counter()
            if runs is not None:
                done, total, finished = rounds, runs, rounds >= runs
            else:
                assert seconds is not None
                elapsed = now - start
                done, total = min(int(100 * elapsed / seconds), 100), 100
                finished = rounds >= MIN_RUNS and elapsed >= seconds
            if progress is not None and (finished or now - last_report > 0.1):
                progress(stage, done, total)
                last_report = now
            if finished:
                return samples
    finally:
        if gc_was_enabled:
            gc.enable()
