"""Importance histograms after a short CPU run: rni (two modes) vs l1 (one mode).

A short run cannot use the authors' 160-epoch strengths (1e-4 .. 1e-3): the push would barely
move theta. Strengths are raised so that the same number of steps shows each method's shape;
both are stated in the results file.

    python benchmarks/importance_histograms.py [--epochs 4] [--data synthetic:1000] [--width 0.125]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from onnxrecede.train.data import load_data  # noqa: E402
from onnxrecede.train.loop import TrainConfig, fit  # noqa: E402
from onnxrecede.train.regularizer import channel_importances  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def bimodality(v: np.ndarray) -> float:
    """Sarle's bimodality coefficient (> 0.555 suggests two modes)."""
    n = len(v)
    m = v - v.mean()
    s2 = (m**2).mean()
    skew = (m**3).mean() / s2**1.5
    kurt = (m**4).mean() / s2**2 - 3
    return float((skew**2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--data", default="synthetic:1000")
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--rni-strength", type=float, default=5e-2)
    ap.add_argument("--rni-shift", type=float, default=1.0)
    ap.add_argument("--l1-strength", type=float, default=5e-3)
    args = ap.parse_args()
    bundle = load_data(args.data, 0.1, 0)
    runs = {"rni": (args.rni_strength, args.rni_shift), "l1": (args.l1_strength, 0.0)}
    doc: dict = {"settings": vars(args), "methods": {}}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
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
            "bimodality_coefficient": bimodality(scaled),
        }
        ax.hist(scaled, bins=40, range=(0, 1))
        ax.set_title(f"{method}: final importances ({len(v)} channels)")
        ax.set_xlabel("sigmoid(theta)" if method == "rni" else "|gamma| / max|gamma|")
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "train-histograms.png", dpi=90)
    (RESULTS / "train-histograms.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
