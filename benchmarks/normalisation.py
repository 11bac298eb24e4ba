"""Normalisation of importances before a global cut, over several training seeds.

The README's normalisation table: the policy CNN of ``tests/fixtures/digits_models.py`` (convs
32/64/128, BN folded by the exporter) trained on scikit-learn's digits with each seed, then a
global filter-L1 cut of 5% (and 10%) with each ``--normalize``; test accuracy (360 images) and
the largest share of one conv's channels removed. Reports mean, standard deviation, min and max
over the seeds, and each seed's numbers.

    nice -n 10 python -m benchmarks.normalisation --seeds 0-7 \
        --out benchmarks/results/normalisation.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

NORMALISATIONS = ("rank", "zscore", "none", "mean", "max")
RATIOS = (0.05, 0.10)


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def accuracy(model: Any) -> float:
    """Top-1 on the digits test split (ONNX Runtime, CPU), for a path or an in-memory model."""
    import onnx_ir as ir

    from onnxrecede.data.digits import load_digits_split
    from onnxrecede.runtime.session import cpu_session

    x, y = load_digits_split("test")
    source = str(model) if isinstance(model, Path) else ir.to_proto(model).SerializeToString()
    session = cpu_session(source, None)
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    return float((logits.argmax(axis=1) == y).mean())


def cut(path: Path, normalize: str, ratio: float) -> tuple[float, float]:
    """(accuracy, largest share of one producer removed) after a global L1 cut."""
    import onnxrecede
    from onnxrecede.importance.criteria import compute_importances
    from onnxrecede.io.model_files import load_model

    imp = compute_importances(load_model(path), "l1", normalize=normalize)
    model, report = onnxrecede.prune(path, imp, ratio=ratio)
    scores = imp.scores
    share = max(len(v) / len(scores[k]) for k, v in report.removed_channels.items())
    return accuracy(model), share


def one_seed(seed: int, folder: Path) -> dict[str, Any]:
    from tests.fixtures.digits_models import export_policy_cnn, train_policy_cnn

    path = export_policy_cnn(train_policy_cnn(seed), folder / f"cnn-{seed}.onnx")
    row: dict[str, Any] = {"seed": seed, "original": accuracy(path)}
    for ratio in RATIOS:
        for norm in NORMALISATIONS:
            acc, share = cut(path, norm, ratio)
            row[f"{norm}@{ratio:g}"] = {"accuracy": acc, "max_share": share}
    print(json.dumps(row), flush=True)
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"original": _stats([r["original"] for r in rows])}
    for key in rows[0]:
        if "@" in key:
            out[key] = {
                "accuracy": _stats([r[key]["accuracy"] for r in rows]),
                "max_share": _stats([r[key]["max_share"] for r in rows]),
            }
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-7", help="seed range, e.g. 0-7")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one_seed(s, Path(tmp)) for s in _seeds(args.seeds)]
    doc = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}",
        "note": "2-core shared machine, other jobs running; accuracies do not depend on load",
        "seconds": round(time.perf_counter() - start, 1),
        "summary": summarise(rows),
        "runs": rows,
    }
    text = json.dumps(doc, indent=2) + "\n"
    if args.out is not None:
        args.out.write_text(text)
    print(json.dumps(doc["summary"], indent=2))


if __name__ == "__main__":
    main()
