"""ONNX Runtime: sessions and output comparison, probing intermediate tensors, accuracy."""

from onnxrecede._deprecated import forward_names

__getattr__ = forward_names(__name__)
