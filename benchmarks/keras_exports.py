"""Keras models exported by tf2onnx with a dynamic batch: what the engine blocks, and whether
every cut equals the masked reference at batch sizes 1 and 3 (issue 19).

Two steps, in two environments (TensorFlow is no dependency of onnxrecede)::

    python3.11 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf2onnx onnx
    /tmp/tfenv/bin/python benchmarks/keras_exports.py export --out /tmp/keras
    .venv/bin/python benchmarks/keras_exports.py check --out /tmp/keras

``export`` builds keras.applications EfficientNetB0 and MobileNetV3Small (``weights=None``: no
download; logits out, BatchNorm statistics drawn at random so that every channel matters) and
converts them with tf2onnx (opset 15, input ``[None, 224, 224, 3]``). ``check`` inspects each,
prunes it at ``--ratio 0.5`` with filter-L1 importances, and compares the cut with the masked
reference (``tests/engine/oracle.py``) on random inputs of batch 1 and 3.
Results: ``benchmarks/results/keras-exports.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("EfficientNetB0", "MobileNetV3Small")


def export(out: Path) -> None:
    import numpy as np
    import onnx
    import tensorflow as tf
    import tf2onnx
    from tensorflow import keras

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in MODELS:
        build = getattr(keras.applications, name)
        model = build(weights=None, input_shape=(224, 224, 3), classifier_activation=None)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                shapes = [w.shape for w in layer.get_weights()]
                ranges = [(0.5, 1.5), (-0.2, 0.2), (-0.1, 0.1), (0.5, 1.5)]
                layer.set_weights([rng.uniform(lo, hi, s) for s, (lo, hi) in zip(shapes, ranges)])
        spec = [tf.TensorSpec([None, 224, 224, 3], tf.float32, name="input_1")]
        proto, _ = tf2onnx.convert.from_function(
            tf.function(lambda x, m=model: m(x, training=False)), input_signature=spec, opset=15
        )
        onnx.save(proto, out / f"{name.lower()}.onnx")
        print(f"{name}: TensorFlow {tf.__version__}, tf2onnx {tf2onnx.__version__}", flush=True)


def check(out: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT))
    import onnxrecede
    from onnxrecede.importance.criteria import compute_importances
    from tests.engine.oracle import assert_close, masked_oracle, run

    for name in MODELS:
        path = out / f"{name.lower()}.onnx"
        info = onnxrecede.inspect(path)
        blocked = [g for g in info.groups if g.status == "blocked"]
        print(f"{name}: {len(info.groups)} groups, {sum(g.size for g in info.groups)} channels; "
              f"blocked {len(blocked)} groups, {sum(g.size for g in blocked)} channels")  # fmt: skip
        for b in info.barriers:
            print(f"  barrier {b['op_type']} '{b['node']}': {b['reason']}")
        model = onnxrecede.load_model(path)
        imp = {k: v.tolist() for k, v in compute_importances(model, "l1").scores.items()}
        start = time.perf_counter()
        pruned, report = onnxrecede.prune(path, imp, ratio=0.5)
        seconds = time.perf_counter() - start
        print(f"  --ratio 0.5: MACs {report.macs_before:,} -> {report.macs_after:,} "
              f"({report.macs_after / report.macs_before:.3f}), params {report.params_before:,} "
              f"-> {report.params_after:,}, verification "
              f"{report.verification['masked_reference']}, {seconds:.1f} s")  # fmt: skip
        inputs = ort.InferenceSession(str(path)).get_inputs()
        for batch in (1, 3):
            rng = np.random.default_rng(batch)
            feeds = {
                i.name: rng.uniform(*((0, 255) if i.name == "input_1" else (0.5, 1.5)),
                                    [d if isinstance(d, int) and d > 0 else batch for d in i.shape]
                                    ).astype(np.float32)
                for i in inputs
            }  # fmt: skip
            expected, _ = run(masked_oracle(path, imp, ratio=0.5), feeds)
            actual, _ = run(pruned, feeds)
            assert_close(expected, actual)
            original, _ = run(path, feeds)
            diff = float(np.abs(expected[0] - actual[0]).max())
            moved = float(np.abs(original[0] - actual[0]).max())
            print(f"  batch {batch}: equals the masked reference (max abs diff {diff:.2g}); "
                  f"the cut moves the logits by up to {moved:.3g}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["export", "check"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/keras"))
    args = parser.parse_args()
    export(args.out) if args.step == "export" else check(args.out)


if __name__ == "__main__":
    main()
