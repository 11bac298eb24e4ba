"""ONNX Runtime: sessions and output comparison, probing intermediate tensors, accuracy."""
