"""What a benchmark measures and how: one frozen options object shared by CLI and library."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from onnxrecede.errors import InputError
from onnxrecede.runtime.session import check_tolerances, provider_full_name

DEFAULT_SECONDS = 5.0
#: cuDNN convolution algorithm searches (ORT 1.20+ maps DEFAULT to a slow fallback)
CUDNN_SEARCHES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
#: Fewest timed runs per model, even when ``seconds`` runs out first.
MIN_RUNS = 5


def default_trt_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "onnxrecede" / "tensorrt"


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """Options of a benchmark.

    ``runs`` and ``seconds`` are exclusive: ``runs`` timed runs per model, or as many as fit in
    ``seconds`` of timing per configuration (all models together, at least :data:`MIN_RUNS`).
    Neither given means ``seconds=5``.
    """

    providers: tuple[str, ...] = ("cpu",)
    batches: tuple[int, ...] = (1,)
    shapes: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    threads: int | None = None
    warmup: int = 5
    runs: int | None = None
    seconds: float | None = None
    inputs: Path | None = None
    include_copies: bool = False
    trt_cache_dir: Path = dataclasses.field(default_factory=default_trt_cache_dir)
    spin: bool = False
    cuda_graph: bool = False
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    seed: int = 0
    atol: float = 1e-5
    rtol: float = 1e-5
    bootstrap: int = 2000
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.runs is not None and self.seconds is not None:
            raise InputError("give either --runs or --seconds, not both")
        if self.runs is not None and self.runs < 1:
            raise InputError(f"--runs must be at least 1, got {self.runs}")
        if self.seconds is not None and self.seconds <= 0:
            raise InputError(f"--seconds must be positive, got {self.seconds}")
        if self.warmup < 0:
            raise InputError(f"--warmup must be >= 0, got {self.warmup}")
        check_tolerances(self.atol, self.rtol)
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        if not self.providers:
            raise InputError("--providers is empty; give e.g. --providers cpu,cuda")
        if not self.batches or any(b < 1 for b in self.batches):
            raise InputError(f"--batch values must be positive integers, got {self.batches}")
        if not 0 < self.confidence < 1:
            raise InputError(f"confidence must be in (0, 1), got {self.confidence}")
        # Canonical, de-duplicated provider names; unknown names fail here, before any work.
        full = tuple(dict.fromkeys(provider_full_name(p) for p in self.providers))
        object.__setattr__(self, "providers", full)
        self._check_cuda()

    def _check_cuda(self) -> None:
        if self.cudnn_conv_algo_search not in CUDNN_SEARCHES:
            raise InputError(
                f"--cudnn-conv-algo-search must be one of {', '.join(CUDNN_SEARCHES)}, got "
                f"'{self.cudnn_conv_algo_search}'"
            )
        if not self.cuda_graph:
            return
        if self.providers != ("CUDAExecutionProvider",):
            raise InputError("--cuda-graph runs on the CUDA EP only: give --providers cuda")
        if self.include_copies:
            raise InputError("--cuda-graph binds fixed device buffers: drop --include-copies")

    @property
    def time_budget(self) -> float | None:
        """Seconds of timing per configuration, or None when a fixed run count is used."""
        if self.runs is not None:
            return None
        return self.seconds if self.seconds is not None else DEFAULT_SECONDS
