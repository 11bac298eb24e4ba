"""When does RNI's low mode form on a small real data set? A sweep over lambda, b, warm-up, epochs.

Trains VGG-16 (width 0.25 by default) with rni on ``--data digits`` for each setting given
(``lambda,b,warmup,epochs``), and records per setting: test accuracy, the share of channels whose
importance sigmoid(theta) is below 0.01 and 0.05 (the low mode), Sarle's bimodality coefficient,
the epoch at which 30 % of the channels first sat below 0.05, and the test accuracy right after a
global channel cut of 50 / 70 / 90 % (at least 3 channels per layer, no fine-tuning). The cut is
applied in torch by setting the scale of the removed channels to 0: a bounded BatchNorm has no
shift, so a channel with scale 0 outputs 0 after the ReLU, exactly what removing it does.

    python benchmarks/rni_low_mode.py --settings 1e-3,3,0,30 1e-2,0,0,30 [--width 0.25]

Results are appended one setting at a time to ``--out`` (JSON), so a killed run keeps what it
finished; settings already in the file are skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from onnxrecede.io.outputs import atomic_write_text
from onnxrecede.train.bounded_bn import bounded_modules
from onnxrecede.train.data import load_data, num_train_batches
from onnxrecede.train.loop import TrainConfig, bimodality_coefficient, evaluate, fit
from onnxrecede.train.regularizer import channel_importances

RESULTS = Path(__file__).parent / "results"


def global_keep(
    imps: dict[str, torch.Tensor], ratio: float, min_channels: int = 3
) -> dict[str, torch.Tensor]:
    """Keep masks of a global cut: drop the ``ratio`` lowest channels, then restore the top
    ``min_channels`` of any layer left with fewer."""
    names = list(imps)
    allv = torch.cat([imps[n] for n in names])
    k = int(round(ratio * len(allv)))
    order = torch.argsort(allv, stable=True)
    keep_all = torch.ones(len(allv), dtype=torch.bool)
    keep_all[order[:k]] = False
    out, start = {}, 0
    for n in names:
        v = imps[n]
        keep = keep_all[start : start + len(v)].clone()
        start += len(v)
        if int(keep.sum()) < min_channels:
            keep[torch.argsort(v, descending=True)[:min_channels]] = True
        out[n] = keep
    return out


def masked_cut_accuracy(model: torch.nn.Module, bundle, ratio: float) -> float:
    imps = channel_importances(model, "rni")
    keep = global_keep(imps, ratio)
    saved = {n: m.theta.detach().clone() for n, m in bounded_modules(model)}
    with torch.no_grad():
        for n, m in bounded_modules(model):
            m.theta[~keep[n]] = float("-inf")
    acc = evaluate(model, bundle.test, bundle, torch.device("cpu"))["acc"]
    with torch.no_grad():
        for n, m in bounded_modules(model):
            m.theta.copy_(saved[n])
    return acc


def run_setting(args: argparse.Namespace, setting: str, bundle) -> dict:
    lam, b, warm, epochs = setting.split(",")
    cfg = TrainConfig(
        model=args.model,
        method="rni",
        data=args.data,
        epochs=int(epochs),
        batch_size=64,
        lr=0.1,
        strength=float(lam),
        shift=float(b),
        reg_warmup=int(warm),
        width=args.width,
        seed=args.seed,
        device="cpu",
    )
    t0 = time.perf_counter()
    res = fit(cfg, bundle=bundle)
    v = torch.cat(list(channel_importances(res.model, "rni").values())).numpy()
    first_30 = next(
        (
            h["epoch"]
            for h in res.history
            if sum(
                c
                for c, e in zip(
                    h["importance_histogram"]["counts"], h["importance_histogram"]["edges"]
                )
                if e < 0.05
            )
            >= 0.3 * h["importance_histogram"]["n"]
        ),
        None,
    )
    return {
        "setting": setting,
        "lambda": float(lam),
        "b": float(b),
        "warmup_epochs": int(warm),
        "epochs": int(epochs),
        "steps": int(epochs) * num_train_batches(len(bundle.train), 64),
        "best_epoch": res.best_epoch,
        "test_acc": res.test["acc"] if res.test else None,
        "channels": int(len(v)),
        "below_0.01": float((v < 0.01).mean()),
        "below_0.05": float((v < 0.05).mean()),
        "above_0.5": float((v > 0.5).mean()),
        "quantiles": {q: float(np.quantile(v, float(q))) for q in ("0.1", "0.5", "0.7", "0.9")},
        "bimodality": bimodality_coefficient(v),
        "epoch_30pct_below_0.05": first_30,
        "cut_acc": {str(r): masked_cut_accuracy(res.model, bundle, r) for r in (0.5, 0.7, 0.9)},
        "below_0.05_per_epoch": [
            round(
                sum(
                    c
                    for c, e in zip(
                        h["importance_histogram"]["counts"], h["importance_histogram"]["edges"]
                    )
                    if e < 0.05
                )
                / h["importance_histogram"]["n"],
                3,
            )
            for h in res.history
        ],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", required=True, help="lambda,b,warmup,epochs ...")
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "rni-low-mode.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    doc["command"] = "python benchmarks/rni_low_mode.py " + " ".join(
        f"{k}" for k in ["--settings", *args.settings]
    )
    doc["model"], doc["width"], doc["data"], doc["seed"] = (
        args.model,
        args.width,
        args.data,
        args.seed,
    )
    done = {r["setting"] for r in doc["runs"]}
    bundle = load_data(args.data, 0.1, args.seed)
    for s in args.settings:
        if s in done:
            continue
        rec = run_setting(args, s, bundle)
        print(json.dumps({k: v for k, v in rec.items() if k != "below_0.05_per_epoch"}), flush=True)
        doc["runs"].append(rec)
        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
