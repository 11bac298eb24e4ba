"""Reproduce the paper's comparison end to end: train, cut in ONNX, carry the cut back, fine-tune.

For each model (VGG-16, ResNet-56) and method (rni, l1, ucs):
1. train on ``--data`` (default ``digits``) with the method's regulariser, choosing the best epoch
   on the validation split; export to ONNX with the importances (the authors' candidates: VGG all
   13 BN layers, ResNet-56 the first BN of every block);
2. cut the ONNX model with ``onnxrecede.prune`` at 50 / 70 / 90 % of the scored channels (global
   for rni and l1, local for ucs, at least 3 channels per layer) and measure test accuracy of
   the pruned ONNX model in ONNX Runtime, right after the cut;
3. carry each cut back to torch (``onnxrecede.train.finetune``: apply_cut + training with the
   regulariser off, the authors' schedule shortened) and measure test accuracy after the
   fine-tune (the trainer's evaluation of the best epoch on validation);
4. ``prune --ratio auto``: the fraction the valley of the importances removes, and the accuracy
   there without fine-tuning (n/a where the importances are not bimodal);
5. importance histograms of the three methods side by side (PNG) and the bimodality of rni's
   importances against l1's (Sarle's coefficient, share of channels below 5 % of the maximum).

Settings (``--setting``):
- ``short`` (default, CPU; estimated 20-25 minutes on 2 idle cores with ``--jobs 2``, measured
  52 minutes on 2 cores shared with other jobs at load 7-10): widths VGG
  0.25 / ResNet-56 0.5; training epochs VGG 40 / ResNet-56 20 and fine-tune epochs per cut
  VGG 10 / ResNet-56 5 (lr 0.1, /10 at 50 % and 75 %, batch 64, SGD Nesterov, as the authors);
  strengths 10x the authors' (rni VGG lambda 1e-2 with b 0, ResNet 1e-3 with b 0; l1 VGG 1e-3,
  ResNet 1e-4): the authors' 160 epochs x 782 steps are ~125,000 steps, ours 40 x 20 = 800, and
  at the authors' strengths the push does not move theta far enough (docs/train.md, "When does
  the low mode form"). b 0 instead of the authors' 3 for VGG for the same reason, and for VGG
  rni a 5-epoch warm-up without the regulariser (without it whole VGG layers recede together
  and a global cut takes them to 3 channels; measured there). Export with
  the TorchScript exporter (faster than dynamo; both give equal cuts, tests/train/test_cut.py).
- ``paper``: the authors' exact settings (width 1, 160 epochs, batch 64, lr 0.1, rni VGG 1e-3 /
  b 3, ResNet-56 1e-4 / b 0, l1 1e-4 / 1e-5; fine-tune 160 epochs). Meant for a GPU.

Everything is resumable: each training and fine-tune writes checkpoints under ``--work`` and
continues from them; each finished (model, method) unit is kept in ``--work/UNIT.json`` and
skipped on the next run. ``--jobs 2`` runs two units at a time (one thread each).

    python benchmarks/reproduce.py [--setting short|paper] [--data digits] [--jobs 2]
        [--models vgg16,resnet56] [--methods rni,l1,ucs] [--work runs/reproduce]

Writes ``benchmarks/results/reproduce-<setting>-<data>.{json,md,png}`` (``--results``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
RATIOS = (0.5, 0.7, 0.9)
MIN_CHANNELS = 3

SETTINGS: dict[str, dict[str, Any]] = {
    "short": {
        "width": {"vgg16": 0.25, "resnet56": 0.5},
        "epochs": {"vgg16": 40, "resnet56": 20},
        "finetune_epochs": {"vgg16": 10, "resnet56": 5},
        "strength": {  # (lambda, b[, epochs of regulariser warm-up])
            ("vgg16", "rni"): (1e-2, 0.0, 5),
            ("vgg16", "l1"): (1e-3, 0.0),
            ("resnet56", "rni"): (1e-3, 0.0),
            ("resnet56", "l1"): (1e-4, 0.0),
        },
    },
    "smoke": {  # checks the script itself in a minute; numbers mean nothing
        "width": {"vgg16": 0.125, "resnet56": 0.25},
        "epochs": {"vgg16": 1, "resnet56": 1},
        "finetune_epochs": {"vgg16": 1, "resnet56": 1},
        "strength": {
            ("vgg16", "rni"): (1e-2, 0.0),
            ("vgg16", "l1"): (1e-3, 0.0),
            ("resnet56", "rni"): (1e-3, 0.0),
            ("resnet56", "l1"): (1e-4, 0.0),
        },
    },
    "paper": {
        "width": {"vgg16": 1.0, "resnet56": 1.0},
        "epochs": {"vgg16": 160, "resnet56": 160},
        "finetune_epochs": {"vgg16": 160, "resnet56": 160},
        "strength": {
            ("vgg16", "rni"): (1e-3, 3.0),
            ("vgg16", "l1"): (1e-4, 0.0),
            ("resnet56", "rni"): (1e-4, 0.0),
            ("resnet56", "l1"): (1e-5, 0.0),
        },
    },
}

#: Authors' public notebook, accuracy (%) after pruning AND fine-tuning (single run; METHOD.md).
AUTHORS = {
    ("vgg16", "cifar10"): {"l1": (93.87, 93.67, 89.95), "rni": (93.63, 93.67, 90.88),
                           "ucs": (93.58, 92.93, 84.05)},
    ("vgg16", "cifar100"): {"l1": (74.50, 71.34, 25.81), "rni": (72.01, 72.21, 59.35),
                            "ucs": (73.71, 70.67, 54.60)},
    ("resnet56", "cifar10"): {"l1": (94.03, 93.37, 89.91), "rni": (93.22, 93.26, 90.01),
                              "ucs": (93.54, 93.51, 88.81)},
    ("resnet56", "cifar100"): {"l1": (71.67, 70.29, 61.92), "rni": (71.36, 70.38, 64.01),
                               "ucs": (71.57, 71.14, 64.45)},
}  # fmt: skip


# ----------------------------------------------------------------------------- one unit


def _ort_accuracy(path: Path, bundle: Any) -> float:
    import onnxruntime as ort

    from onnxrecede.train.data import normalize

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = normalize(bundle.test.images, bundle.mean, bundle.std).numpy()
    y = bundle.test.labels.numpy()
    correct = 0
    for s in range(0, len(y), 256):
        out = sess.run(None, {"input": x[s : s + 256]})[0]
        correct += int((out.argmax(1) == y[s : s + 256]).sum())
    return correct / len(y)


def _save(path: Path, doc: dict) -> None:
    from onnxrecede.io.outputs import atomic_write_text

    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def run_unit(args: dict[str, Any], model: str, method: str) -> dict[str, Any]:
    """Train, cut, fine-tune one (model, method); resumable; returns the unit's record."""
    import torch

    torch.set_num_threads(args["threads"])
    import onnxrecede
    from onnxrecede.errors import OnnxRecedeError
    from onnxrecede.train.checkpoint import load_checkpoint
    from onnxrecede.train.data import load_data
    from onnxrecede.train.export import export_checkpoint, importances_to_export
    from onnxrecede.train.finetune import finetune, finetune_config
    from onnxrecede.train.loop import TrainConfig, bimodality_coefficient, fit
    from onnxrecede.train.regularizer import prune_scope

    setting = SETTINGS[args["setting"]]
    work = Path(args["work"]) / f"{model}-{method}"
    work.mkdir(parents=True, exist_ok=True)
    rec_path = work / "unit.json"
    rec: dict[str, Any] = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
    rec.update({"model": model, "method": method, "data": args["data"]})
    bundle = load_data(args["data"], 0.1, args["seed"])
    lam, b, *more = setting["strength"].get((model, method), (0.0, 0.0))
    warmup = int(more[0]) if more else 0
    cfg = TrainConfig(
        model=model,
        method=method,  # type: ignore[arg-type]
        data=args["data"],
        epochs=setting["epochs"][model],
        batch_size=64,
        lr=0.1,
        strength=lam if method != "ucs" else None,
        shift=b if method == "rni" else 3.0,
        reg_warmup=warmup,
        width=setting["width"][model],
        seed=args["seed"],
        device=args["device"],
        out=str(work / "train"),
        resume=True,
    )
    rec["train_config"] = {
        "epochs": cfg.epochs, "width": cfg.width, "lambda": lam if method != "ucs" else 0.0,
        "b": b if method == "rni" else None, "batch_size": 64, "lr": 0.1, "seed": cfg.seed,
        "reg_warmup": warmup,
    }  # fmt: skip
    if "train" not in rec:
        t0 = time.perf_counter()
        res = fit(cfg, bundle=bundle)
        export_checkpoint(
            work / "train" / "best.pt",
            work / "model.onnx",
            work / "imp.json",
            exporter="torchscript",
        )
        imps = importances_to_export(res.model, method)
        v = torch.cat(list(imps.values())).double().numpy()
        scaled = v if method == "rni" else v / max(float(v.max()), 1e-12)
        rec["train"] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "best_epoch": res.best_epoch,
            "val_acc": res.best_val_acc,
            "test_acc": res.test["acc"] if res.test else None,
            "onnx_test_acc": _ort_accuracy(work / "model.onnx", bundle),
        }
        rec["importances"] = {
            "values": [round(float(x), 6) for x in v],
            "channels": int(len(v)),
            "bimodality": bimodality_coefficient(scaled),
            "below_5pct_of_max": float((scaled < 0.05).mean()),
            "below_0.01": float((v < 0.01).mean()),
        }
        _save(rec_path, rec)
    scope = prune_scope(method)  # type: ignore[arg-type]
    cuts = rec.setdefault("cuts", {})
    for r in RATIOS:
        key = f"{r:.1f}"
        cell = cuts.setdefault(key, {})
        pruned = work / f"pruned-{key}.onnx"
        report_path = work / f"report-{key}.json"
        if "acc_after_cut" not in cell:
            t0 = time.perf_counter()
            m, report = onnxrecede.prune(
                work / "model.onnx", work / "imp.json", ratio=r, scope=scope,
                min_channels=MIN_CHANNELS,
            )  # fmt: skip
            onnxrecede.save_model(m, pruned)
            _save(report_path, report.to_dict())
            cell.update(
                {
                    "channels_removed": report.channels_removed,
                    "channels_prunable": report.channels_prunable,
                    "params": [report.params_before, report.params_after],
                    "macs": [report.macs_before, report.macs_after],
                    "acc_after_cut": _ort_accuracy(pruned, bundle),
                    "cut_seconds": round(time.perf_counter() - t0, 1),
                }
            )
            _save(rec_path, rec)
        if "acc_after_finetune" not in cell:
            t0 = time.perf_counter()
            ckpt = work / "train" / "best.pt"
            fcfg = finetune_config(
                load_checkpoint(ckpt),
                epochs=setting["finetune_epochs"][model],
                device=args["device"],
                out=str(work / f"finetune-{key}"),
                resume=True,
            )
            fres = finetune(ckpt, report_path, work / "imp.json", fcfg)
            cell.update(
                {
                    "acc_after_finetune": fres.test["acc"] if fres.test else None,
                    "finetune_best_epoch": fres.best_epoch,
                    "finetune_epochs": fcfg.epochs,
                    "finetune_seconds": round(time.perf_counter() - t0, 1),
                }
            )
            _save(rec_path, rec)
    if "auto" not in rec or args["redo_auto"]:
        try:
            m, report = onnxrecede.prune(
                work / "model.onnx", work / "imp.json", ratio="auto", scope=scope,
                min_channels=MIN_CHANNELS,
            )  # fmt: skip
            onnxrecede.save_model(m, work / "pruned-auto.onnx")
            rec["auto"] = {
                "fraction_removed": report.channels_removed / max(report.channels_prunable, 1),
                "channels_removed": report.channels_removed,
                "channels_prunable": report.channels_prunable,
                "acc_after_cut": _ort_accuracy(work / "pruned-auto.onnx", bundle),
            }
        except TypeError as e:  # ratio="auto" not in this onnxrecede yet
            rec["auto"] = {"n/a": f"not yet available ({e})"}
        except OnnxRecedeError as e:
            rec["auto"] = {"n/a": str(e).splitlines()[0]}
        _save(rec_path, rec)
    if method != "ucs" and "layer_max_normalised" not in rec:
        rec["layer_max_normalised"] = _normalised_cuts(work, bundle, scope)
        _save(rec_path, rec)
    rec["done"] = True
    _save(rec_path, rec)
    return rec


def _normalised_cuts(work: Path, bundle: Any, scope: str) -> dict[str, Any]:
    """Not the authors' procedure: accuracy right after global cuts of importances divided by
    their layer's maximum (a layer whose channels all receded together keeps its best ones)."""
    import onnxrecede
    from onnxrecede.errors import OnnxRecedeError
    from onnxrecede.importance.file_format import load_importances, save_importances

    imp = load_importances(work / "imp.json")
    scores = {k: v / max(float(v.max()), 1e-12) for k, v in imp.scores.items()}
    save_importances(work / "imp-layer-max.json", scores, dict(imp.producer))
    out: dict[str, Any] = {}
    for r in (*RATIOS, "auto"):
        key = r if r == "auto" else f"{r:.1f}"
        try:
            m, report = onnxrecede.prune(
                work / "model.onnx", work / "imp-layer-max.json", ratio=r, scope=scope,
                min_channels=MIN_CHANNELS,
            )  # fmt: skip
        except OnnxRecedeError as e:
            out[str(key)] = {"n/a": str(e).splitlines()[0]}
            continue
        onnxrecede.save_model(m, work / f"pruned-layer-max-{key}.onnx")
        out[str(key)] = {
            "fraction_removed": report.channels_removed / max(report.channels_prunable, 1),
            "acc_after_cut": _ort_accuracy(work / f"pruned-layer-max-{key}.onnx", bundle),
        }
    return out


def _unit_safe(args: dict[str, Any], model: str, method: str) -> dict[str, Any]:
    try:
        return run_unit(args, model, method)
    except Exception as e:  # keep the other units going; the error goes into the results
        traceback.print_exc()
        return {"model": model, "method": method, "error": f"{type(e).__name__}: {e}"}


# ----------------------------------------------------------------------------- report


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) else "—"


def _plot(units: list[dict], models: list[str], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(
        len(models), len(methods), figsize=(4 * len(methods), 3 * len(models)), squeeze=False
    )
    by = {(u["model"], u["method"]): u for u in units}
    for i, model in enumerate(models):
        for j, method in enumerate(methods):
            ax = axes[i][j]
            u = by.get((model, method), {})
            vals = np.asarray(u.get("importances", {}).get("values", []), dtype=float)
            if len(vals):
                top = 1.0 if method == "rni" else float(vals.max())
                ax.hist(vals, bins=50, range=(0, top), color="tab:blue")
                ax.set_yscale("log")
                bc = u["importances"]["bimodality"]
                ax.set_title(f"{model} {method}: BC {bc:.2f}", fontsize=10)
            else:
                ax.set_title(f"{model} {method}: missing", fontsize=10)
            ax.set_xlabel("sigmoid(theta)" if method == "rni" else "|gamma|")
            if j == 0:
                ax.set_ylabel("channels")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(args: argparse.Namespace, units: list[dict], wall: float, stem: Path) -> None:
    models, methods = args.models.split(","), args.methods.split(",")
    setting = SETTINGS[args.setting]
    doc = {
        "command": "python benchmarks/reproduce.py " + " ".join(sys.argv[1:]),
        "setting": args.setting,
        "settings": {
            "width": setting["width"],
            "epochs": setting["epochs"],
            "finetune_epochs": setting["finetune_epochs"],
            "strength": {f"{m}/{k}": v for (m, k), v in setting["strength"].items()},
        },
        "data": args.data,
        "seed": args.seed,
        "ratios": list(RATIOS),
        "min_channels": MIN_CHANNELS,
        "wall_seconds_this_invocation": round(wall, 1),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "threads_per_unit": args.threads,
            "jobs": args.jobs,
        },
        "units": [{k: v for k, v in u.items() if k != "importances"} for u in units],
        "importances": {
            f"{u['model']}/{u['method']}": {
                k: v for k, v in u.get("importances", {}).items() if k != "values"
            }
            for u in units
        },
    }
    stem.parent.mkdir(parents=True, exist_ok=True)
    _save(stem.with_suffix(".json"), doc)
    _plot(units, models, methods, stem.with_suffix(".png"))
    by = {(u["model"], u["method"]): u for u in units}
    lines = [
        f"# Reproduction on `{args.data}` — setting `{args.setting}`",
        "",
        f"Command: `{doc['command']}`  ",
        f"Seed {args.seed}; widths {setting['width']}; training epochs {setting['epochs']}, "
        f"fine-tune epochs per cut {setting['finetune_epochs']}; cuts at "
        f"{', '.join(f'{int(r * 100)}%' for r in RATIOS)} of the scored channels, at least "
        f"{MIN_CHANNELS} per layer (rni, l1 global; ucs local). Accuracy: test split, %.",
        "",
        "| model | method | lambda, b | unpruned | cut 50% | 70% | 90% | fine-tuned 50% | 70% | 90% "
        "| auto: removed | auto: acc | BC | < 5% of max | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        for method in methods:
            u = by.get((model, method), {})
            if "error" in u:
                lines.append(f"| {model} | {method} | error: {u['error']} |" + " |" * 13)
                continue
            tc = u.get("train_config", {})
            cuts = u.get("cuts", {})
            auto = u.get("auto", {})
            imp = u.get("importances", {})
            auto_frac = (
                _pct(auto.get("fraction_removed")) if "n/a" not in auto else "n/a"
            ) if auto else "—"  # fmt: skip
            auto_acc = _pct(auto.get("acc_after_cut")) if auto and "n/a" not in auto else "n/a"
            row = [
                model,
                method,
                f"{tc.get('lambda', '—')}, {tc.get('b')}"
                + (f", warm-up {tc['reg_warmup']}" if tc.get("reg_warmup") else "")
                if method == "rni" else
                f"{tc.get('lambda', '—')}",
                _pct(u.get("train", {}).get("onnx_test_acc")),
                *[_pct(cuts.get(f"{r:.1f}", {}).get("acc_after_cut")) for r in RATIOS],
                *[_pct(cuts.get(f"{r:.1f}", {}).get("acc_after_finetune")) for r in RATIOS],
                auto_frac,
                auto_acc,
                f"{imp['bimodality']:.2f}" if "bimodality" in imp else "—",
                _pct(imp.get("below_5pct_of_max")),
                f"{u.get('train', {}).get('seconds', '—')}",
            ]  # fmt: skip
            lines.append("| " + " | ".join(str(c) for c in row) + " |")
    normed = [u for u in units if u.get("layer_max_normalised")]
    if normed:
        lines += [
            "",
            "Not the authors' procedure: the same trained models cut on importances divided by",
            "their layer's maximum (global, at least 3 per layer), accuracy right after the cut:",
            "",
            "| model | method | cut 50% | 70% | 90% | auto: removed | auto: acc |",
            "|---|---|---|---|---|---|---|",
        ]
        for u in normed:
            n = u["layer_max_normalised"]
            a = n.get("auto", {})
            lines.append(
                f"| {u['model']} | {u['method']} | "
                + " | ".join(_pct(n.get(f"{r:.1f}", {}).get("acc_after_cut")) for r in RATIOS)
                + f" | {_pct(a.get('fraction_removed')) if 'n/a' not in a else 'n/a'}"
                + f" | {_pct(a.get('acc_after_cut')) if 'n/a' not in a else 'n/a'} |"
            )
    na = [
        f"{u['model']}/{u['method']}: {u['auto']['n/a']}"
        for u in units
        if "n/a" in u.get("auto", {})
    ]
    if na:
        lines += ["", "`--ratio auto` n/a:", *[f"- {x}" for x in na]]
    lines += [
        "",
        "## The authors' numbers (CIFAR, accuracy after pruning and fine-tuning, %)",
        "",
        "| model, data | method | unpruned | 50% | 90% |",
        "|---|---|---|---|---|",
    ]
    for (model, data), rows in AUTHORS.items():
        if model in models:
            for method, (a, b5, b9) in rows.items():
                lines.append(f"| {model}, {data} | {method} | {a} | {b5} | {b9} |")
    lines += ["", f"Histograms: `{stem.with_suffix('.png').name}`."]
    atomic = stem.with_suffix(".md")
    from onnxrecede.io.outputs import atomic_write_text

    atomic_write_text(atomic, "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="short")
    ap.add_argument("--paper", action="store_true", help="the same as --setting paper")
    ap.add_argument("--data", default="digits", help="digits | cifar10:DIR | cifar100:DIR | ...")
    ap.add_argument("--models", default="vgg16,resnet56")
    ap.add_argument("--methods", default="rni,l1,ucs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="units run at a time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per unit")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default=None, help="[default: runs/reproduce-SETTING-DATA]")
    ap.add_argument("--results", type=Path, default=None, help="file stem of the results")
    ap.add_argument("--redo-auto", action="store_true", help="recompute the --ratio auto cells")
    ap.add_argument("--report-only", action="store_true", help="assemble what --work holds")
    args = ap.parse_args()
    if args.paper:
        args.setting = "paper"
    tag = f"{args.setting}-{args.data.split(':')[0]}"
    work = Path(args.work or f"runs/reproduce-{tag}")
    stem = args.results or RESULTS / f"reproduce-{tag}"
    models, methods = args.models.split(","), args.methods.split(",")
    units_todo = [(m, k) for m in models for k in methods]
    units_todo.sort(key=lambda u: u[0] != "resnet56")  # the longest first
    uargs = {
        "setting": args.setting, "data": args.data, "seed": args.seed, "work": str(work),
        "device": args.device, "threads": args.threads, "redo_auto": args.redo_auto,
    }  # fmt: skip
    t0 = time.perf_counter()
    results: dict[tuple[str, str], dict] = {}
    if args.report_only:
        for m, k in units_todo:
            p = work / f"{m}-{k}" / "unit.json"
            results[(m, k)] = (
                json.loads(p.read_text()) if p.is_file() else {"model": m, "method": k}
            )
    else:
        with cf.ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futs = {pool.submit(_unit_safe, uargs, m, k): (m, k) for m, k in units_todo}
            for fut in cf.as_completed(futs):
                results[futs[fut]] = fut.result()
                print(f"done {futs[fut]} after {time.perf_counter() - t0:.0f} s", flush=True)
                write_report(args, [results[u] for u in units_todo if u in results],
                             time.perf_counter() - t0, stem)  # fmt: skip
    write_report(args, [results.get(u, {"model": u[0], "method": u[1]}) for u in units_todo],
                 time.perf_counter() - t0, stem)  # fmt: skip
    print(f"wrote {stem}.{{json,md,png}} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
