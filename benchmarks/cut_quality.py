"""Cut quality without fine-tuning: plain vs --compensate vs --reconstruct on a trained CNN.

The model is the tests' digits CNN (tests/quality/digits_model.py: 4 convs with plain
BatchNorm, trained on scikit-learn's digits, exported with BN folded). Importances: filter L1,
normalised per node (``onnxrecede importances --criterion l1``, ``--normalize rank`` by default:
a global cut of p takes about p of every node). For every ratio
and scope (local = the same fraction of every layer, global = one ranking), the model is pruned
three ways and evaluated on the 360 test digits in ONNX Runtime:

- plain: the cut alone;
- compensate: ``--compensate`` with 256 calibration images (digits:train);
- reconstruct: ``--reconstruct`` with the same 256 images.

    python benchmarks/cut_quality.py            # writes benchmarks/results/cut-quality.{json,md}
    python benchmarks/cut_quality.py --model-only --save-model digits_cnn.onnx   # just the model
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.quality: the digits model

import onnxruntime  # noqa: E402
import torch  # noqa: E402

from onnxrecede import api  # noqa: E402
from onnxrecede.data.sources import input_specs, open_samples  # noqa: E402
from onnxrecede.importance.criteria import compute_importances  # noqa: E402
from onnxrecede.io.model_files import load_model  # noqa: E402
from onnxrecede.repair.steps import RepairOptions  # noqa: E402
from onnxrecede.runtime.evaluate import evaluate  # noqa: E402
from tests.models.digits_model import export, train  # noqa: E402

METHODS = ("plain", "compensate", "reconstruct")


def _repair(method: str, limit: int) -> RepairOptions | None:
    if method == "plain":
        return None
    return RepairOptions(
        compensate=method == "compensate",
        reconstruct=method == "reconstruct",
        calibration="digits:train",
        limit=limit,
    )


def trained_model(epochs: int, path: Path) -> tuple[Path, float]:
    """Train the digits CNN (one thread, fixed seed) and export it to ``path``."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = train(epochs=epochs)
    return export(model, path), time.perf_counter() - t0


def run(
    ratios: list[float], limit: int, epochs: int, save: str | None, normalize: str
) -> dict[str, Any]:
    target = Path(save) if save else Path(tempfile.mkdtemp(prefix="cut-quality-")) / "digits.onnx"
    path, train_s = trained_model(epochs, target)
    imp = compute_importances(load_model(path), "l1", normalize=normalize)
    test = open_samples("digits:test", input_specs(str(path)))
    original = evaluate(str(path), test)
    rows = []
    for scope in ("local", "global"):
        for ratio in ratios:
            for method in METHODS:
                t = time.perf_counter()
                pruned, report = api.prune(
                    str(path), imp, ratio=ratio, scope=scope, repair=_repair(method, limit)
                )
                seconds = time.perf_counter() - t
                acc = evaluate(pruned, test)
                rows.append(
                    {
                        "scope": scope,
                        "ratio": ratio,
                        "method": method,
                        "top1": acc.top1,
                        "top5": acc.top5,
                        "macs_kept": report.macs_after / report.macs_before,
                        "prune_seconds": round(seconds, 2),
                    }
                )
                print(scope, ratio, method, f"{100 * acc.top1:.2f}%", f"{seconds:.1f}s", flush=True)
    return {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "note": "AMD EPYC, 2 logical CPUs, no GPU; shared with other jobs",
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
        },
        "model": "tests/quality/digits_model.py (4 convs 16-32-32-64, BN folded)",
        "train_seconds": round(train_s, 1),
        "epochs": epochs,
        "importances": {"criterion": "l1", "normalize": normalize},
        "calibration": {"source": "digits:train", "samples": limit},
        "test": {"source": "digits:test", "samples": len(test)},
        "original": {"top1": original.top1, "top5": original.top5},
        "rows": rows,
    }


def markdown(doc: dict[str, Any]) -> str:
    o = doc["original"]["top1"]
    lines = [
        f"# Cut quality without fine-tuning (digits CNN, filter L1, {doc['importances']['normalize']}"
        " normalisation)",
        "",
        f"`python benchmarks/cut_quality.py`; {doc['machine']['note']}; onnxruntime "
        f"{doc['machine']['onnxruntime']}. Original top-1 {100 * o:.2f}% on "
        f"{doc['test']['samples']} test digits; calibration {doc['calibration']['samples']} "
        "training images. Top-1 after the cut, no fine-tuning:",
        "",
        "| scope | ratio | MACs kept | plain | --compensate | --reconstruct |",
        "|---|---|---|---|---|---|",
    ]
    by_key: dict[tuple[str, float], dict[str, Any]] = {}
    for r in doc["rows"]:
        by_key.setdefault((r["scope"], r["ratio"]), {})[r["method"]] = r
    for (scope, ratio), m in by_key.items():
        lines.append(
            f"| {scope} | {ratio:.1f} | {100 * m['plain']['macs_kept']:.0f}% | "
            + " | ".join(f"{100 * m[k]['top1']:.2f}%" for k in METHODS)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", default="0.1,0.2,0.3,0.4,0.5")
    ap.add_argument("--calibration-limit", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cut-quality"))
    ap.add_argument("--normalize", default="rank", help="importances normalisation (rank)")
    ap.add_argument("--save-model", default=None, metavar="PATH", help="keep the trained model")
    ap.add_argument("--model-only", action="store_true", help="train, save and stop")
    args = ap.parse_args()
    if args.model_only:
        path, seconds = trained_model(args.epochs, Path(args.save_model or "digits_cnn.onnx"))
        print(f"wrote {path} (trained in {seconds:.0f} s)")
        return
    ratios = [float(r) for r in args.ratios.split(",")]
    doc = run(ratios, args.calibration_limit, args.epochs, args.save_model, args.normalize)
    Path(args.out + ".json").write_text(json.dumps(doc, indent=2) + "\n")
    Path(args.out + ".md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
