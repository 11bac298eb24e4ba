"""Cuts of production models other people trained and exported (paddle2onnx), no fine-tuning.

The models are the PaddleOCR ones that RapidOCR ships inside its wheel on PyPI
(``rapidocr_onnxruntime`` 1.4.4, ``rapidocr_onnxruntime/models/``): the PP-OCRv4 text detector
(DBNet) and recogniser (SVTR, CTC output) and the mobile v2.0 text-orientation classifier.
They are not part of this repository and nothing here downloads them; fetch them yourself::

    pip download rapidocr_onnxruntime==1.4.4 --no-deps -d /tmp/rapidocr
    unzip -o /tmp/rapidocr/rapidocr_onnxruntime-1.4.4-py3-none-any.whl -d /tmp/rapidocr/whl
    M=/tmp/rapidocr/whl/rapidocr_onnxruntime/models
    python benchmarks/production.py --cls $M/ch_ppocr_mobile_v2.0_cls_infer.onnx \\
        --rec $M/ch_PP-OCRv4_rec_infer.onnx --det $M/ch_PP-OCRv4_det_infer.onnx

Data is rendered offline (``ocr_data``), scored as in ``ocr_eval``. Each cut is one
``onnxrecede prune`` process (wall time and peak RSS from ``os.wait4``), at 10/30/50% fewer MACs
(``--target-macs 0.9/0.7/0.5``), three ways:

- ``l1``: filter-L1 importances (``onnxrecede importances -c l1``), the cut alone;
- ``l1+reconstruct``: the same importances, ``--reconstruct`` on the calibration data;
- ``data``: no ``-i``: channels chosen from the calibration data, then reconstructed.

Writes ``--out`` (JSON) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ocr_data  # noqa: E402
import ocr_eval  # noqa: E402

from onnxrecede.importance.criteria import compute_importances  # noqa: E402
from onnxrecede.importance.file_format import save_importances  # noqa: E402
from onnxrecede.io.model_files import load_model  # noqa: E402
from onnxrecede.runtime.probe import Probe  # noqa: E402

CLI = [str(Path(sys.executable).parent / "onnxrecede")]
SHAPES = {"cls": "x:1x3x48x192", "rec": "x:1x3x48x320", "det": "x:1x3x320x320"}


def _runner(path: str) -> Callable[[np.ndarray], np.ndarray]:
    probe = Probe(path, [], include_outputs=True)
    name = probe.model_outputs[0]
    return lambda x: probe.run({"x": x})[name]


def _data(task: str, work: Path, calib: int, evals: int) -> tuple[Path, Callable[[str], float]]:
    """The calibration file and the scoring function of one task."""
    path = work / f"{task}_calib.npz"
    if task == "rec":
        x, _ = ocr_data.rec_set(calib, 100)
        ex, texts = ocr_data.rec_set(evals, 200)
        chars: list[str] = []

        def score(model: str) -> float:
            if not chars:
                chars.extend(ocr_eval.characters(model))
            return ocr_eval.rec_exact(_runner(model), ex, texts, chars)
    elif task == "cls":
        x, _ = ocr_data.cls_set(calib, 100)
        ex, ey = ocr_data.cls_set(evals, 200)

        def score(model: str) -> float:
            return ocr_eval.cls_top1(_runner(model), ex, ey)
    else:
        x = np.stack([p.image for p in ocr_data.det_set(calib, 100, size=320)])
        pages = ocr_data.det_set(evals, 200, size=320)

        def score(model: str) -> float:
            return ocr_eval.det_recall(_runner(model), pages)
    np.savez(path, x=x)
    return path, score


def _prune(args: list[str]) -> tuple[int, float, float, float, str]:
    """Run one prune; exit code, wall and CPU seconds, peak RSS in MiB, the output's end."""
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([*CLI, "prune", *args, "-q"], stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        log.seek(0)
        tail = log.read()[-600:]
    cpu = usage.ru_utime + usage.ru_stime
    return os.waitstatus_to_exitcode(status), wall, cpu, usage.ru_maxrss / 1024, tail


def run_task(task: str, model: str, work: Path, opts: argparse.Namespace) -> list[dict[str, Any]]:
    calib, score = _data(task, work, opts.calib if task != "det" else opts.det_calib,
                         opts.evals if task != "det" else opts.det_evals)  # fmt: skip
    imp = work / f"{task}.l1.json"
    l1 = compute_importances(load_model(model), "l1")
    save_importances(imp, l1.scores, l1.producer)
    rows = [{"task": task, "method": "original", "cut": 0.0, "score": score(model)}]
    print(json.dumps(rows[-1]), flush=True)
    for cut in opts.cuts:
        for method in opts.methods:
            out = work / f"{task}-{method}-{cut}.onnx"
            args = [model, "-o", str(out), "--target-macs", f"{1 - cut:g}", "--shape", SHAPES[task]]
            if method != "data":
                args += ["-i", str(imp)]
            if method != "l1":
                args += ["--calibration", str(calib), "--calibration-limit", str(opts.calib)]
            if method == "l1+reconstruct":
                args.append("--reconstruct")
            code, wall, cpu, rss, tail = _prune(args)
            row = {"task": task, "method": method, "cut": cut, "exit": code,
                   "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                   "peak_rss_mib": round(rss, 1)}  # fmt: skip
            if code == 0:
                row["score"] = score(str(out))
            else:
                row["error"] = tail
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


METRICS = {"cls": "top-1 (0/180)", "rec": "exact match", "det": "recall at IoU 0.5"}


def markdown(results: dict[str, Any]) -> str:
    """The results as one table per task."""
    lines = []
    for task in ("cls", "rec", "det"):
        rows = [r for r in results["rows"] if r["task"] == task]
        if not rows:
            continue
        original = next(r["score"] for r in rows if r["method"] == "original")
        lines += [f"### {task}: {METRICS[task]}, original {original:.2f}%", "",
                  "| fewer MACs | method | score | drop (points) | wall s | CPU s | peak RSS MiB |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            if r["method"] == "original":
                continue
            score = f"{r['score']:.2f}%" if "score" in r else f"exit {r['exit']}"
            drop = f"{original - r['score']:.2f}" if "score" in r else "-"
            lines.append(f"| {100 * r['cut']:.0f}% | {r['method']} | {score} | {drop} | "
                         f"{r['seconds']} | {r.get('cpu_seconds', '-')} | {r['peak_rss_mib']} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for task in ("cls", "rec", "det"):
        p.add_argument(f"--{task}", help=f"path of the {task} model")
    p.add_argument("--work", type=Path, default=Path("/tmp/onnxrecede-production"))
    p.add_argument("--cuts", type=lambda s: [float(c) for c in s.split(",")], default=[0.1, 0.3, 0.5])
    p.add_argument("--methods", type=lambda s: s.split(","),
                   default=["l1", "l1+reconstruct", "data"])  # fmt: skip
    p.add_argument("--calib", type=int, default=256)
    p.add_argument("--evals", type=int, default=300)
    p.add_argument("--det-calib", type=int, default=64)
    p.add_argument("--det-evals", type=int, default=40)
    p.add_argument("--out", type=Path, default=HERE / "results" / "production.json")
    p.add_argument("--markdown", action="store_true", help="print --out as tables and stop")
    opts = p.parse_args()
    if opts.markdown:
        print(markdown(json.loads(opts.out.read_text())))
        return
    opts.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": {"cpu": platform.processor() or platform.machine(),
                                           "cpus": os.cpu_count()}, "rows": []}  # fmt: skip
    if opts.out.exists():
        results = json.loads(opts.out.read_text())
    for task in ("cls", "rec", "det"):
        model = getattr(opts, task)
        if model:
            results["rows"] = [r for r in results["rows"] if r["task"] != task or
                               r["method"] not in ("original", *opts.methods) or
                               (r["method"] != "original" and r["cut"] not in opts.cuts)]  # fmt: skip
            results["rows"] += run_task(task, model, opts.work, opts)
            opts.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
