"""The graph builder of the handmade test models (tests/models/handmade.py, keras_like.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10
INPUT_SHAPE = (1, 3, 8, 8)
SEED = 0


class GraphBuilder:
    """Collects nodes and random float32 initializers for one graph."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def rand(self, name: str, shape: Sequence[int], low: float = -0.5, high: float = 0.5) -> str:
        return self.init(name, self.rng.uniform(low, high, size=shape).astype(np.float32))

    def ints(self, name: str, values: Sequence[int]) -> str:
        return self.init(name, np.asarray(values, dtype=np.int64))

    def op(
        self, op_type: str, inputs: Sequence[str], name: str | None = None, **attrs: object
    ) -> str:
        """Add a single-output node; return its output name."""
        node_name = name or self.fresh(op_type.lower())
        out = f"{node_name}_out"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=node_name, **attrs))
        return out

    def multi(
        self, op_type: str, inputs: Sequence[str], n_out: int, name: str, **attrs: object
    ) -> list[str]:
        outs = [f"{name}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs

    def conv(
        self,
        x: str,
        name: str,
        cin: int,
        cout: int,
        k: int = 3,
        group: int = 1,
        pad: int | None = None,
    ) -> str:
        p = k // 2 if pad is None else pad
        w = self.rand(f"{name}.weight", (cout, cin // group, k, k))
        b = self.rand(f"{name}.bias", (cout,))
        return self.op("Conv", [x, w, b], name=name, kernel_shape=[k, k], pads=[p] * 4, group=group)

    def head(self, x: str, cin: int) -> str:
        """GlobalAveragePool -> Flatten -> Gemm to 10 classes."""
        pooled = self.op("Flatten", [self.op("GlobalAveragePool", [x])], axis=1)
        w, b = self.rand("fc.weight", (10, cin)), self.rand("fc.bias", (10,))
        return self.op("Gemm", [pooled, w, b], name="fc", transB=1)

    def model(
        self,
        output: str,
        out_shape: Sequence[int | str],
        opset: int = 17,
        input_shape: Sequence[int | str] = INPUT_SHAPE,
    ) -> onnx.ModelProto:
        """The graph reading ``input`` (dims may be symbolic names) and writing ``output``."""
        self.nodes.append(helper.make_node("Identity", [output], ["output"], name="output_id"))
        graph = helper.make_graph(
            self.nodes,
            "handmade",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(out_shape))],
            self.inits,
        )
        opsets = [helper.make_opsetid("", opset)]
        return helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION)
