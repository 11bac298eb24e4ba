"""Attention-head pruning on exported transformers: what stays, and how fast it runs.

Models (tests/models/transformers.py: timm-like definitions written for this project, no timm,
random timm-like weights), each exported by both torch exporters (``dynamo`` = dynamo=True,
``torchscript`` = dynamo=False):

- ViT-Tiny (patch 16, 224x224, dim 192, 12 blocks, 3 heads, MLP 768);
- DeiT-Tiny (the same with a distillation token and a second head);
- a 2-layer ``nn.TransformerEncoder`` (d 128, 4 heads, feed-forward 512, 64 tokens, batch 1,
  sequence first).

For each export:

1. ``--ratio 0.5`` with L1 importances (``importances --criterion l1``, rank-normalised): the
   parameters and MACs kept, whether every attention block lost heads, and the masked
   reference's verdict;
2. heads only (importances for the q/k/v projections alone) at 25% and 50% of the heads: the
   heads removed, parameters and MACs kept, and CPU latency against the original (ONNX Runtime,
   interleaved runs, median; ``onnxrecede bench``'s driver).

    python benchmarks/heads.py                 # writes benchmarks/results/heads.{json,md}
    python benchmarks/heads.py --quick         # smaller timing budget
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.models: the transformer definitions and the exporter

import onnxruntime  # noqa: E402
import torch  # noqa: E402

import onnxrecede  # noqa: E402
from onnxrecede.bench import BenchOptions, compare  # noqa: E402
from onnxrecede.importance.criteria import compute_importances  # noqa: E402
from onnxrecede.io.model_files import load_model, save_model  # noqa: E402
from tests.models.export import export_model  # noqa: E402
from tests.models.transformers import SequenceEncoder, deit_tiny, vit_tiny  # noqa: E402

MODELS = {
    "ViT-Tiny": (vit_tiny, (1, 3, 224, 224)),
    "DeiT-Tiny": (deit_tiny, (1, 3, 224, 224)),
    "TransformerEncoder": (lambda: SequenceEncoder(d=128, heads=4, layers=2, ff=512), (64, 1, 128)),
}
EXPORTERS = ("dynamo", "torchscript")
HEAD_FRACTIONS = (0.25, 0.5)


def _kept(report: Any) -> dict[str, float]:
    return {
        "params_kept": report.params_after / report.params_before,
        "macs_kept": report.macs_after / report.macs_before,
    }


def _ratio_half(path: Path, imp: Any, blocks: int) -> dict[str, Any]:
    _, report = onnxrecede.prune(path, imp, ratio=0.5)
    return {
        **_kept(report),
        "params_before": report.params_before,
        "macs_before": report.macs_before,
        "blocks_losing_heads": len(report.removed_heads),
        "attention_blocks": blocks,
        "masked_reference": report.verification["masked_reference"],
        "max_abs_diff": report.verification["max_abs_diff"],
    }


def _heads_only(
    path: Path, imp: Any, keys: list[str], fraction: float, tmp: Path, seconds: float
) -> dict[str, Any]:
    heads_imp = {k: imp.scores[k].tolist() for k in keys}
    pruned, report = onnxrecede.prune(path, heads_imp, ratio=fraction)
    out = tmp / f"heads-{fraction}.onnx"
    save_model(pruned, out)
    bench = compare(path, out, BenchOptions(seconds=seconds, threads=2, warmup=5))
    config = bench.configurations[0]
    speedup = config.comparisons[0].speedup
    return {
        "fraction": fraction,
        "heads_removed": sum(len(v) for v in report.removed_heads.values()),
        **_kept(report),
        "masked_reference": report.verification["masked_reference"],
        "ms_original": 1e3 * config.latency[0].median,
        "ms_pruned": 1e3 * config.latency[1].median,
        "speedup": speedup.value,
        "speedup_ci": [speedup.low, speedup.high],
    }


def run_one(name: str, exporter: str, tmp: Path, seconds: float) -> dict[str, Any]:
    build, shape = MODELS[name]
    path = tmp / f"{name}.{exporter}.onnx"
    t0 = time.perf_counter()
    export_model(build().eval(), shape, path, exporter)  # type: ignore[arg-type]
    imp = compute_importances(load_model(path), "l1")
    info = onnxrecede.inspect(path)
    keys = sorted({k for b in info.attention for k in b["block"].split(", ")})
    row = {
        "model": name,
        "exporter": exporter,
        "heads_total": sum(b["count"] for b in info.attention),
    }
    row["blocked_attention"] = [b for b in info.attention if b["status"] != "prunable"]
    row["ratio_0.5_l1"] = _ratio_half(path, imp, len(info.attention))
    row["heads_only"] = [_heads_only(path, imp, keys, f, tmp, seconds) for f in HEAD_FRACTIONS]
    row["seconds"] = time.perf_counter() - t0
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _markdown(rows: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [
        "# Attention heads: ViT-Tiny, DeiT-Tiny, nn.TransformerEncoder",
        "",
        f"Machine: {env['machine']}; {env['cpus']} CPUs shared with other jobs (up to 8 helper "
        f"sessions ran tests at the same time: load average {env['load_average'][1]:.0f} over "
        "the last 5 minutes of the run, so the latencies are noisy; the intervals say how "
        f"much), ONNX Runtime {env['onnxruntime']} CPU, "
        f"2 intra-op threads, torch {env['torch']}. Produced by `python benchmarks/heads.py` "
        f"({env['date']}). Random timm-like weights: the numbers are structure and latency, "
        "not accuracy.",
        "",
        "## `--ratio 0.5`, L1 importances (heads and MLP channels ranked together)",
        "",
        "| model | exporter | params kept | MACs kept | blocks losing heads | masked reference |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        h = r["ratio_0.5_l1"]
        lines.append(
            f"| {r['model']} | {r['exporter']} | {100 * h['params_kept']:.1f}% | "
            f"{100 * h['macs_kept']:.1f}% | {h['blocks_losing_heads']}/{h['attention_blocks']} | "
            f"{h['masked_reference']} (max abs diff {h['max_abs_diff']:.1g}) |"
        )
    lines += [
        "",
        "## Heads only: 25% and 50% of the heads removed (L1, global ranking, at least one head "
        "per block)",
        "",
        "| model | exporter | heads removed | params kept | MACs kept | ms original | ms pruned "
        "| speedup (95% CI) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for h in r["heads_only"]:
            lo, hi = h["speedup_ci"]
            lines.append(
                f"| {r['model']} | {r['exporter']} | {h['heads_removed']}/{r['heads_total']} | "
                f"{100 * h['params_kept']:.1f}% | {100 * h['macs_kept']:.1f}% | "
                f"{h['ms_original']:.2f} | {h['ms_pruned']:.2f} | "
                f"{h['speedup']:.2f}x ({lo:.2f}-{hi:.2f}) |"
            )
    blocked = [(r["model"], r["exporter"], b) for r in rows for b in r["blocked_attention"]]
    lines += ["", "Attention blocks left blocked: " + ("none." if not blocked else "")]
    for model, exporter, b in blocked:
        lines.append(f"- {model} ({exporter}) {b['block']}: {b['barriers']}")
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s of timing per pair")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "heads"))
    args = parser.parse_args(argv)
    seconds = 2.0 if args.quick else 6.0
    rows = []
    with tempfile.TemporaryDirectory(prefix="heads-bench-") as tmp:
        for name in args.models.split(","):
            for exporter in EXPORTERS:
                rows.append(run_one(name, exporter, Path(tmp), seconds))
    env = {
        "machine": _cpu_model(),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    Path(f"{args.out}.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")
    Path(f"{args.out}.md").write_text(_markdown(rows, env))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
