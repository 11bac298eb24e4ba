"""Repairing a cut without fine-tuning: linear consumers, bias compensation, reconstruction."""

from onnxrecede.compat import forward_names

__getattr__ = forward_names(__name__)
