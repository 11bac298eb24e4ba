"""What verification costs on real torch exports: peak memory and wall time of `onnxrecede prune`
with and without it, overall and stage by stage.

Models (``benchmarks/torch_exports.py``, random weights, no downloads): VGG-16-BN with timm's
7x7-conv classifier head (553 MB) and ResNet-50 (102 MB), each exported by
``torch.onnx.export(dynamo=False)`` (TorchScript: BatchNorm folded, weights inline) and
``dynamo=True`` (weights in ``MODEL.onnx.data``). Importances: L1 filter norms keyed by node name.

1. Overall: the command line prunes each model with ``--ratio 0.5`` in a child process, with and
   without verification, interleaved, ``--repeats`` times; the child's peak resident set size
   comes from ``wait4``'s rusage, plus user+sys CPU seconds.
2. Stage by stage: a child runs ``onnxrecede.api.prune_file`` with the ``stage`` debug log marks
   (load, analyse, plan, rewrite, write, release weights, checker, consistency, ORT run of the
   pruned model, masked reference build, reference session, comparison, noise floor) and samples
   its RSS every 5 ms, and the RAM-backed scratch (``Shmem`` of /proc/meminfo, system-wide, over
   its value at the start) where verification may put the masked reference.

Goals (issue 14): with verification, peak memory <= 2x the model file and wall time <= 1.5x the
unverified prune, on exports from both exporters.

Usage (from the repository root, in the virtualenv; needs torch to export the models):

    python benchmarks/verify_cost.py                     # writes benchmarks/results/verify-cost-real.json
    python benchmarks/verify_cost.py --models vgg16bn-ts --repeats 1 --no-write
    python benchmarks/verify_cost.py --cli "env PYTHONPATH=/tmp/base python -m onnxrecede_cli.main"
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("vgg16bn-ts", "vgg16bn-dynamo", "resnet50-ts", "resnet50-dynamo")


def model_files(workdir: Path, name: str) -> tuple[Path, Path, int]:
    """The export of ``name`` in ``workdir`` (made if missing), its importances and its size in
    bytes (the model file plus its external data)."""
    model, imp = workdir / f"{name}.onnx", workdir / f"{name}.imp.json"
    if not model.exists() or not imp.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "torch_exports.py"),
                        str(workdir), name], check=True)  # fmt: skip
    data = workdir / f"{name}.onnx.data"
    size = model.stat().st_size + (data.stat().st_size if data.exists() else 0)
    return model, imp, size


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
    import onnx
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = _meminfo().get("MemTotal", 0)
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "memory_bytes": mem,
            "python": platform.python_version(), "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "load_average_at_start": os.getloadavg()}  # fmt: skip


def _meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0]) * 1024
    return out


def overall(cli: list[str], name: str, workdir: Path, repeats: int) -> dict[str, Any]:
    model, imp, size = model_files(workdir, name)
    runs: dict[str, list[dict[str, Any]]] = {"no_verify": [], "verify": []}
    for r in range(repeats):  # interleaved, so both modes see the same machine load
        for mode, extra in (("no_verify", ["--no-verify"]), ("verify", [])):
            out = workdir / f"pruned_{name}_{mode}.onnx"
            argv = [*cli, "prune", str(model), "-i", str(imp), "-o", str(out), "--ratio", "0.5",
                    "-q", *extra]  # fmt: skip
            load = os.getloadavg()[0]
            wall, rss, code, cpu = run_measured(argv)
            runs[mode].append({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                               "peak_rss_bytes": rss, "load_average": round(load, 1),
                               "exit_code": code})  # fmt: skip
            for p in (out, Path(f"{out}.data")):
                p.unlink(missing_ok=True)
            print(f"{name:16s} {mode:9s} run {r}: {wall:6.2f} s ({cpu:6.2f} s CPU)  peak RSS "
                  f"{rss / 2**20:6.0f} MiB ({rss / size:.2f}x the model)  load {load:.1f}"
                  + (f"  EXIT {code}" if code else ""), file=sys.stderr)  # fmt: skip
    doc: dict[str, Any] = {"model_bytes": size}
    for mode, rows in runs.items():
        doc[mode] = {
            "runs": rows,
            "wall_s": min(x["wall_s"] for x in rows),
            "cpu_s": min(x["cpu_s"] for x in rows),
            "peak_rss_bytes": min(x["peak_rss_bytes"] for x in rows),
        }
    if any(x["exit_code"] for rows in runs.values() for x in rows):
        doc["failed"] = True  # e.g. verification rejecting a correct cut: no ratios
        return doc
    v, n = doc["verify"], doc["no_verify"]
    doc["rss_over_model"] = round(v["peak_rss_bytes"] / size, 2)
    doc["time_over_unverified"] = round(v["wall_s"] / n["wall_s"], 2)
    doc["cpu_over_unverified"] = round(v["cpu_s"] / n["cpu_s"], 2)
    pairs = [a["wall_s"] / b["wall_s"] for a, b in zip(runs["verify"], runs["no_verify"])]
    doc["time_ratio_per_pair"] = [round(x, 2) for x in pairs]
    return doc


def stages(name: str, workdir: Path, mode: str) -> list[dict[str, Any]]:
    """Stage-by-stage time and peak memory of one ``prune_file`` call, in a child process."""
    model, imp, _ = model_files(workdir, name)
    out = workdir / f"staged_{name}.onnx"
    proc = subprocess.run(
        [sys.executable, __file__, "--profile", str(model), str(imp), str(out), mode],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    for p in (out, Path(f"{out}.data")):
        p.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise SystemExit(f"profile of {name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def profile_child(model: str, imp: str, out: str, mode: str) -> int:
    """Run ``api.prune_file`` with stage marks; print the stages as JSON."""
    base_shm = _meminfo().get("Shmem", 0)
    marks: list[dict[str, Any]] = [{"stage": "start (imports)", "t": time.perf_counter(),
                                    "peak_rss": 0, "peak_rss_plus_shm": 0}]  # fmt: skip
    lock = threading.Lock()

    def status() -> tuple[int, int]:
        """(resident bytes, of which mapped shared memory: the RAM scratch ORT maps)."""
        got = {}
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "RssShmem:")):
                    got[line.split(":")[0]] = int(line.split()[1]) * 1024
        return got.get("VmRSS", 0), got.get("RssShmem", 0)

    def rss() -> int:
        return status()[0]

    class Marks(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.msg == "stage %s":
                with lock:
                    marks.append({"stage": record.args[0], "t": time.perf_counter(),  # type: ignore[index]
                                  "peak_rss": rss(), "peak_rss_plus_shm": rss()})  # fmt: skip

    def sample() -> None:
        while True:
            now, mapped = status()
            shm = max(0, _meminfo().get("Shmem", 0) - base_shm)
            with lock:
                last = marks[-1]
                last["peak_rss"] = max(last["peak_rss"], now)
                # RAM scratch pages count once: in RSS while mapped, else on their own
                last["peak_rss_plus_shm"] = max(last["peak_rss_plus_shm"],
                                                now + max(0, shm - mapped))  # fmt: skip
            time.sleep(0.005)

    log = logging.getLogger("onnxrecede")
    log.setLevel(logging.DEBUG)
    log.addHandler(Marks())
    threading.Thread(target=sample, daemon=True).start()
    from onnxrecede import api

    api.prune_file(model, imp, out, ratio=0.5, verify=mode == "verify")
    marks.append({"stage": "end", "t": time.perf_counter(), "peak_rss": rss(),
                  "peak_rss_plus_shm": rss()})  # fmt: skip
    rows = [
        {"stage": a["stage"], "seconds": round(b["t"] - a["t"], 3), "peak_rss_bytes": a["peak_rss"],
         "peak_rss_plus_ram_scratch_bytes": a["peak_rss_plus_shm"]}
        for a, b in zip(marks, marks[1:])
    ]  # fmt: skip
    print(json.dumps(rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", default=f"{shlex.quote(sys.executable)} -m onnxrecede_cli.main",
                    help="command that runs onnxrecede")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: "
                    + ", ".join(MODELS))  # fmt: skip
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--label", default="real")
    ap.add_argument("--workdir", default=None, help="keep the exports here (default: a temp dir)")
    ap.add_argument("--no-stages", action="store_true", help="skip the stage-by-stage profile")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results")
    ap.add_argument("--profile", nargs=4, metavar=("MODEL", "IMP", "OUT", "MODE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.profile:
        return profile_child(*args.profile)
    import tempfile

    names = [m for m in args.models.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="verify-cost-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {}
        for name in names:
            results[name] = overall(shlex.split(args.cli), name, workdir, args.repeats)
            if not args.no_stages:
                results[name]["stages"] = {m: stages(name, workdir, m)
                                           for m in ("no_verify", "verify")}  # fmt: skip
    doc = {"label": args.label, "machine": machine(), "command": " ".join(sys.argv),
           "measured": args.cli, "models": results}  # fmt: skip
    print(json.dumps(doc, indent=2))
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"verify-cost-{args.label}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
