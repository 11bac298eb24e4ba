"""What verification costs: peak RSS and wall time of `onnxrecede prune` with and without it.

Builds a VGG-16-BN-sized model (ImageNet shapes, 138M parameters, ~553 MB, BatchNormalization
kept as separate nodes) with onnx.helper and random weights, writes L1 importances keyed by
node name, then runs the command line in a child process, several times each way, and reads
the child's peak resident set size from ``wait4``'s rusage.

Goals (issue 7): peak RSS with verification <= 3x the model file, wall time <= 2x the
unverified prune.

Usage (from the repository root, in the virtualenv; needs no torch):

    python benchmarks/verify_cost.py                    # writes benchmarks/results/verify-cost.*
    python benchmarks/verify_cost.py --repeats 1 --label before --no-write
    python benchmarks/verify_cost.py --cli "python -m onnxrecede_cli.main"   # another checkout
    python benchmarks/verify_cost.py --api --label api  # onnxrecede.api.prune_file, no CLI
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: VGG-16 convolution widths; "M" is a 2x2 max pool.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def build_vgg16_bn(path: Path, seed: int = 0) -> dict[str, list[float]]:
    """Write a VGG-16-BN model to ``path``; return L1 importances keyed by Conv node name."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    importances: dict[str, list[float]] = {}

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    x, cin = "input", 3
    for i, item in enumerate(VGG16):
        if item == "M":
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}"], name=f"pool{i}",
                                          kernel_shape=[2, 2], strides=[2, 2]))
            x = f"pool{i}"
            continue
        cout = int(item)
        w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * np.sqrt(2 / (9 * cin))
        importances[f"conv{i}"] = np.abs(w).sum(axis=(1, 2, 3)).tolist()
        nodes.append(helper.make_node(
            "Conv", [x, init(f"conv{i}.weight", w)], [f"conv{i}"], name=f"conv{i}",
            kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        params = [init(f"bn{i}.{p}", v) for p, v in (
            ("weight", rng.uniform(0.5, 1.5, cout)), ("bias", rng.normal(0, 0.1, cout)),
            ("running_mean", rng.normal(0, 0.1, cout)), ("running_var", rng.uniform(0.5, 2, cout)))]
        nodes.append(helper.make_node("BatchNormalization", [f"conv{i}", *params], [f"bn{i}"],
                                      name=f"bn{i}"))
        nodes.append(helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"], name=f"relu{i}"))
        x, cin = f"relu{i}", cout
    nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flatten"))
    for j, (k, n) in enumerate(((512 * 7 * 7, 4096), (4096, 4096), (4096, 1000))):
        w = rng.standard_normal((n, k), dtype=np.float32) * np.sqrt(2 / k)
        src = "flat" if j == 0 else f"fc{j - 1}_relu"
        out = f"fc{j}" if j < 2 else "logits"
        nodes.append(helper.make_node("Gemm", [src, init(f"fc{j}.weight", w),
                                               init(f"fc{j}.bias", np.zeros(n))], [out],
                                      name=f"fc{j}", transB=1))
        if j < 2:
            importances[f"fc{j}"] = np.abs(w).sum(axis=1).tolist()
            nodes.append(helper.make_node("Relu", [out], [f"fc{j}_relu"], name=f"fc{j}_relu"))
    graph = helper.make_graph(
        nodes, "vgg16_bn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return importances


def run_measured(argv: Sequence[str]) -> tuple[float, int, int, float]:
    """Run ``argv``; return (wall seconds, peak RSS bytes, exit code, CPU seconds: user + sys)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(err, file=sys.stderr)
    return wall, usage.ru_maxrss * 1024, code, usage.ru_utime + usage.ru_stime


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "onnx": onnx.__version__}


def prune_file_child(model: str, imp: str, out: str, mode: str) -> int:
    """The library call the CLI makes, alone: ``api.prune_file`` (run as a child process)."""
    from onnxrecede import api

    api.prune_file(model, imp, out, ratio=0.5, verify=mode == "verify")
    return 0


def measure(cli: list[str], workdir: Path, repeats: int, via_api: bool = False) -> dict[str, Any]:
    model = workdir / "vgg16_bn.onnx"
    imp = workdir / "vgg16_bn.imp.json"
    if not model.exists():
        imp.write_text(json.dumps(build_vgg16_bn(model)))
    size = model.stat().st_size
    rows: dict[str, Any] = {"model_bytes": size}
    for mode, extra in (("no_verify", ["--no-verify"]), ("verify", [])):
        runs = []
        for r in range(repeats):
            out = workdir / f"pruned_{mode}_{r}.onnx"
            argv = (
                [sys.executable, __file__, "--prune-file", str(model), str(imp), str(out), mode]
                if via_api
                else [*cli, "prune", str(model), "-i", str(imp), "-o", str(out), "--ratio", "0.5",
                      "-q", *extra]
            )  # fmt: skip
            wall, rss, code, cpu = run_measured(argv)
            if code != 0:
                raise SystemExit(f"prune ({mode}) exited {code}")
            runs.append({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_bytes": rss})
            out.unlink()
            print(f"{mode:9s} run {r}: {wall:6.2f} s ({cpu:6.2f} s CPU)  peak RSS {rss / 2**20:7.0f} MiB "
                  f"({rss / size:.2f}x the model file)", file=sys.stderr)
        rows[mode] = {
            "runs": runs,
            "wall_s": min(x["wall_s"] for x in runs),
            "cpu_s": min(x["cpu_s"] for x in runs),
            "peak_rss_bytes": min(x["peak_rss_bytes"] for x in runs),
        }
    rows["rss_over_model"] = round(rows["verify"]["peak_rss_bytes"] / size, 2)
    rows["time_over_unverified"] = round(rows["verify"]["wall_s"] / rows["no_verify"]["wall_s"], 2)
    rows["cpu_over_unverified"] = round(rows["verify"]["cpu_s"] / rows["no_verify"]["cpu_s"], 2)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", default=f"{shlex.quote(sys.executable)} -m onnxrecede_cli.main",
                    help="command that runs onnxrecede")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--label", default="after")
    ap.add_argument("--workdir", default=None, help="keep the model here (default: a temp dir)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results")
    ap.add_argument("--api", action="store_true",
                    help="measure onnxrecede.api.prune_file in a child process instead of the CLI")
    ap.add_argument("--prune-file", nargs=4, metavar=("MODEL", "IMP", "OUT", "MODE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.prune_file:
        return prune_file_child(*args.prune_file)
    with tempfile.TemporaryDirectory(prefix="verify-cost-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = measure(shlex.split(args.cli), workdir, args.repeats, via_api=args.api)
    doc = {"label": args.label, "machine": machine(), "command": " ".join(sys.argv),
           "measured": "onnxrecede.api.prune_file" if args.api else args.cli, **rows}
    print(json.dumps(doc, indent=2))
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"verify-cost-{args.label}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
