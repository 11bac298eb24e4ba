"""``bench --cuda-graph``: replay ONNX Runtime CUDA graphs over fixed device buffers.

Cases:
1. The session is created with the CUDA EP option ``enable_cuda_graph``; every input and output
   is bound once to a device buffer of its final shape (ORT requires fixed addresses), so the
   first run captures the graph and each timed run replays it: launch-bound batch-1 numbers.
2. Output shapes and dtypes come from one CPU run of the model with the same feeds (the graph
   session must not run with host buffers before its capture).
3. ``outputs()`` copies the bound output buffers back after a replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from onnxrecede.bench.timing import DeviceRunner
from onnxrecede.runtime.session import cpu_session

CUDA_GRAPH_OPTION = "enable_cuda_graph"


class CudaGraphRunner(DeviceRunner):
    """Cases 1 and 3: IO-bound fixed device buffers, the graph captured at construction."""

    def __init__(
        self, session: Any, feeds: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
    ) -> None:
        super().__init__(session, feeds, "cuda", 0, fixed_outputs=outputs)
        self.run()  # the first run captures the graph

    def outputs(self) -> list[np.ndarray]:
        self.run()
        return [self._fixed[o.name].numpy() for o in self._session.get_outputs()]


def host_outputs(path: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Case 2: the model's outputs from one CPU run."""
    session = cpu_session(path)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, dict(feeds)), strict=True))
