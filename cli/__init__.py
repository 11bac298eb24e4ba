"""The ``onnxrecede`` command line (installed as the ``onnxrecede_cli`` package)."""
