"""``onnxrecede latency``: measure a model's latency table for ``prune --target-latency``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from onnxrecede_cli.common import (
    POSITIVE,
    guard_paths,
    handle_errors,
    progress_callback,
    quiet_option,
    setup_logging,
    shape_option,
    threads_option,
)

from onnxrecede.errors import InputError


@click.command("latency")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the table (JSON, written atomically).",
)
@click.option(
    "--providers",
    "provider",
    default="cpu",
    show_default=True,
    type=click.Choice(["cpu", "cuda", "tensorrt"]),
    help="Execution provider the table is measured on.",
)
@click.option(
    "--batch",
    type=int,
    default=1,
    show_default=True,
    help="Batch size bound to a dynamic first input dim.",
)
@shape_option
@threads_option
@click.option(
    "--max-points",
    type=int,
    default=32,
    show_default=True,
    help="Most kept counts measured per channel axis (multiples of 8, coarser beyond).",
)
@click.option(
    "--seconds",
    type=POSITIVE,
    default=0.03,
    show_default=True,
    help="Timing per point (a layer's points interleaved, 3 warm-up runs, at least 5 rounds; "
    "its fastest run).",
)
@click.option(
    "--cache",
    "cache_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Measurement cache file (default ~/.cache/onnxrecede/latency-cache.json).",
)
@click.option("--no-cache", is_flag=True, help="Measure every point again; write no cache.")
@quiet_option
@handle_errors
def latency(
    model: str,
    output: str,
    provider: str,
    batch: int,
    shapes: tuple[str, ...],
    threads: int | None,
    max_points: int,
    seconds: float,
    cache_path: str | None,
    no_cache: bool,
    quiet: bool,
) -> None:
    """Measure how the latency of MODEL's layers depends on each prunable group's kept count.

    Each conv / matmul layer (with its fused BatchNorm and activation) is extracted as a small
    model and timed at a grid of kept channel counts; points are cached by layer signature and
    machine, so a second model with the same layers costs nothing. Use the table with
    ``prune --latency-table TABLE.json --target-latency F``.

    \b
    Example:
      onnxrecede latency samples/resnet_small.onnx -o table.json --threads 1
    """
    setup_logging(quiet=quiet)
    from onnxrecede.checks import whole_number
    from onnxrecede.io.outputs import atomic_write_text
    from onnxrecede.io.paths import model_reads
    from onnxrecede.latency.cache import LatencyCache, default_cache_path
    from onnxrecede.latency.measure import Device, Timing
    from onnxrecede.latency.table import build_table
    from onnxrecede.runtime.session import parse_shape_specs

    if threads is not None:
        whole_number("--threads", threads)
    if no_cache and cache_path is not None:
        raise InputError("give either --cache or --no-cache, not both")
    cache_file = None if no_cache else Path(cache_path) if cache_path else default_cache_path()
    guard_paths([*model_reads(model)], [("-o", output), ("--cache", cache_file)])
    device = Device.parse(provider, threads)
    with progress_callback(not quiet) as progress:
        table = build_table(
            model, device, batch=batch, shapes=parse_shape_specs(shapes),
            max_points=max_points, cache=LatencyCache(cache_file), timing=Timing(seconds=seconds),
            progress=progress,
        )  # fmt: skip
    atomic_write_text(output, json.dumps(table, indent=1) + "\n")
    m = table["machine"]
    click.echo(
        f"{output}: {len(table['units'])} layers, {len(table['groups'])} prunable groups, "
        f"{table['cache']['measured']} points measured, {table['cache']['hits']} from the cache; "
        f"model {table['model_ms']:.3f} ms (layers {table['units_ms']:.3f} ms) on "
        f"{m['provider']} ({m['device']}, {m['threads'] or 'default'} threads, onnxruntime "
        f"{m['onnxruntime_version']})"
    )
