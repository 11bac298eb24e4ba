"""``onnxrecede bench``: latency, cost and output agreement of models with ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from onnxrecede_cli.common import (
    POSITIVE,
    echo_json,
    guard_paths,
    handle_errors,
    progress_callback,
    quiet_option,
    setup_logging,
    shape_option,
    threads_option,
    tolerance_options,
)

from onnxrecede.errors import EXIT_TOO_SLOW, InputError

if TYPE_CHECKING:
    from onnxrecede.bench import BenchResult


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(
            f"{option} '{text}': expected comma-separated integers, e.g. 1,8,32"
        ) from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"{option} '{text}': expected positive integers, e.g. 1,8,32")
    return values


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--providers",
    default="cpu",
    show_default=True,
    help="Comma-separated execution providers: cpu, cuda, tensorrt.",
)
@click.option(
    "--batch",
    "batch",
    default="1",
    show_default=True,
    help="Comma-separated batch sizes bound to a dynamic first input dim.",
)
@shape_option
@threads_option
@click.option(
    "--warmup", type=int, default=5, show_default=True, help="Untimed runs per model before timing."
)
@click.option("--runs", type=int, default=None, help="Timed runs per model.")
@click.option(
    "--seconds",
    type=POSITIVE,
    default=None,
    help="Time each configuration for this long instead (default 5 s).",
)
@click.option(
    "--inputs",
    "inputs",
    type=click.Path(dir_okay=False),
    default=None,
    help="Feed these arrays (np.savez file keyed by input name) instead of random ones.",
)
@click.option(
    "--include-copies",
    is_flag=True,
    help="On GPUs, time host<->device copies too (default: IO binding, not timed).",
)
@click.option(
    "--trt-cache",
    type=click.Path(file_okay=False),
    default=None,
    help="TensorRT engine cache folder (default ~/.cache/onnxrecede/tensorrt).",
)
@click.option("--spin", is_flag=True, help="Let ORT worker threads spin between runs.")
@click.option(
    "--cuda-graph",
    is_flag=True,
    help="Replay ORT CUDA graphs over fixed IO-bound buffers (launch-bound batch-1 numbers); "
    "implies --providers cuda; exit 3 where the CUDA EP cannot run.",
)
@click.option(
    "--cudnn-conv-algo-search",
    type=click.Choice(["EXHAUSTIVE", "HEURISTIC", "DEFAULT"]),
    default="EXHAUSTIVE",
    show_default=True,
    help="cuDNN convolution algorithm search of the CUDA EP (ORT 1.20+ maps DEFAULT to a slow "
    "fallback).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of random inputs and of the bootstrap.",
)
@tolerance_options("of the agreement with the first model")
@click.option(
    "--fail-below",
    type=POSITIVE,
    default=None,
    metavar="SPEEDUP",
    help=f"Exit {EXIT_TOO_SLOW} when the measured speedup is below this (CI gate).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Write the result as JSON to this file ('-' for stdout).",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr.")
@quiet_option
@handle_errors
def bench(
    models: tuple[str, ...],
    providers: str,
    batch: str,
    shapes: tuple[str, ...],
    threads: int | None,
    warmup: int,
    runs: int | None,
    seconds: float | None,
    inputs: str | None,
    include_copies: bool,
    trt_cache: str | None,
    spin: bool,
    cuda_graph: bool,
    cudnn_conv_algo_search: str,
    seed: int,
    atol: float,
    rtol: float,
    fail_below: float | None,
    json_out: str | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Time MODEL(s) with ONNX Runtime; the first model is the reference.

    With two models, prints the candidate's speedup over the reference (ratio of median
    latencies, bootstrap 95% interval), MACs, params, file size and output agreement. Runs of
    all models are interleaved (A B A B ...) so that machine drift hits them alike.

    \b
    Examples:
      onnxrecede bench model.onnx
      onnxrecede bench model.onnx pruned.onnx --batch 1,8 --json result.json
      onnxrecede bench model.onnx pruned.onnx --providers cpu,cuda --fail-below 1.3
    """
    setup_logging(verbose, quiet)
    if fail_below is not None and len(models) < 2:
        raise InputError("--fail-below needs two models: a reference and a candidate")
    if inputs is not None and batch != "1":
        raise InputError("--inputs fixes the batch by its arrays; drop --batch")
    from onnxrecede.bench import BenchOptions, benchmark
    from onnxrecede.bench.gate import check_speedup
    from onnxrecede.io.paths import model_reads
    from onnxrecede.runtime.session import parse_shape_specs

    reads = [r for m in models for r in model_reads(m)]
    guard_paths([*reads, ("--inputs", inputs)], [("--json", json_out)])
    extra: dict[str, Any] = {"trt_cache_dir": Path(trt_cache)} if trt_cache else {}
    if cuda_graph and providers == "cpu":
        providers = "cuda"  # the default: --cuda-graph means CUDA
    options = BenchOptions(
        providers=tuple(p for p in providers.split(",") if p.strip()),
        batches=_int_list(batch, "--batch"),
        shapes=parse_shape_specs(shapes),
        threads=threads,
        warmup=warmup,
        runs=runs,
        seconds=seconds,
        inputs=Path(inputs) if inputs else None,
        include_copies=include_copies,
        spin=spin,
        cuda_graph=cuda_graph,
        cudnn_conv_algo_search=cudnn_conv_algo_search,
        seed=seed,
        atol=atol,
        rtol=rtol,
        **extra,
    )
    with progress_callback(not quiet) as progress:
        result = benchmark(models, options, progress)
    _emit(result, json_out)
    check_speedup(result, fail_below)


def _emit(result: BenchResult, json_out: str | None) -> None:
    from onnxrecede.bench import format_comparison
    from onnxrecede.io.outputs import atomic_write_text

    if json_out == "-":
        echo_json(result.to_dict())  # the JSON is the whole of stdout; the table goes to stderr
        click.echo(format_comparison(result), err=True)
        return
    click.echo(format_comparison(result))
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(result.to_dict(), indent=2) + "\n")
