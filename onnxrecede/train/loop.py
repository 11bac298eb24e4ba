"""The training loop: seeded, evaluated every epoch, checkpointed, resumable, DDP-ready.

Per epoch: train (task loss + lambda * R), evaluate on the validation split, append a record
(losses, accuracies, lr, importance histogram) to ``log.json``, save ``last.pt``, and ``best.pt``
when validation accuracy improves. At the end the best model (chosen on validation, never on
test) is evaluated on the test split.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from onnxrecede.errors import InputError
from onnxrecede.io.outputs import atomic_write_text
from onnxrecede.train import ddp
from onnxrecede.train.bounded_bn import swap_to_bounded
from onnxrecede.train.checkpoint import load_checkpoint, save_checkpoint
from onnxrecede.train.data import (
    DataBundle,
    ImageSet,
    augment,
    load_data,
    normalize,
    num_train_batches,
    train_batches,
)
from onnxrecede.train.models import build_model
from onnxrecede.train.optim import OptimConfig, make_optimizer, make_scheduler
from onnxrecede.train.regularizer import (
    DEFAULT_SHIFT,
    DEFAULT_STRENGTH,
    METHODS,
    MethodName,
    Regularizer,
    channel_importances,
)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    model: str = "vgg16"
    method: MethodName = "rni"
    data: str = "synthetic"
    epochs: int = 160
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    bounded_lr_mult: float = 10.0
    milestones: tuple[float, ...] = (0.5, 0.75)  # lr /10 at these fractions of the epochs
    strength: float | None = None  # None: the method's default (1e-4; 0 for ucs)
    shift: float = DEFAULT_SHIFT
    reg_warmup: int = 0  # epochs trained without the regulariser before it is switched on
    width: float = 1.0
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.1
    augment: bool = True
    max_steps_per_epoch: int | None = None  # cap for quick runs and benchmarks
    out: str | None = None  # folder for checkpoints and log; None: keep nothing on disk
    resume: bool = False

    def resolved_strength(self) -> float:
        return DEFAULT_STRENGTH[self.method] if self.strength is None else float(self.strength)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method '{self.method}'; choose one of: {', '.join(METHODS)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.lr <= 0:
            raise InputError(f"--lr must be positive, got {self.lr}")
        if self.resolved_strength() < 0:
            raise InputError(f"--strength must be >= 0, got {self.strength}")
        if self.method == "ucs" and self.resolved_strength() > 0:
            raise InputError("ucs trains without a regulariser; drop --strength")
        if self.reg_warmup < 0:
            raise InputError(f"--reg-warmup must be >= 0, got {self.reg_warmup}")


ProgressFn = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    model: nn.Module  # the best model (on validation), in eval mode, on the CPU
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    test: dict[str, float] | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    normalization: dict[str, list[float]] = field(default_factory=dict)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA device is available")
    return dev


def importance_histogram(imps: dict[str, torch.Tensor], method: str, bins: int = 20) -> dict:
    """Counts of all channel importances over ``bins`` equal bins of [0, top]."""
    if not imps:
        return {"edges": [], "counts": [], "n": 0}
    v = torch.cat(list(imps.values())).double()
    top = 1.0 if method == "rni" else max(float(v.max()), 1e-12)
    counts = torch.histc(v, bins=bins, min=0.0, max=top)
    edges = torch.linspace(0.0, top, bins + 1)
    return {
        "edges": [round(float(e), 6) for e in edges],
        "counts": [int(c) for c in counts],
        "n": int(v.numel()),
        "below_0.01": int((v < 0.01 * (1.0 if method == "rni" else top)).sum()),
        "median": float(v.median()),
    }


def bimodality_coefficient(values: Any) -> float:
    """Sarle's bimodality coefficient of a sample (> 5/9 = 0.555 suggests two modes).

    (skew^2 + 1) / (excess kurtosis + 3 (n-1)^2 / ((n-2)(n-3))); needs at least 4 values.
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = v.numel()
    if n < 4:
        raise ValueError("the bimodality coefficient needs at least 4 values")
    m = v - v.mean()
    s2 = float((m**2).mean())
    if s2 == 0.0:
        return 0.0
    skew = float((m**3).mean()) / s2**1.5
    kurt = float((m**4).mean()) / s2**2 - 3
    return (skew**2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


# ----------------------------------------------------------------------------- steps


def _batch(
    data: ImageSet,
    idx: torch.Tensor,
    bundle: DataBundle,
    device: torch.device,
    gen: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    imgs = data.images[idx]
    x = augment(imgs, gen, flip=bundle.flip) if gen is not None else imgs
    return normalize(x, bundle.mean, bundle.std).to(device), data.labels[idx].to(device)


def evaluate(
    model: nn.Module,
    data: ImageSet,
    bundle: DataBundle,
    device: torch.device,
    info: ddp.DistInfo | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Loss and accuracy over ``data`` (this rank's share, summed over ranks)."""
    info = info or ddp.DistInfo()
    model.eval()
    idx_all = torch.arange(len(data))[info.rank :: info.world]
    loss_sum = correct = 0.0
    with torch.no_grad():
        for s in range(0, len(idx_all), batch_size):
            x, y = _batch(data, idx_all[s : s + batch_size], bundle, device, None)
            out = model(x)
            loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
            correct += float((out.argmax(1) == y).sum())
    loss_sum, correct, n = ddp.all_sum([loss_sum, correct, float(len(idx_all))], info, device)
    return {"loss": loss_sum / max(n, 1.0), "acc": correct / max(n, 1.0)}


def _train_epoch(ctx: _Run, epoch: int, progress: ProgressFn | None) -> dict[str, float]:
    cfg, model, info = ctx.cfg, ctx.model, ctx.info
    model.train()
    gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
    steps = num_train_batches(len(ctx.bundle.train), cfg.batch_size, info.world)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    lr = ctx.optimizer.param_groups[0]["lr"]
    sums = [0.0, 0.0, 0.0, 0.0]  # task loss * n, reg, correct, n
    for step, idx in enumerate(
        train_batches(ctx.bundle.train, cfg.batch_size, gen, info.rank, info.world)
    ):
        if step >= steps:
            break
        x, y = _batch(ctx.bundle.train, idx, ctx.bundle, ctx.device, gen if cfg.augment else None)
        out = model(x)
        loss = F.cross_entropy(out, y)
        reg = ctx.regularizer(ctx.raw_model) if epoch >= cfg.reg_warmup else None
        total = loss if reg is None else loss + reg
        ctx.optimizer.zero_grad(set_to_none=True)
        total.backward()
        ctx.optimizer.step()
        n = float(len(y))
        sums[0] += float(loss.detach()) * n
        sums[1] += float(reg.detach()) if reg is not None else 0.0
        sums[2] += float((out.detach().argmax(1) == y).sum())
        sums[3] += n
        if not math.isfinite(sums[0]):
            raise InputError(
                f"training diverged at epoch {epoch + 1}, step {step + 1} (loss is not finite); lower --lr"
            )
        if progress is not None and info.is_main:
            progress(
                {
                    "phase": "train",
                    "epoch": epoch + 1,
                    "epochs": cfg.epochs,
                    "step": step + 1,
                    "steps": steps,
                    "loss": sums[0] / sums[3],
                    "acc": sums[2] / sums[3],
                    "lr": lr,
                }
            )
    loss_sum, reg_sum, correct, n = ddp.all_sum(sums, ctx.info, ctx.device)
    return {
        "loss": loss_sum / max(n, 1.0),
        "reg": reg_sum / max(steps, 1) / info.world,
        "acc": correct / max(n, 1.0),
        "lr": lr,
        "steps": steps,
    }


# ----------------------------------------------------------------------------- run state


@dataclass
class _Run:
    cfg: TrainConfig
    bundle: DataBundle
    device: torch.device
    info: ddp.DistInfo
    raw_model: nn.Module
    model: nn.Module  # raw_model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    regularizer: Regularizer
    arch: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    start_epoch: int = 0
    ranks_in_sync: bool | None = None

    @property
    def out(self) -> Path | None:
        return Path(self.cfg.out) if self.cfg.out else None

    def normalization(self) -> dict[str, list[float]]:
        return {"mean": list(self.bundle.mean), "std": list(self.bundle.std)}


def _new_run(
    cfg: TrainConfig,
    model: nn.Module | None,
    bundle: DataBundle | None,
    arch: dict[str, Any] | None = None,
) -> _Run:
    cfg.validate()
    torch.manual_seed(cfg.seed)
    probe = pick_device(cfg.device)
    info = ddp.setup(probe)
    device = pick_device(cfg.device, info.local_rank)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    bundle = bundle or load_data(cfg.data, cfg.val_fraction, cfg.seed)
    bn = "bounded" if cfg.method == "rni" else "plain"
    if model is None:
        arch = {"model": cfg.model, "num_classes": bundle.num_classes, "width": cfg.width, "bn": bn}
        model = build_model(cfg.model, bundle.num_classes, cfg.width)
    elif arch is None:
        arch = {"model": "custom", "num_classes": bundle.num_classes, "width": 1.0, "bn": bn}
    if bn == "bounded":
        swap_to_bounded(model)
    model.to(device)
    wrapped: nn.Module = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    ocfg = OptimConfig(
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        bounded_lr_mult=cfg.bounded_lr_mult,
        milestones=tuple(cfg.milestones),
    )
    optimizer = make_optimizer(model, ocfg)
    return _Run(
        cfg,
        bundle,
        device,
        info,
        model,
        wrapped,
        optimizer,
        make_scheduler(optimizer, cfg.epochs, ocfg),
        Regularizer(cfg.method, cfg.resolved_strength(), cfg.shift),
        arch,
    )


_MUST_MATCH = ("model", "method", "data", "width", "epochs", "batch_size", "seed")


def _resume(run: _Run) -> None:
    assert run.out is not None
    ckpt = load_checkpoint(run.out / "last.pt")
    if "optimizer" not in ckpt:
        raise InputError(f"{run.out / 'last.pt'} holds no optimizer state; it cannot be resumed")
    old = ckpt.get("config", {})
    diff = [k for k in _MUST_MATCH if old.get(k) != getattr(run.cfg, k)]
    if diff:
        what = ", ".join(f"{k}: {old.get(k)!r} -> {getattr(run.cfg, k)!r}" for k in diff)
        raise InputError(f"cannot resume {run.out / 'last.pt'}: the settings changed ({what})")
    if ckpt.get("arch") != run.arch:
        raise InputError(
            f"cannot resume {run.out / 'last.pt'}: it holds another architecture or cut "
            f"({ckpt.get('arch', {}).get('model')!r}); use a new --out folder"
        )
    run.raw_model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.history = list(ckpt.get("history", []))
    run.best = dict(ckpt.get("best", {}))
    run.start_epoch = int(ckpt["epoch"])
    torch.set_rng_state(ckpt["rng"])
    log.info("resumed from %s at epoch %d", run.out / "last.pt", run.start_epoch)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _save_epoch(run: _Run, epoch: int, improved: bool) -> None:
    if run.out is None or not run.info.is_main:
        return
    run.out.mkdir(parents=True, exist_ok=True)
    common = {
        "arch": run.arch,
        "method": run.cfg.method,
        "normalization": run.normalization(),
        "config": dataclasses.asdict(run.cfg),
    }
    if improved:
        save_checkpoint(
            run.out / "best.pt",
            {**common, "epoch": epoch, "model": run.best["state"], "val_acc": run.best["val_acc"]},
        )
    save_checkpoint(
        run.out / "last.pt",
        {
            **common,
            "epoch": epoch,
            "model": _cpu_state(run.raw_model),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "history": run.history,
            "best": run.best,
            "rng": torch.get_rng_state(),
        },
    )
    write_log(run.out / "log.json", run, None)


def write_log(path: Path, run: _Run, test: dict[str, float] | None) -> None:
    doc = {
        "config": dataclasses.asdict(run.cfg),
        "arch": run.arch,
        "world_size": run.info.world,
        "ranks_in_sync": run.ranks_in_sync,
        "normalization": run.normalization(),
        "best_epoch": run.best.get("epoch"),
        "best_val_acc": run.best.get("val_acc"),
        "test": test,
        "epochs": run.history,
    }
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


# ----------------------------------------------------------------------------- fit


def fit(
    cfg: TrainConfig,
    model: nn.Module | None = None,
    bundle: DataBundle | None = None,
    progress: ProgressFn | None = None,
    arch: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` (or the given ``model``, through the BN swap) as the config says.

    ``progress`` receives dicts (phase "train" per step, "epoch" per epoch) on rank 0.
    ``arch`` describes a given ``model`` in its checkpoints (what ``model_from_arch`` rebuilds;
    a fine-tune passes the cut model's); by default a given model is recorded as "custom".
    """
    run = _new_run(cfg, model, bundle, arch)
    try:
        if cfg.resume and run.out is not None and (run.out / "last.pt").is_file():
            _resume(run)
        elif cfg.resume:
            log.info("nothing to resume in %s; starting afresh", cfg.out)
        for epoch in range(run.start_epoch, cfg.epochs):
            _one_epoch(run, epoch, progress)
        return _finish(run)
    finally:
        ddp.teardown(run.info)


def _one_epoch(run: _Run, epoch: int, progress: ProgressFn | None) -> None:
    t0 = time.perf_counter()
    tr = _train_epoch(run, epoch, progress)
    run.scheduler.step()
    val = evaluate(run.model, run.bundle.val, run.bundle, run.device, run.info)
    imps = channel_importances(run.raw_model, run.cfg.method)
    rec = {
        "epoch": epoch + 1,
        "lr": tr["lr"],
        "train_loss": tr["loss"],
        "train_acc": tr["acc"],
        "reg": tr["reg"],
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "seconds": round(time.perf_counter() - t0, 3),
        "importance_histogram": importance_histogram(imps, run.cfg.method),
    }
    run.history.append(rec)
    improved = not run.best or val["acc"] > run.best["val_acc"]
    if improved:
        run.best = {"epoch": epoch + 1, "val_acc": val["acc"], "state": _cpu_state(run.raw_model)}
    _save_epoch(run, epoch + 1, improved)
    log.info(
        "epoch %d/%d  loss %.4f  acc %.4f  val_acc %.4f  lr %.4g  (%.1fs)",
        epoch + 1,
        run.cfg.epochs,
        tr["loss"],
        tr["acc"],
        val["acc"],
        tr["lr"],
        rec["seconds"],
    )
    if progress is not None and run.info.is_main:
        progress(
            {
                "phase": "epoch",
                **{k: v for k, v in rec.items() if k != "importance_histogram"},
                "epochs": run.cfg.epochs,
            }
        )


def _finish(run: _Run) -> TrainResult:
    run.ranks_in_sync = synced = ddp.in_sync(run.raw_model, run.info, run.device)
    if not synced:  # DDP keeps replicas equal; a mismatch means a broken set-up
        log.warning("the processes ended with different parameters")
    run.raw_model.load_state_dict(run.best["state"])
    test = None
    if run.bundle.test is not None and len(run.bundle.test):
        test = evaluate(run.model, run.bundle.test, run.bundle, run.device, run.info)
    if run.out is not None and run.info.is_main:
        write_log(run.out / "log.json", run, test)
    model = run.raw_model.cpu().eval()
    return TrainResult(
        model,
        run.history,
        run.best["epoch"],
        run.best["val_acc"],
        test,
        run.arch,
        run.normalization(),
    )
