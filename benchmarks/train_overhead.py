"""Step time of rni training with the receding regulariser vs without, on the same model.

Same model (bounded BN), same batches; only lambda differs (0 turns the regulariser off).
Runs interleaved in rounds to spread machine noise evenly. On a shared machine the step times
swing by far more than the regulariser costs, so the script also reports the minimum step time
(the least disturbed) and times the regulariser's forward + backward alone, as a share of a step.

    python benchmarks/train_overhead.py [--model vgg16] [--width 0.5] [--steps 30] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from onnxrecede.train.bounded_bn import swap_to_bounded
from onnxrecede.train.models import build_model
from onnxrecede.train.optim import OptimConfig, make_optimizer
from onnxrecede.train.regularizer import Regularizer

RESULTS = Path(__file__).parent / "results"


def time_steps(model, opt, reg, xs, ys) -> list[float]:
    times = []
    for x, y in zip(xs, ys, strict=True):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        r = reg(model)
        if r is not None:
            loss = loss + r
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = swap_to_bounded(build_model(args.model, width=args.width)).train()
    opt = make_optimizer(model, OptimConfig(lr=0.01))
    xs = [torch.randn(args.batch, 3, 32, 32) for _ in range(args.steps)]
    ys = [torch.randint(0, 10, (args.batch,)) for _ in range(args.steps)]
    regs = {"off": Regularizer("rni", 0.0), "on": Regularizer("rni", 1e-4, 3.0)}
    time_steps(model, opt, regs["on"], xs[:3], ys[:3])  # warm-up
    per: dict[str, list[float]] = {"off": [], "on": []}
    steps: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(args.rounds):
        for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
            t = time_steps(model, opt, regs[name], xs, ys)
            steps[name].extend(t)
            per[name].append(statistics.median(t))
    off, on = statistics.median(per["off"]), statistics.median(per["on"])
    off_min, on_min = min(steps["off"]), min(steps["on"])
    reg_only = []
    for _ in range(200):
        t0 = time.perf_counter()
        r = regs["on"](model)
        assert r is not None
        r.backward()
        reg_only.append(time.perf_counter() - t0)
    doc = {
        "model": args.model,
        "width": args.width,
        "batch": args.batch,
        "steps": args.steps,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "step_s_without": off,
        "step_s_with": on,
        "overhead_pct": 100 * (on / off - 1),
        "min_step_s_without": off_min,
        "min_step_s_with": on_min,
        "overhead_pct_min": 100 * (on_min / off_min - 1),
        "regulariser_fwd_bwd_s": statistics.median(reg_only),
        "regulariser_share_pct": 100 * statistics.median(reg_only) / off_min,
        "rounds_without": per["off"],
        "rounds_with": per["on"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train-overhead.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
