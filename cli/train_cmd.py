"""``onnxrecede train`` and ``onnxrecede export`` (need the [train] extra: torch, onnxscript).

torch is imported inside the commands only, so ``onnxrecede --help`` and ``prune`` work without it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from onnxrecede_cli.common import (
    FINITE,
    echo_json,
    guard_paths,
    handle_errors,
    quiet_option,
    setup_logging,
)

from onnxrecede.errors import InputError

if TYPE_CHECKING:
    from onnxrecede.io.paths import Role


def _data_reads(data: str | None) -> list[Role]:
    """The files the trainer's ``--data`` reads (imported here: the CLI starts without numpy)."""
    from onnxrecede.io.paths import data_reads

    return data_reads(data, "--data", training=True)


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError(
            "training and export need the [train] extra: pip install 'onnxrecede[train]'"
        ) from None


class _Bar:
    """One status line on stderr: epoch, step bar, loss, accuracy, lr (only on a terminal).

    Validation results follow each epoch as a log line.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, ev: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if ev["phase"] == "train":
            now = time.monotonic()
            if ev["step"] != ev["steps"] and now - self.last < 0.2:
                return
            self.last = now
            width = 24
            filled = int(width * ev["step"] / max(ev["steps"], 1))
            click.echo(
                f"\repoch {ev['epoch']}/{ev['epochs']} [{'#' * filled}{'-' * (width - filled)}] "
                f"{ev['step']}/{ev['steps']}  loss {ev['loss']:.4f}  acc {ev['acc']:.3f}  "
                f"lr {ev['lr']:.3g}   ",
                nl=ev["step"] == ev["steps"],  # the epoch summary is logged on its own line
                err=True,
            )


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--milestones must be comma-separated fractions, got '{text}'") from None
    if any(not 0 < v < 1 for v in values):
        raise InputError(f"--milestones fractions must lie in (0, 1), got '{text}'")
    return values


def _plot_histogram(imps: dict[str, Any], method: str, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        click.echo("warning: matplotlib is missing; no histogram PNG written", err=True)
        return False
    import torch

    values = torch.cat(list(imps.values())).numpy() if imps else torch.zeros(0).numpy()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=50, range=(0, 1) if method == "rni" else None, color="tab:blue")
    ax.set_xlabel("sigmoid(theta)" if method == "rni" else "|gamma|")
    ax.set_ylabel("channels")
    ax.set_yscale("log")
    ax.set_title(f"final channel importances ({method}, {len(values)} channels)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _apply(options: list[Callable[[Any], Any]], f: Any) -> Any:
    for option in reversed(options):
        f = option(f)
    return f


_SCHEDULE = [
    click.option("--epochs", type=int, default=160, show_default=True),
    click.option("--batch-size", type=int, default=64, show_default=True),
    click.option("--lr", type=FINITE, default=0.1, show_default=True),
    click.option("--momentum", type=FINITE, default=0.9, show_default=True),
    click.option("--no-nesterov", is_flag=True, help="plain momentum instead of Nesterov"),
    click.option(
        "--milestones",
        default="0.5,0.75",
        show_default=True,
        help="fractions of the epochs at which lr is divided by 10 ('' for none)",
    ),
    click.option("--weight-decay", type=FINITE, default=1e-4, show_default=True),
    click.option(
        "--bn-lr-mult",
        type=FINITE,
        default=10.0,
        show_default=True,
        help="learning-rate multiplier of the bounded-BN parameters",
    ),
]
#: options several train commands declare alike (one declaration each)
_EXPORTER = click.option(
    "--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True
)
_OPSET = click.option("--opset", type=int, default=None)
_ALL_LAYERS = click.option(
    "--all-layers", is_flag=True, help="importances for every BN, not only the authors' candidates"
)


_RUN = [
    click.option("--no-augment", is_flag=True, help="no random crop and flip"),
    click.option("--max-steps", type=int, default=None, help="cap on steps per epoch (quick runs)"),
    click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N"),
    click.option("--resume", is_flag=True, help="continue from OUT/last.pt"),
    _EXPORTER,
    _OPSET,
    click.option("--no-progress", is_flag=True),
    quiet_option,
]


def _schedule_options(f: Any) -> Any:
    """--epochs, --batch-size, --lr, --momentum, --no-nesterov, --milestones, ... (train and
    finetune share them, with the authors' values as defaults)."""
    return _apply(_SCHEDULE, f)


def _run_options(f: Any) -> Any:
    """--no-augment, --max-steps, --device, --resume, --exporter, --opset, progress, quiet."""
    return _apply(_RUN, f)


@click.command("train")
@click.option(
    "--model",
    "model_name",
    type=click.Choice(["vgg16", "resnet56", "resnet20"]),
    default="vgg16",
    show_default=True,
)
@click.option("--method", type=click.Choice(["rni", "l1", "ucs"]), default="rni", show_default=True)
@click.option(
    "--data",
    default="synthetic",
    show_default=True,
    help="synthetic[:N] | digits | cifar10:DIR | cifar100:DIR | folder:DIR",
)
@_schedule_options
@click.option(
    "--strength",
    type=FINITE,
    default=None,
    help="regulariser lambda [default: 1e-4 for rni and l1; ucs has none]",
)
@click.option("--shift", type=FINITE, default=3.0, show_default=True, help="rni shift b")
@click.option(
    "--reg-warmup",
    type=int,
    default=0,
    show_default=True,
    help="epochs trained without the regulariser before it is switched on",
)
@click.option(
    "--width", type=FINITE, default=1.0, show_default=True, help="channel width multiplier"
)
@click.option("--val-fraction", type=FINITE, default=0.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), default="runs/train", show_default=True
)
@_run_options
@_ALL_LAYERS
@handle_errors
def train(
    model_name: str,
    method: str,
    data: str,
    strength: float | None,
    shift: float,
    reg_warmup: int,
    width: float,
    val_fraction: float,
    seed: int,
    out_dir: str,
    all_layers: bool,
    **kw: Any,
) -> None:
    """Train a model with receding importances (or a baseline), then export it for pruning.

    Writes into OUT: last.pt, best.pt, log.json, model.onnx, imp.json, importances.png.
    Under torchrun the same command trains with DistributedDataParallel.
    """
    main_rank = _start(kw["quiet"])
    from onnxrecede.train.loop import TrainConfig, fit

    cfg = TrainConfig(
        model=model_name,
        method=method,  # type: ignore[arg-type]
        data=data,
        strength=strength,
        shift=shift,
        reg_warmup=reg_warmup,
        width=width,
        seed=seed,
        val_fraction=val_fraction,
        out=out_dir,
        **_config_kwargs(kw),
    )
    _guard_run(out_dir, _data_reads(data), kw)
    result = fit(cfg, progress=_Bar(not kw["no_progress"] and not kw["quiet"]))
    if main_rank:  # under torchrun, rank 0 exports
        _export_and_report(result, method, Path(out_dir), kw, all_layers, {})


#: what `train` and `finetune` write into OUT
RUN_FILES = ("best.pt", "last.pt", "log.json", "model.onnx", "imp.json", "importances.png")


def _guard_run(out_dir: str, reads: list[Role], kw: dict[str, Any]) -> None:
    """Before any work: the output-safety check for a run folder (``--resume`` reads and
    rewrites last.pt), and the export options (an --opset the exporter cannot write)."""
    from onnxrecede.train.export import check_opset

    check_opset(kw["exporter"], kw["opset"])
    resume = kw["resume"]
    out = Path(out_dir)
    writes = [(f"--out {out_dir}:", str(out / name)) for name in RUN_FILES]
    if resume:
        writes = [w for w in writes if not w[1].endswith("last.pt")]
    guard_paths(reads, writes)


def _start(quiet: bool) -> bool:
    main_rank = int(os.environ.get("RANK", "0")) == 0
    setup_logging(quiet=quiet or not main_rank)
    _need_torch()
    return main_rank


def _config_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig fields from the shared schedule and run options."""
    return {
        "epochs": kw["epochs"],
        "batch_size": kw["batch_size"],
        "lr": kw["lr"],
        "momentum": kw["momentum"],
        "nesterov": not kw["no_nesterov"],
        "milestones": _fractions(kw["milestones"]),
        "weight_decay": kw["weight_decay"],
        "bounded_lr_mult": kw["bn_lr_mult"],
        "device": kw["device"],
        "augment": not kw["no_augment"],
        "max_steps_per_epoch": kw["max_steps"],
        "resume": kw["resume"],
    }


def _export_and_report(
    result: Any, method: str, out: Path, kw: dict[str, Any], all_layers: bool, extra: dict
) -> None:
    """Export OUT/best.pt to model.onnx + imp.json, plot the histogram, print the summary."""
    from onnxrecede.train.export import export_checkpoint, importances_to_export

    exp = export_checkpoint(
        out / "best.pt",
        out / "model.onnx",
        out / "imp.json",
        exporter=kw["exporter"],
        opset=kw["opset"],
        all_layers=all_layers,
    )
    png = out / "importances.png"
    plotted = _plot_histogram(importances_to_export(result.model, method, all_layers), method, png)
    echo_json(
        {
            "out": str(out),
            **extra,
            "best_epoch": result.best_epoch,
            "best_val_acc": result.best_val_acc,
            "test": result.test,
            "onnx": str(exp.onnx_path),
            "importances": str(exp.importances_path),
            "histogram": str(png) if plotted else None,
            "prune_scope": "local" if method == "ucs" else "global",
        }
    )


@click.command("finetune")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--cut",
    "report_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="the JSON written by `prune --report` for the export of CHECKPOINT",
)
@click.option(
    "--importances",
    "imp_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="the importances file given to prune (its node -> module mapping) "
    "[default: imp.json beside CHECKPOINT]",
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="folder to write"
)
@click.option("--data", default=None, help="data source [default: the checkpoint's]")
@click.option("--val-fraction", type=FINITE, default=None, help="[default: the checkpoint's]")
@click.option("--seed", type=int, default=None, help="[default: the checkpoint's]")
@_schedule_options
@_run_options
@_ALL_LAYERS
@handle_errors
def finetune(
    checkpoint: str,
    report_path: str,
    imp_path: str | None,
    out_dir: str,
    data: str | None,
    val_fraction: float | None,
    seed: int | None,
    all_layers: bool,
    **kw: Any,
) -> None:
    """Cut CHECKPOINT's model as an ONNX prune report says, then fine-tune it.

    The channels removed are those `prune --report` lists for the exported model (joined to
    torch modules through the importances file the export wrote). Training runs with the
    regulariser off and the authors' schedule; --epochs 0 writes the cut model untrained.
    Writes into OUT: best.pt, last.pt (if trained), log.json, model.onnx, imp.json,
    importances.png. Resume and torchrun work as for `train`.
    """
    main_rank = _start(kw["quiet"])
    from onnxrecede.train.checkpoint import load_checkpoint
    from onnxrecede.train.finetune import checkpoint_data, finetune_config
    from onnxrecede.train.finetune import finetune as run_finetune

    if kw["epochs"] < 0:
        raise InputError(f"--epochs must be >= 0, got {kw['epochs']}")
    if Path(out_dir).resolve() == Path(checkpoint).resolve().parent and not kw["resume"]:
        raise InputError(
            f"--out {out_dir} is the folder of {checkpoint}; fine-tune into a new folder"
        )
    keys = imp_path or str(Path(checkpoint).parent / "imp.json")
    reads = [("checkpoint", checkpoint), ("--cut", report_path), ("importances", keys)]
    _guard_run(out_dir, [*reads, *_data_reads(data)], kw)
    ckpt = load_checkpoint(checkpoint)
    if data is None:  # the checkpoint's own data source is read: guard its files too
        _guard_run(
            out_dir, [*reads, *_data_reads(checkpoint_data(ckpt))], kw
        )
    cfg = finetune_config(
        ckpt, data=data, val_fraction=val_fraction, seed=seed, out=out_dir, **_config_kwargs(kw)
    )
    result = run_finetune(
        checkpoint,
        report_path,
        keys,
        cfg,
        progress=_Bar(not kw["no_progress"] and not kw["quiet"]),
    )
    if main_rank:
        removed = sum(len(v) for v in result.arch.get("cut", {}).values())
        _export_and_report(
            result, cfg.method, Path(out_dir), kw, all_layers, {"channels_removed": removed}
        )


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="model.onnx to write"
)
@click.option(
    "--importances",
    "importances_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="importances JSON to write",
)
@_EXPORTER
@_OPSET
@_ALL_LAYERS
@quiet_option
@handle_errors
def export(
    checkpoint: str,
    output: str,
    importances_path: str,
    exporter: str,
    opset: int | None,
    all_layers: bool,
    quiet: bool,
) -> None:
    """Export a training CHECKPOINT (best.pt or last.pt) to ONNX plus its importances file.

    Every key written is checked to resolve in the exported model before success is reported.
    """
    setup_logging(quiet=quiet)
    guard_paths(
        [("checkpoint", checkpoint)],
        [("-o", output), ("the external data of -o", f"{output}.data"),
         ("--importances", importances_path)],
    )  # fmt: skip
    _need_torch()
    from onnxrecede.train.export import export_checkpoint

    res = export_checkpoint(
        checkpoint,
        output,
        importances_path,
        exporter=exporter,  # type: ignore[arg-type]
        opset=opset,
        all_layers=all_layers,
    )
    echo_json(
        {
            "onnx": str(res.onnx_path),
            "importances": str(res.importances_path),
            "exporter": res.exporter,
            "keys": len(res.keys),
            "external_data": res.external_data,
        }
    )
