"""A linear layer's output as a matrix product, for least-squares refits.

Every layer here computes, per group ``g`` and output row ``r`` (an output position),
``y[r, g-th outputs] = rows_g[r] @ theta_g + bias``, where ``rows_g`` are the inputs the group's
outputs read. Cases:

1. ``Conv`` (1-D or 2-D, any ``group``, so depthwise too): a row is the im2col patch of one output
   position over the group's input channels, ``cin_g * kh * kw`` values (channel-major);
2. ``ConvTranspose`` (2-D, any ``group``): for output position ``p`` and tap ``k`` the row reads
   input position ``(p + pad - k * dilation) / stride`` when that is a whole, in-range number,
   else 0;
3. ``Gemm`` / ``MatMul`` with a constant 2-D weight: one group, one tap, a row per sample (per
   position of the leading axes for MatMul); biases as :mod:`onnxrecede.repair.consumers` reads them.

Weights may be initializers, ``Constant`` nodes or constant chains (``Identity``, ``Cast``,
``DequantizeLinear`` of constants): they are read through the constant evaluator and written
back as a new initializer when the node does not own one. ``auto_pad`` other than
``NOTSET``/``VALID`` and ``output_shape`` on ConvTranspose are refused with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.repair.consumers import (
    read_bias,
    read_weight,
    set_constant_input,
    write_bias,
    write_weight,
)

CONV_OPS = ("Conv", "ConvTranspose")
LINEAR_OPS = (*CONV_OPS, "Gemm", "MatMul")


@dataclass(frozen=True)
class LinearLayer:
    """The geometry of one linear layer (read from the node as it is now)."""

    node: ir.Node
    groups: int
    kernel: tuple[int, ...]  #: () for Gemm/MatMul
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]  #: begin..., end...
    cin: int
    cout: int

    @property
    def taps(self) -> int:
        return int(np.prod(self.kernel)) if self.kernel else 1

    @property
    def unknowns(self) -> int:
        """Weights plus bias of one group's output: the columns of its normal equations."""
        return self.cin // self.groups * self.taps + 1

    # ------------------------------------------------------------------ weights

    def read(self, const: ConstantEvaluator) -> tuple[list[np.ndarray], np.ndarray]:
        """Per group ``theta_g`` ``[cin_g * taps, cout_g]`` float64, and the bias ``[cout]``."""
        op = self.node.op_type
        if op in ("Gemm", "MatMul"):
            w = read_weight(self.node, const)[:, :, 0]
            return [w.T.copy()], read_bias(self.node, self.cout, const)
        w = np.asarray(const.value(self.node.inputs[1]), dtype=np.float64)
        g, cin_g, cout_g = self.groups, self.cin // self.groups, self.cout // self.groups
        thetas = []
        for i in range(g):
            if op == "Conv":
                block = w[i * cout_g : (i + 1) * cout_g].reshape(cout_g, -1).T
            else:  # ConvTranspose: [Cin, Cout/g, *k]
                part = w[i * cin_g : (i + 1) * cin_g]
                block = np.moveaxis(part, 1, -1).reshape(-1, cout_g)
            thetas.append(np.ascontiguousarray(block))
        return thetas, read_bias(self.node, self.cout, const)

    def write(self, graph: ir.Graph, thetas: list[np.ndarray], bias: np.ndarray) -> None:
        """Store refitted weights and bias in the node's own layout and dtype."""
        old = self.node.inputs[1]
        assert old is not None
        dtype = np.dtype(old.dtype.numpy()) if old.dtype is not None else np.dtype("float32")
        op = self.node.op_type
        if op in ("Gemm", "MatMul"):
            write_weight(graph, self.node, thetas[0].T[:, :, None])
        else:
            cin_g, cout_g = self.cin // self.groups, self.cout // self.groups
            if op == "Conv":
                blocks = [t.T.reshape(cout_g, cin_g, *self.kernel) for t in thetas]
            else:
                blocks = [
                    np.moveaxis(t.reshape(cin_g, *self.kernel, cout_g), -1, 1) for t in thetas
                ]
            array = np.ascontiguousarray(np.concatenate(blocks), dtype=dtype)
            set_constant_input(graph, self.node, 1, array, "weight")
        write_bias(graph, self.node, bias, dtype)

    # ------------------------------------------------------------------ rows

    def output_positions(self, shape: tuple[int, ...]) -> int:
        """How many rows one batch's output of this shape gives."""
        if self.kernel:
            return int(np.prod(shape[:1] + shape[2:]))
        return int(np.prod(shape[:-1])) if self.node.op_type == "MatMul" else int(shape[0])

    def rows(self, x: np.ndarray, picks: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
        """Design rows ``[len(picks), cin * taps]`` (groups side by side, channel-major) for the
        flat output positions ``picks`` of an output of shape ``out_shape``."""
        if not self.kernel:
            axis = self.data_axis(x.ndim)
            flat = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
            return flat[picks]
        x4, spatial = _as_2d(x), _as_2d_shape(out_shape)
        n, h, w = np.unravel_index(picks, (spatial[0], spatial[2], spatial[3]))
        geometry = _pad2(self.kernel, self.strides, self.dilations, self.pads)
        if self.node.op_type == "Conv":
            return conv_rows(x4, (n, h, w), geometry)
        return conv_transpose_rows(x4, (n, h, w), geometry)

    def targets(self, y: np.ndarray, picks: np.ndarray) -> np.ndarray:
        """The output values ``[len(picks), cout]`` at the same flat positions."""
        if not self.kernel:
            return y.reshape(-1, y.shape[-1])[picks]
        flat = np.moveaxis(y, 1, -1).reshape(-1, y.shape[1])
        return flat[picks]

    def data_axis(self, ndim: int) -> int:
        if self.node.op_type == "Gemm":
            return 0 if self.node.attributes.get_int("transA", 0) else 1
        return 1 if self.kernel else ndim - 1


def linear_layer(node: ir.Node, const: ConstantEvaluator) -> LinearLayer | str:
    """The node's geometry, or why it cannot be refitted."""
    op = node.op_type
    if op not in LINEAR_OPS:
        return f"{op} is not a linear layer"
    w = const.value(node.inputs[1]) if len(node.inputs) > 1 else None
    if w is None:
        return "its weight is not a constant"
    if op in ("Gemm", "MatMul"):
        if w.ndim != 2:
            return "the weight is not a constant matrix"
        c = const.value(node.inputs[2]) if op == "Gemm" and len(node.inputs) > 2 else None
        if c is not None and c.ndim == 2 and c.shape[0] != 1:
            return "its C input is not a per-column constant"
        wt = read_weight(node, const)
        return LinearLayer(node, 1, (), (), (), (), int(wt.shape[1]), int(wt.shape[0]))
    if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "auto_pad padding"
    if op == "ConvTranspose" and node.attributes.get("output_shape") is not None:
        return "ConvTranspose with output_shape"
    if w.ndim not in (3, 4):
        return f"{w.ndim - 2}-D kernels are not refitted (1-D and 2-D are)"
    if op == "ConvTranspose" and w.ndim != 4:
        return "only 2-D ConvTranspose is refitted"
    groups = node.attributes.get_int("group", 1)
    kernel = tuple(int(d) for d in w.shape[2:])
    spatial = len(kernel)
    strides = tuple(node.attributes.get_ints("strides", [1] * spatial) or [1] * spatial)
    dilations = tuple(node.attributes.get_ints("dilations", [1] * spatial) or [1] * spatial)
    pads = tuple(node.attributes.get_ints("pads", [0] * 2 * spatial) or [0] * 2 * spatial)
    if op == "Conv":
        cout, cin = int(w.shape[0]), int(w.shape[1]) * groups
    else:
        cin, cout = int(w.shape[0]), int(w.shape[1]) * groups
    return LinearLayer(node, groups, kernel, strides, dilations, pads, cin, cout)


# ----------------------------------------------------------------------------- 2-D gathers

#: kernel, strides, dilations, pads (top, left, bottom, right) of a 2-D layer
Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int, int, int]]


Positions = tuple[np.ndarray, np.ndarray, np.ndarray]  #: n, h, w of output positions


def _pad2(kernel: tuple[int, ...], strides: tuple[int, ...], dilations: tuple[int, ...],
          pads: tuple[int, ...]) -> Geometry:  # fmt: skip
    if len(kernel) == 2:
        return (kernel[0], kernel[1]), (strides[0], strides[1]), (dilations[0], dilations[1]), (
            pads[0], pads[1], pads[2], pads[3])  # fmt: skip
    return (1, kernel[0]), (1, strides[0]), (1, dilations[0]), (0, pads[0], 0, pads[1])


def _as_2d(x: np.ndarray) -> np.ndarray:
    return x[:, :, None, :] if x.ndim == 3 else x


def _as_2d_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[1], 1, shape[2]) if len(shape) == 3 else tuple(shape)


def conv_rows(x: np.ndarray, positions: Positions, geometry: Geometry) -> np.ndarray:
    """im2col rows ``[rows, C * kh * kw]`` of a 2-D conv input at output positions (n, h, w)."""
    n, ho, wo = positions
    kernel, strides, dilations, pads = geometry
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    taps = np.empty((len(n), x.shape[1], kernel[0] * kernel[1]), dtype=x.dtype)
    for t, (i, j) in enumerate(np.ndindex(*kernel)):
        taps[:, :, t] = xp[
            n, :, ho * strides[0] + i * dilations[0], wo * strides[1] + j * dilations[1]
        ]
    return taps.reshape(len(n), -1)


def conv_transpose_rows(x: np.ndarray, positions: Positions, geometry: Geometry) -> np.ndarray:
    """Rows ``[rows, C * kh * kw]`` of a 2-D ConvTranspose at output positions (case 2)."""
    n, ho, wo = positions
    kernel, strides, dilations, pads = geometry
    height, width = x.shape[2], x.shape[3]
    taps = np.zeros((len(n), x.shape[1], kernel[0] * kernel[1]), dtype=x.dtype)
    for t, (i, j) in enumerate(np.ndindex(*kernel)):
        hn = ho + pads[0] - i * dilations[0]
        wn = wo + pads[1] - j * dilations[1]
        hi, wi = hn // strides[0], wn // strides[1]
        ok = (hn % strides[0] == 0) & (wn % strides[1] == 0)
        ok &= (hi >= 0) & (hi < height) & (wi >= 0) & (wi < width)
        taps[ok, :, t] = x[n[ok], :, hi[ok], wi[ok]]
    return taps.reshape(len(n), -1)
