"""Start-up cost of the command line: ``--version``, ``--help`` and a usage error.

Interleaved runs (one of each command per round, in a fixed order) against a bare interpreter
(``python -c pass``) and ``python -c "import onnx, numpy"``; reports the median wall time and
the median CPU time (user + system of the child) per command, and the quartiles. With
``--baseline DIR`` (a checkout of an older commit) its command line is timed too, in the same
rounds (run as ``python -m onnxrecede_cli.main`` from that checkout).

    nice -n 10 python -m benchmarks.cli_startup --rounds 30 \
        --out benchmarks/results/cli-startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CLI_CASES = {"--version": ["--version"], "--help": ["--help"], "usage error": ["prune"]}


def _commands(baseline: Path | None, pythonpath: str | None) -> dict[str, tuple[list[str], dict]]:
    py = sys.executable
    env = dict(os.environ)
    cmds: dict[str, tuple[list[str], dict]] = {
        "python -c pass": ([py, "-c", "pass"], env),
        "python -c 'import onnx, numpy'": ([py, "-c", "import onnx, numpy"], env),
    }
    for label, args in CLI_CASES.items():
        cmds[f"onnxrecede {label}"] = ([py, "-m", "onnxrecede_cli.main", *args], env)
    if baseline is not None and pythonpath is not None:
        old = {**env, "PYTHONPATH": pythonpath}
        for label, args in CLI_CASES.items():
            cmds[f"baseline onnxrecede {label}"] = (
                [py, "-m", "onnxrecede_cli.main", *args], {**old, "ONNXRECEDE_BASELINE": "1"}
            )
    return cmds


def _time_one(cmd: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _quartiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4)
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2]}


def _baseline_path(baseline: Path, tmp: Path) -> str:
    """A PYTHONPATH under which the baseline checkout's ``cli/`` is ``onnxrecede_cli``."""
    (tmp / "onnxrecede_cli").symlink_to(baseline / "cli")
    (tmp / "onnxrecede").symlink_to(baseline / "onnxrecede")
    return str(tmp)


def measure(rounds: int, baseline: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        pythonpath = _baseline_path(baseline, Path(tmp)) if baseline is not None else None
        cmds = _commands(baseline, pythonpath)
        for cmd, env in cmds.values():  # warm the file cache
            _time_one(cmd, env)
        walls: dict[str, list[float]] = {k: [] for k in cmds}
        cpus: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(rounds):
            for label, (cmd, env) in cmds.items():
                wall, cpu = _time_one(cmd, env)
                walls[label].append(wall)
                cpus[label].append(cpu)
    bare = statistics.median(walls["python -c pass"])
    bare_cpu = statistics.median(cpus["python -c pass"])
    heavy_cpu = statistics.median(cpus["python -c 'import onnx, numpy'"])
    return {
        label: {
            "wall_s": _quartiles(walls[label]),
            "cpu_s": _quartiles(cpus[label]),
            "wall_over_bare_s": statistics.median(walls[label]) - bare,
            "cpu_over_bare_s": statistics.median(cpus[label]) - bare_cpu,
            "cpu_vs_import_onnx_numpy": statistics.median(cpus[label]) / heavy_cpu,
        }
        for label in cmds
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="checkout of an older commit to time in the same rounds")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = measure(args.rounds, args.baseline)
    doc = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"{platform.platform()}, Python {platform.python_version()}",
        "note": "shared 2-core machine: other jobs ran at the same time; runs are interleaved",
        "rounds": args.rounds,
        "results": results,
    }
    text = json.dumps(doc, indent=2) + "\n"
    if args.out is not None:
        args.out.write_text(text)
    for label, r in results.items():
        print(f"{label:42s} wall {r['wall_s']['median']:.3f} s (+{r['wall_over_bare_s']:.3f}) "
              f"cpu {r['cpu_s']['median']:.3f} s ({r['cpu_vs_import_onnx_numpy']:.2f}x onnx+numpy)")


if __name__ == "__main__":
    main()
