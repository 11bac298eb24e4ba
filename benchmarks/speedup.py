"""Measured CPU speedup of pruned models against their MAC reduction.

For the engine's test architectures (tests/models/zoo.py) plus a ResNet-50-sized and a
MobileNetV2-sized model (written here; torchvision is not needed), prune at ratios 0.3, 0.5
and 0.7 with L1-norm importances (per output channel of every Conv, keyed by node name), then
time reference and pruned model interleaved with ``onnxrecede.bench.compare``.

    efficiency = measured speedup / ideal speedup,  ideal speedup = MACs before / MACs after

Goal: efficiency >= 0.8 at ratio 0.5 on the ResNet-50-sized model on CPU.

Usage (from the repository root, in the dev virtualenv, which has torch):

    python benchmarks/speedup.py                      # everything, writes benchmarks/results/
    python benchmarks/speedup.py --models resnet50 --ratios 0.5 --seconds 10
    python benchmarks/speedup.py --cost-only          # MACs/params only, no pruning timing
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.models: the engine's test architectures

from onnxrecede.bench import BenchOptions, compare  # noqa: E402
from onnxrecede.bench.driver import cpu_name  # noqa: E402
from onnxrecede.engine.cost import count_cost  # noqa: E402
from onnxrecede.runtime.session import ProviderUnavailableError, import_ort, provider_session  # noqa: E402

RATIOS = (0.3, 0.5, 0.7)
RESULTS = ROOT / "benchmarks" / "results"
logger = logging.getLogger("speedup")


# ----------------------------------------------------------------------------- architectures


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck: 1x1 reduce, 3x3 (strided), 1x1 expand x4, projection if needed."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            *_conv_bn(cin, width, 1), nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(width, cout, 1),
        )  # fmt: skip
        self.short = (
            nn.Sequential(*_conv_bn(cin, cout, 1, stride))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.short(x))


class ResNet50(nn.Module):
    """ResNet-50 layout (3, 4, 6, 3 bottlenecks; 25.6 M params, 4.1 GMACs at 224x224)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(3, 2, 1))
        cin = 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True)]
        layers += _conv_bn(hidden, cout, 1)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 1.0 layout (3.5 M params, 0.3 GMACs at 224x224)."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, 32, 3, 2), nn.ReLU6(inplace=True)]
        cin = 32
        for expand, cout, repeats, stride in self.SETTINGS:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers += [*_conv_bn(cin, 1280, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(pooled, 1))


def _randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded weights and non-trivial BN statistics, so that L1 norms differ between channels."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=gen)
            m.running_var.uniform_(0.5, 1.5, generator=gen)
            m.weight.data.uniform_(0.5, 1.5, generator=gen)
            m.bias.data.normal_(0, 0.1, generator=gen)
    return module.eval()


def export_torchscript(module: nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    """Legacy exporter (fast): BN folded into the convs, one self-contained file."""
    with torch.no_grad():
        torch.onnx.export(
            module.eval(), (torch.zeros(shape),), str(path), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"],
        )  # fmt: skip
    model = onnx.load(str(path))
    model.ir_version = min(model.ir_version, 10)
    onnx.save(model, str(path))
    return path


def large_models() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    return {
        "resnet50": (lambda: _randomised(ResNet50()), (1, 3, 224, 224)),
        "mobilenetv2": (lambda: _randomised(MobileNetV2()), (1, 3, 224, 224)),
    }


def zoo_models() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    from tests.models.zoo import ZOO

    return {f"zoo/{name}": (entry.build, entry.input_shape) for name, entry in ZOO.items()}


# ----------------------------------------------------------------------------- importances


def l1_importances(path: Path) -> dict[str, list[float]]:
    """L1 norm of each Conv's weight per output channel, keyed by the Conv node's name."""
    model = onnx.load(str(path))
    weights = {t.name: t for t in model.graph.initializer}
    scores: dict[str, list[float]] = {}
    for node in model.graph.node:
        if (
            node.op_type == "Conv"
            and node.name
            and len(node.input) > 1
            and node.input[1] in weights
        ):
            w = onnx.numpy_helper.to_array(weights[node.input[1]])
            scores[node.name] = np.abs(w).reshape(w.shape[0], -1).sum(axis=1).tolist()
    return scores


# ----------------------------------------------------------------------------- measurement


def gpu_status() -> str:
    """Why there is no GPU column, or an empty string when CUDA really runs here."""
    ident = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )  # fmt: skip
    model = onnx.helper.make_model(
        ident, ir_version=8, opset_imports=[onnx.helper.make_opsetid("", 13)]
    )
    try:
        provider_session(model.SerializeToString(), "cuda")
    except ProviderUnavailableError as e:
        return f"no GPU on this machine ({e})"
    return ""


def run_one(
    name: str,
    build: Callable[[], nn.Module],
    shape: tuple[int, ...],
    ratios: Sequence[float],
    options: BenchOptions,
    workdir: Path,
    cost_only: bool,
    scope: str,
) -> list[dict[str, Any]]:
    import onnxrecede

    safe = name.replace("/", "_")
    reference = export_torchscript(build(), shape, workdir / f"{safe}.onnx")
    importances = l1_importances(reference)
    rows = []
    for ratio in ratios:
        start = time.perf_counter()
        try:
            pruned_model, report = onnxrecede.prune(
                reference, importances, ratio=ratio, scope=scope
            )
        except onnxrecede.OnnxRecedeError as e:  # recorded, the other rows go on
            logger.warning("%s ratio %s: prune failed: %s", name, ratio, e)
            rows.append(
                {"model": name, "input_shape": list(shape), "ratio": ratio, "error": str(e)}
            )
            continue
        prune_s = time.perf_counter() - start
        pruned = workdir / f"{safe}-{ratio}.onnx"
        onnxrecede.save_model(pruned_model, pruned)
        before, after = count_cost(reference), count_cost(pruned)
        row: dict[str, Any] = {
            "model": name,
            "input_shape": list(shape),
            "ratio": ratio,
            "scope": scope,
            "channels_removed": report.channels_removed,
            "channels_prunable": report.channels_prunable,
            "macs_before": before.macs,
            "macs_after": after.macs,
            "params_before": before.params,
            "params_after": after.params,
            "ideal_speedup": before.macs / after.macs,
            "cost_unresolved": [*before.unresolved, *after.unresolved],
            "prune_s": round(prune_s, 3),
        }
        if not cost_only:
            result = compare(reference, pruned, options)
            cpu = result.configurations[0]
            s = cpu.comparisons[0].speedup
            row |= {
                "cpu_median_ms_before": cpu.latency[0].median * 1e3,
                "cpu_median_ms_after": cpu.latency[1].median * 1e3,
                "cpu_runs": cpu.latency[0].runs,
                "cpu_speedup": s.value,
                "cpu_speedup_ci": [s.low, s.high],
                "cpu_efficiency": s.value / row["ideal_speedup"],
                "max_abs_diff": result.max_abs_diff,
            }
        logger.info("%s", _one_line(row))
        rows.append(row)
    return rows


def _one_line(row: dict[str, Any]) -> str:
    text = (
        f"{row['model']:<28} ratio {row['ratio']:.1f}: MACs {row['macs_before'] / 1e6:9.2f}M -> "
        f"{row['macs_after'] / 1e6:9.2f}M (ideal {row['ideal_speedup']:.2f}x)"
    )
    if "cpu_speedup" in row:
        text += f", measured {row['cpu_speedup']:.2f}x, efficiency {row['cpu_efficiency']:.2f}"
    return text


# ----------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    ort = import_ort()
    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__.split("+")[0],
        "onnx": onnx.__version__,
    }


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    gpu = meta["gpu"] or "measured"
    lines = [
        "# Measured speedup vs MAC reduction (CPU)",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['platform']}; "
        f"onnxruntime {m['onnxruntime']}, torch {m['torch']}, onnx {m['onnx']}, "
        f"Python {m['python']}.",
        f"Timing: CPU EP, batch 1, {meta['threads']} intra-op threads, spinning off, "
        f"{meta['warmup']} warm-up runs, then reference and pruned model interleaved for "
        f"{meta['seconds']} s per row (ratio of medians; 95% paired bootstrap CI).",
        "Importances: L1 norm of each Conv's weight per output channel (keyed by node name); "
        f"`onnxrecede.prune(..., ratio=r, scope='{meta['scope']}')`. Models exported with "
        "the TorchScript exporter (BN folded), input shape in the table.",
        f"Command: `{meta['command']}`",
        "",
        "efficiency = measured speedup / ideal speedup (MACs before / MACs after).",
        "",
        "| model | input | ratio | MACs before | MACs after | params before | params after | "
        "ideal | ms before | ms after | CPU speedup [95% CI] | efficiency | GPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | {r['ratio']:.1f} | prune failed: {r['error']} |")
            continue
        ci = r.get("cpu_speedup_ci")
        lines.append(
            f"| {r['model']} | {'x'.join(map(str, r['input_shape']))} | {r['ratio']:.1f} | "
            f"{r['macs_before'] / 1e6:,.1f}M | {r['macs_after'] / 1e6:,.1f}M | "
            f"{r['params_before'] / 1e6:,.3f}M | {r['params_after'] / 1e6:,.3f}M | "
            f"{r['ideal_speedup']:.2f}x | "
            + (
                f"{r['cpu_median_ms_before']:.3f} | {r['cpu_median_ms_after']:.3f} | "
                f"{r['cpu_speedup']:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}] | "
                f"{r['cpu_efficiency']:.2f} |"
                if ci
                else "- | - | - | - |"
            )
            + " |"
        )
    lines += ["", f"GPU column: empty, {gpu}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", help="substrings of model names to run")
    parser.add_argument("--ratios", type=float, nargs="*", default=list(RATIOS))
    parser.add_argument("--seconds", type=float, default=None,
                        help="timing per row (default: 20 s for the large models, 2 s for the zoo)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--scope", choices=("local", "global"), default="local",
                        help="prune the ratio per layer group (local) or over all (global)")  # fmt: skip
    parser.add_argument("--cost-only", action="store_true", help="prune and count, no timing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("onnxrecede", "onnx_ir", "torch"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    catalogue = {**large_models(), **zoo_models()}
    chosen = {
        k: v for k, v in catalogue.items() if not args.models or any(s in k for s in args.models)
    }
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="onnxrecede-speedup-") as tmp:
        for name, (build, shape) in chosen.items():
            seconds = args.seconds or (20.0 if name in large_models() else 2.0)
            options = BenchOptions(providers=("cpu",), threads=args.threads, warmup=args.warmup,
                                   seconds=seconds, bootstrap=2000)  # fmt: skip
            rows += run_one(
                name, build, shape, args.ratios, options, Path(tmp), args.cost_only, args.scope
            )
    meta = {
        "machine": machine(),
        "gpu": gpu_status(),
        "threads": args.threads,
        "scope": args.scope,
        "warmup": args.warmup,
        "seconds": args.seconds or "20 (large models) / 2 (zoo)",
        "command": "python benchmarks/speedup.py " + " ".join(argv or sys.argv[1:]),
    }
    if not args.cost_only:
        args.out.mkdir(parents=True, exist_ok=True)
        from onnxrecede.io.outputs import atomic_write_text

        atomic_write_text(
            args.out / "speedup-cpu.json", json.dumps({**meta, "rows": rows}, indent=2) + "\n"
        )
        atomic_write_text(args.out / "speedup-cpu.md", markdown(rows, meta))
        print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
