"""Sample data for calibration and evaluation: npz, image folders, CIFAR, digits."""

from onnxrecede.compat import forward_names

__getattr__ = forward_names(__name__)
