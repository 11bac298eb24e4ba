"""Importance histograms after a short CPU run: rni (two modes) vs l1 (one mode).

A short run cannot use the authors' 160-epoch strengths (1e-4 .. 1e-3): the push would barely
move theta. Strengths are raised so that the same number of steps shows each method's shape;
both are stated in the results file.

    python benchmarks/importance_histograms.py [--epochs 10] [--data synthetic:1000] [--width 0.125]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from onnxrecede.train.data import load_data  # noqa: E402
from onnxrecede.train.loop import TrainConfig, bimodality_coefficient, fit  # noqa: E402
from onnxrecede.train.regularizer import channel_importances, prune_scope  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def pruned_accuracies(model, method, bundle, tmp: Path, ratios) -> dict[str, float]:
    """Test accuracy (ONNX Runtime) of the exported model, unpruned and pruned, no fine-tuning."""
    import onnxruntime as ort

    import onnxrecede
    from onnxrecede.train.data import normalize
    from onnxrecede.train.export import export_model, importances_to_export

    onnx_path, imp_path = tmp / f"{method}.onnx", tmp / f"{method}.json"
    export_model(model, onnx_path, imp_path, importances_to_export(model, method))
    x = normalize(bundle.test.images, bundle.mean, bundle.std).numpy()
    y = bundle.test.labels.numpy()

    def acc(path: Path) -> float:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return float((sess.run(None, {"input": x})[0].argmax(1) == y).mean())

    out = {"0.0": acc(onnx_path)}
    for r in ratios:
        pruned, _ = onnxrecede.prune(onnx_path, imp_path, ratio=r, scope=prune_scope(method))
        onnxrecede.save_model(pruned, tmp / f"{method}-{r}.onnx")
        out[str(r)] = acc(tmp / f"{method}-{r}.onnx")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--data", default="synthetic:1000")
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--rni-strength", type=float, default=1e-2)
    ap.add_argument("--rni-shift", type=float, default=0.0)
    ap.add_argument("--l1-strength", type=float, default=5e-3)
    args = ap.parse_args()
    bundle = load_data(args.data, 0.1, 0)
    runs = {
        "rni": (args.rni_strength, args.rni_shift),
        "l1": (args.l1_strength, 0.0),
        "ucs": (0.0, 0.0),
    }
    doc: dict = {"settings": vars(args), "methods": {}}
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    tmp = Path(tempfile.mkdtemp(prefix="onnxrecede-hist-"))
    for ax, (method, (strength, shift)) in zip(axes, runs.items(), strict=True):
        cfg = TrainConfig(
            model="vgg16",
            method=method,
            data=args.data,
            epochs=args.epochs,
            width=args.width,
            batch_size=32,
            lr=0.05,
            milestones=(0.75,),
            augment=False,
            strength=strength,
            shift=shift,
        )
        res = fit(cfg, bundle=bundle)
        v = torch.cat(list(channel_importances(res.model, method).values())).numpy()
        # rni's importances lie in (0, 1); l1's |gamma| is unbounded: compare shapes on [0, 1]
        scaled = v if method == "rni" else v / v.max()
        counts, edges = np.histogram(scaled, bins=20, range=(0, 1))
        doc["methods"][method] = {
            "strength": strength,
            "shift": shift,
            "channels": len(v),
            "best_val_acc": res.best_val_acc,
            "test_acc": (res.test or {}).get("acc"),
            "counts_scaled_0_1": counts.tolist(),
            "max": float(v.max()),
            "frac_below_0.05_of_max": float((scaled < 0.05).mean()),
            "bimodality_coefficient": bimodality_coefficient(scaled),
            "test_acc_after_prune": pruned_accuracies(
                res.model, method, bundle, tmp, (0.3, 0.5, 0.7, 0.9)
            ),
        }
        ax.hist(scaled, bins=40, range=(0, 1))
        ax.set_title(f"{method}: final importances ({len(v)} channels)")
        ax.set_xlabel("sigmoid(theta)" if method == "rni" else "|gamma| / max|gamma|")
    shutil.rmtree(tmp, ignore_errors=True)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "train-histograms.png", dpi=90)
    (RESULTS / "train-histograms.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
