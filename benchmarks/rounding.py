"""CPU latency of pruned models with and without ``--round-to`` (channel counts in multiples of N).

For a MobileNetV2-style and a ResNet-50-style model (the architectures of
``benchmarks/speedup.py``, exported here with a dynamic batch), prune at several ratios with
L1-norm importances and scope ``local`` (the setting of ``speedup.py``, where MobileNetV2 at
ratio 0.3 ran at 0.94x the original), once as is and once per rounding N, then time the
original and every variant interleaved in one ``onnxrecede.bench.benchmark`` call per ratio
(A B C D A B C D ...), at batch 1 and 8.

    python benchmarks/rounding.py                       # writes benchmarks/results/rounding-cpu.*
    python benchmarks/rounding.py --models mobilenetv2 --ratios 0.3 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.speedup import MobileNetV2, ResNet50, _randomised, l1_importances, machine  # noqa: E402
from onnxrecede.bench import BenchOptions, benchmark  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = {
    "mobilenetv2": (MobileNetV2, 224),
    "resnet50": (ResNet50, 160),
}
logger = logging.getLogger("rounding")


def export_dynamic(module: torch.nn.Module, size: int, path: Path) -> Path:
    """TorchScript export (BN folded) with a dynamic batch dim, IR <= 10."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (torch.zeros(1, 3, size, size),), str(path), dynamo=False,
            opset_version=17, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        )  # fmt: skip
    model = onnx.load(str(path))
    model.ir_version = min(model.ir_version, 10)
    onnx.save(model, str(path))
    return path


def prune_variants(
    reference: Path, ratio: float, rounds: Sequence[int], scope: str, workdir: Path
) -> list[dict[str, Any]]:
    import onnxrecede

    importances = l1_importances(reference)
    variants = []
    for n in (1, *rounds):
        model, report = onnxrecede.prune(
            reference, importances, ratio=ratio, scope=scope, round_to=n, verify=False
        )
        path = workdir / f"{reference.stem}-r{ratio}-n{n}.onnx"
        onnxrecede.save_model(model, path)
        counts = [len(v) for v in report.removed_channels.values()]
        variants.append({
            "round_to": n, "path": path, "macs": report.macs_after, "params": report.params_after,
            "channels_removed": report.channels_removed, "pruned_producers": len(counts),
        })  # fmt: skip
    return variants


def measure(
    name: str, ratio: float, variants: list[dict[str, Any]], reference: Path, opts: BenchOptions
) -> list[dict[str, Any]]:
    result = benchmark([reference, *[v["path"] for v in variants]], opts)
    before = result.models[0].cost
    rows = []
    for config in result.configurations:
        base = config.latency[0].median
        for comp, v in zip(config.comparisons, variants):
            s = comp.speedup
            rows.append({
                "model": name, "ratio": ratio, "batch": config.batch, "round_to": v["round_to"],
                "macs_fraction": v["macs"] / before.macs if before else None,
                "channels_removed": v["channels_removed"],
                "ms_original": 1e3 * base, "ms_pruned": 1e3 * config.latency[comp.candidate].median,
                "speedup": s.value, "speedup_ci": [s.low, s.high],
                "runs": config.latency[comp.candidate].runs,
            })  # fmt: skip
            logger.info(
                "%-12s r%.1f b%d round-to %-2d MACs %.3f  %.2fx [%.2f, %.2f]", name, ratio,
                config.batch, v["round_to"], rows[-1]["macs_fraction"], s.value, s.low, s.high,
            )  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        "# Channel rounding (`--round-to N`) vs latency (CPU)",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs; onnxruntime {m['onnxruntime']}, "
        f"torch {m['torch']}. {meta['note']}",
        f"Timing: CPU EP, {meta['threads']} intra-op threads, {meta['warmup']} warm-up runs, "
        f"then the original and all variants of one ratio interleaved for {meta['seconds']} s per "
        "batch size (ratio of medians; 95% paired bootstrap CI).",
        "Pruning: L1-norm importances per Conv, `scope=local`, `verify=False`; `round_to=1` is "
        "no rounding. MobileNetV2 at 224x224, ResNet-50 layout at 160x160 (TorchScript export, "
        "BN folded, dynamic batch).",
        f"Command: `{meta['command']}`",
        "",
        "| model | ratio | batch | round-to | MACs kept | channels removed | ms original | "
        "ms pruned | speedup [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["speedup_ci"]
        lines.append(
            f"| {r['model']} | {r['ratio']:.1f} | {r['batch']} | {r['round_to']} | "
            f"{r['macs_fraction']:.3f} | {r['channels_removed']} | {r['ms_original']:.2f} | "
            f"{r['ms_pruned']:.2f} | {r['speedup']:.2f}x [{lo:.2f}, {hi:.2f}] |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--ratios", type=float, nargs="*", default=[0.3, 0.5, 0.7])
    parser.add_argument("--round-to", type=int, nargs="*", default=[8, 16])
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per ratio and batch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--scope", choices=("local", "global"), default="local")
    parser.add_argument("--note", default="", help="e.g. other jobs running on the machine")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("onnxrecede", "onnx_ir", "torch"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    opts = BenchOptions(providers=("cpu",), batches=tuple(args.batches), threads=args.threads,
                        warmup=args.warmup, seconds=args.seconds, bootstrap=2000)  # fmt: skip
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="onnxrecede-rounding-") as tmp:
        for name in args.models:
            build, size = MODELS[name]
            reference = export_dynamic(_randomised(build()), size, Path(tmp) / f"{name}.onnx")
            for ratio in args.ratios:
                variants = prune_variants(reference, ratio, args.round_to, args.scope, Path(tmp))
                rows += measure(name, ratio, variants, reference, opts)
    meta = {
        "machine": machine(), "threads": args.threads, "warmup": args.warmup,
        "seconds": args.seconds, "scope": args.scope, "note": args.note,
        "command": "python benchmarks/rounding.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    from onnxrecede.io.outputs import atomic_write_text

    atomic_write_text(
        args.out / "rounding-cpu.json", json.dumps({**meta, "rows": rows}, indent=2) + "\n"
    )
    atomic_write_text(args.out / "rounding-cpu.md", markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
