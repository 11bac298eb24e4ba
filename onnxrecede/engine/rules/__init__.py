"""Per-op channel rules, one module per family of ops. Importing this package registers them."""

from onnxrecede.engine.rules import (  # noqa: F401
    conv,
    elementwise,
    indexing,
    layout,
    linear,
    norm,
    pooling,
    reshape,
)
