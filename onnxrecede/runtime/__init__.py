"""ONNX Runtime: sessions and output comparison, probing intermediate tensors, accuracy."""

from onnxrecede.compat import forward_names

__getattr__ = forward_names(__name__)
