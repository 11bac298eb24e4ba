"""Human-readable tables of a :class:`BenchResult` (for stdout)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from onnxrecede.bench.result import BenchResult, Configuration, ModelInfo, role_of


def format_comparison(result: BenchResult) -> str:
    """Models, then one latency table per provider and batch, with speedup and agreement."""
    env = result.environment
    threads = env.get("intra_op_threads") or "default"
    lines = [
        f"onnxruntime {env.get('onnxruntime_version')}  |  intra-op threads: {threads}  |  "
        f"{env.get('cpu')} ({env.get('cpu_count')} logical CPUs)",
        *_gpu_line(env),
        "",
        _models_table(result),
    ]
    for config in result.configurations:
        lines += ["", *_config_lines(result, config)]
    for missing in result.unavailable:
        lines += ["", f"{_display(missing.provider)} EP unavailable: {missing.reason}"]
    return "\n".join(lines)


def _gpu_line(env: dict) -> list[str]:
    if not env.get("gpu"):
        return []
    graph = "on" if env.get("cuda_graph") else "off"
    return [
        f"GPU: {env['gpu']}  |  cudnn_conv_algo_search: {env.get('cudnn_conv_algo_search')}  |  "
        f"CUDA graph: {graph}"
    ]


def _display(provider: str) -> str:
    return {"cpu": "CPU", "cuda": "CUDA", "tensorrt": "TensorRT"}.get(provider, provider)


def _models_table(result: BenchResult) -> str:
    rows = [("", "model", "size", "MACs", "params")]
    for i, model in enumerate(result.models):
        rows.append(
            (
                role_of(i, len(result.models)),
                os.path.basename(model.path),
                _bytes(model.file_size_bytes),
                _count(model.cost.macs) if model.cost else "?",
                _count(model.cost.params) if model.cost else "?",
            )
        )
    table = _table(rows, right=(2, 3, 4))
    shapes = _shapes(result.models[0]) if result.models else ""
    return table + (f"\n(MACs at input {shapes})" if shapes else "")


def _shapes(model: ModelInfo) -> str:
    return ", ".join(f"{n}:{'x'.join(map(str, s))}" for n, s in model.cost_input_shapes.items())


def _config_lines(result: BenchResult, config: Configuration) -> list[str]:
    shapes = ", ".join(
        f"{n}:{'x'.join(map(str, s))} {config.input_dtypes.get(n, '')}".rstrip()
        for n, s in config.input_shapes.items()
    )
    runs = config.latency[0].runs
    copies = "" if config.provider == "cpu" else (
        ", host<->device copies timed" if config.copies_timed else ", IO binding (copies not timed)"
    )  # fmt: skip
    lines = [
        f"{_display(config.provider)}, batch {config.batch} ({shapes}), {runs} interleaved runs "
        f"per model{copies}"
    ]
    rows = [("", "median", "p90", "mean", "throughput", "session")]
    for i, stats in enumerate(config.latency):
        rows.append(
            (
                role_of(i, len(config.latency)),
                _ms(stats.median),
                _ms(stats.p90),
                _ms(stats.mean),
                f"{stats.throughput:,.1f}/s",
                f"{config.session_create_s[i]:.3f} s",
            )
        )
    lines.append(_table(rows, right=(1, 2, 3, 4, 5)))
    for c in config.comparisons:
        s = c.speedup
        ideal = result.ideal_speedup(c.candidate)
        ideal_text = f", MAC ratio {ideal:.2f}x, efficiency {s.value / ideal:.2f}" if ideal else ""
        who = "" if len(config.latency) == 2 else f" ({role_of(c.candidate, len(config.latency))})"
        lines.append(
            f"speedup{who}: {s.value:.3f}x  ({s.confidence:.0%} CI {s.low:.3f}-{s.high:.3f})"
            + ideal_text
        )
        a = c.agreement
        if not a.shapes_match:
            bad = ", ".join(
                f"{o.name} {list(o.reference_shape)} vs {list(o.candidate_shape)}"
                for o in a.outputs
                if not o.shapes_match
            )
            lines.append(f"agreement: output shapes differ: {bad}")
        else:
            top1 = "" if a.top1_agreement is None else f", top-1 agreement {a.top1_agreement:.1%}"
            lines.append(
                f"agreement: max abs diff {_num(a.max_abs_diff)}, max rel diff "
                f"{_num(a.max_rel_diff)}{top1}"
            )
    return lines


def _table(rows: Sequence[tuple[str, ...]], right: tuple[int, ...]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f} ms" if ms < 10 else f"{ms:.2f} ms"


def _num(x: float | None) -> str:
    return "n/a (NaN or inf)" if x is None else f"{x:.3g}"


def _count(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
