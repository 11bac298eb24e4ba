"""Latency-aware cuts against MAC-budget cuts, on CPU, batch 1.

For ResNet-50, MobileNetV2 (definitions in ``benchmarks/speedup.py``) and EfficientNet-B0
(defined here; torchvision is not needed), exported with random seeded weights at 224x224:
measure the latency table (``onnxrecede latency``), then cut with L1 importances (mean
normalised per layer) at

- ``--target-macs 0.5``, ``--target-macs 0.5 --round-to 8`` (2x fewer MACs), and
- ``--target-latency 0.5`` with the table,

and for each cut report the latency the table predicts, the latency measured by ``bench``
(interleaved with the original), and the share of the importance kept (summed over the
coupled channels of every scored prunable group).

Usage (repository root, dev virtualenv with torch; about 20 min on 2 busy cores):

    python benchmarks/latency.py                                  # all three models
    python benchmarks/latency.py --models mobilenetv2 --seconds 5
    python benchmarks/latency.py --provider cuda --batch 32 --out latency-gpu.json  # a GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.speedup import (  # noqa: E402
    MobileNetV2,
    ResNet50,
    _conv_bn,
    _randomised,
    export_torchscript,
    machine,
)
from onnxrecede import api  # noqa: E402
from onnxrecede.bench import BenchOptions, compare  # noqa: E402
from onnxrecede.engine.analysis import analyze  # noqa: E402
from onnxrecede.engine.plan import class_scores  # noqa: E402
from onnxrecede.importance.criteria import compute_importances  # noqa: E402
from onnxrecede.importance.file_format import load_importances, save_importances  # noqa: E402
from onnxrecede.io.model_files import load_model  # noqa: E402
from onnxrecede.latency.cache import LatencyCache  # noqa: E402
from onnxrecede.latency.measure import Device  # noqa: E402
from onnxrecede.latency.predict import predicted_fraction  # noqa: E402
from onnxrecede.latency.table import build_table  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
logger = logging.getLogger("latency-bench")


class MBConv(nn.Module):
    """EfficientNet MBConv: expand 1x1, depthwise kxk, squeeze-excitation, project 1x1."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.SiLU()]
        layers += [*_conv_bn(hidden, hidden, k, stride, groups=hidden), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        squeezed = max(1, cin // 4)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(hidden, squeezed, 1), nn.SiLU(),
            nn.Conv2d(squeezed, hidden, 1), nn.Sigmoid(),
        )  # fmt: skip
        self.project = nn.Sequential(*_conv_bn(hidden, cout, 1))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        y = self.project(h * self.se(h))
        return x + y if self.residual else y


class EfficientNetB0(nn.Module):
    """EfficientNet-B0 layout (5.3 M params, 0.39 GMACs at 224x224)."""

    SETTINGS = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # fmt: skip

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, 32, 3, 2), nn.SiLU()]
        cin = 32
        for expand, k, stride, cout, repeats in self.SETTINGS:
            for i in range(repeats):
                layers.append(MBConv(cin, cout, expand, k, stride if i == 0 else 1))
                cin = cout
        layers += [*_conv_bn(cin, 1280, 1), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(pooled, 1))


MODELS = {
    "mobilenetv2": MobileNetV2,
    "efficientnet_b0": EfficientNetB0,
    "resnet50": ResNet50,
}
CUTS: dict[str, dict[str, Any]] = {
    "macs 0.5": {"target_macs": 0.5},
    "macs 0.5, round-to 8": {"target_macs": 0.5, "round_to": 8},
    "latency 0.5": {"target_latency": 0.5},
}


class ImportanceKept:
    """Share of the aggregated importance of the scored prunable channels a cut keeps."""

    def __init__(self, model_path: Path, imp_path: Path) -> None:
        model = load_model(model_path)
        self.analysis = analyze(model)
        scores = api._scores(model, load_importances(imp_path))
        self.importance = class_scores(self.analysis, scores, "max")
        self.roots = {
            int(r) for g in self.analysis.groups if g.prunable for r in g.classes
        } & set(self.importance)
        self.total = sum(self.importance[r] for r in self.roots)

    def __call__(self, removed_channels: dict[str, list[int]]) -> float:
        gone: set[int] = set()
        for node, view in self.analysis.ctx.channel_outputs.items():
            idx = removed_channels.get(node.name or "")
            if idx:
                gone.update(int(r) for r in self.analysis.roots[view.labels[idx]])
        return sum(self.importance[r] for r in self.roots - gone) / self.total


def run_model(name: str, folder: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    shape = (args.batch, 3, 224, 224)
    path = export_torchscript(_randomised(MODELS[name]()), shape, folder / f"{name}.onnx")
    imp = folder / f"{name}.imp.json"
    save_importances(imp, compute_importances(load_model(path), "l1", normalize="mean").scores)
    start = time.perf_counter()
    table = build_table(path, Device.parse(args.provider, args.threads), max_points=args.max_points,
                        cache=LatencyCache(folder / "cache.json"))  # fmt: skip
    table_s = time.perf_counter() - start
    table_path = folder / f"{name}.latency.json"
    table_path.write_text(json.dumps(table))
    logger.info("%s: table in %.0f s (%d points measured)", name, table_s, table["cache"]["measured"])
    kept = ImportanceKept(path, imp)
    rows = []
    for label, options in CUTS.items():
        out = folder / f"{name}.{label.replace(' ', '_').replace(',', '')}.onnx"
        extra = {"latency_table": table_path} if "target_latency" in options else {}
        report = api.prune_file(path, imp, out, speedup_search={"seconds": 1.0}, **options, **extra)
        bench = BenchOptions(providers=(args.provider,), threads=args.threads, seconds=args.seconds)
        measured = compare(path, out, bench)
        config = measured.configurations[0]
        rows.append({
            "model": name, "cut": label, "macs_fraction": report.macs_after / report.macs_before,
            "predicted_fraction": predicted_fraction(table, load_model(out)),
            "measured_fraction": config.latency[1].median / config.latency[0].median,
            "speedup": config.comparisons[0].speedup.value,
            "speedup_low": config.comparisons[0].speedup.low,
            "speedup_high": config.comparisons[0].speedup.high,
            "ms_original": 1e3 * config.latency[0].median, "ms_pruned": 1e3 * config.latency[1].median,
            "importance_kept": kept(report.removed_channels),
            "verified": (report.verification or {}).get("masked_reference"),
            "table_s": table_s, "table_points": table["cache"]["measured"] + table["cache"]["hits"],
            "table_model_ms": table["model_ms"],
        })  # fmt: skip
        logger.info("%s", json.dumps(rows[-1]))
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "| model | cut | MACs | predicted latency | measured latency (95% CI of speedup) | ms original -> pruned | importance kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['cut']} | {r['macs_fraction']:.3f} | {r['predicted_fraction']:.3f} | "
            f"{r['measured_fraction']:.3f} ({r['speedup']:.2f}x, {r['speedup_low']:.2f}-{r['speedup_high']:.2f}) | "
            f"{r['ms_original']:.1f} -> {r['ms_pruned']:.1f} | {100 * r['importance_kept']:.1f}% |"
        )
    return "\n".join(lines) + "\n\n```\n" + json.dumps(meta, indent=1) + "\n```\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda", "tensorrt"))
    parser.add_argument("--batch", type=int, default=1, help="fixed in the exported models")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-points", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS / "latency-cpu.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    np.random.seed(0)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as tmp:
        for name in args.models.split(","):
            rows.extend(run_model(name, Path(tmp), args))
            args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1) + "\n")
    meta = {"machine": machine(), "threads": args.threads, "seconds": args.seconds,
            "provider": args.provider, "batch": args.batch}  # fmt: skip
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
