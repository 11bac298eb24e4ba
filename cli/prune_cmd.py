"""``onnxrecede prune`` and ``onnxrecede inspect``."""

from __future__ import annotations

import json
import os
from typing import Any, Literal

import click
from onnxrecede_cli.common import (
    FINITE,
    POSITIVE,
    echo_json,
    guard_paths,
    handle_errors,
    json_flag,
    progress_callback,
    quiet_option,
    setup_logging,
    shape_option,
    tolerance_options,
)
from onnxrecede_cli.quality_options import pop_quality_options, quality_options

from onnxrecede.errors import InputError


def _aggregate_option(help: str) -> Any:
    """``--aggregate``: prune and inspect declare it once, each with its own help."""
    return click.option("--aggregate", type=click.Choice(["max", "mean", "sum"]), default="max",
                        show_default=True, help=help)  # fmt: skip


@click.command("prune")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "-i",
    "--importances",
    "importances",
    default=None,
    type=click.Path(dir_okay=False),
    help="Importances file (JSON, see README). Without it, --calibration DATA chooses the "
    "channels from data and the cut is reconstructed on it.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the pruned model (written atomically).",
)
@click.option(
    "--ratio",
    type=str,
    default=None,
    metavar="R|auto",
    help="Fraction of prunable channels to remove (default 0.5); 'auto': cut at the valley of "
    "bimodal importances.",
)
@click.option(
    "--threshold",
    type=FINITE,
    default=None,
    help="Remove channels whose importance is below this value (instead of --ratio).",
)
@click.option(
    "--scope",
    type=click.Choice(["global", "local"]),
    default="global",
    show_default=True,
    help="global: one ranking over all groups; local: the same ratio in every group.",
)
@_aggregate_option("How a coupled group combines its members' importances.")
@click.option(
    "--min-channels",
    type=int,
    default=1,
    show_default=True,
    help="Never keep fewer channels than this in any group or tensor.",
)
@click.option("--target-macs", type=POSITIVE, default=None, metavar="F",
              help="Keep at most this fraction of the MACs (0 < F < 1).")
@click.option("--target-params", type=POSITIVE, default=None, metavar="F",
              help="Keep at most this fraction of the parameters (0 < F < 1).")
@click.option("--target-speedup", type=POSITIVE, default=None, metavar="X",
              help="Smallest cut measured X times faster on CPU (ONNX Runtime); exit 5 if "
                   "unreachable.")
@click.option("--target-latency", type=POSITIVE, default=None, metavar="F",
              help="Keep at most this fraction of the latency predicted by --latency-table "
                   "(0 < F < 1); the cut is measured once afterwards.")
@click.option("--latency-table", type=click.Path(dir_okay=False), default=None,
              metavar="TABLE.json",
              help="Latency table from `onnxrecede latency`, for --target-latency, or for "
                   "--target-speedup instead of trial runs.")
@click.option("--search-rounds", type=int, default=5, show_default=True,
              help="--target-speedup: benchmark rounds of the bisection.")
@click.option("--search-seconds", type=POSITIVE, default=3.0, show_default=True,
              help="--target-speedup: seconds of interleaved timing per round.")
@click.option("--allocate", type=click.Choice(["importances", "sensitivity"]),
              default="importances", show_default=True,
              help="How many channels each layer loses: by the importances' global ranking, or "
                   "by each layer's estimated output error on --calibration data (the "
                   "importances still order the channels inside a layer; reconstructs).")
@click.option("--target-accuracy-drop", type=POSITIVE, default=None, metavar="PTS",
              help="With --eval-data: the largest MAC cut whose measured top-1 drop stays "
                   "within PTS points (bisection; exit 6 if even the smallest cut tried is "
                   "not).")
@click.option("--search-steps", type=int, default=5, show_default=True,
              help="--target-accuracy-drop: cuts tried (each is pruned and evaluated).")
@click.option("--round-to", type=int, default=1, show_default=True, metavar="N",
              help="Every pruned group keeps a multiple of N channels (blocked kernels).")
@click.option("--head-dims", is_flag=True,
              help="Attention blocks: remove the same dims of every head instead of whole heads.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the full report as JSON to this file.",
)
@json_flag("the report")
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Check the result: checker, per-op consistency, ORT run, masked reference.",
)
@shape_option
@tolerance_options("against the masked reference")
@click.option(
    "--external-data/--no-external-data",
    default=None,
    help="Store weights in OUTPUT.data (default: only when the model exceeds 2 GB).",
)
@click.option(
    "--bench",
    "run_bench",
    is_flag=True,
    help="Benchmark the pruned model against the original on CPU afterwards.",
)
@click.option("--fail-below", type=POSITIVE, default=None, metavar="SPEEDUP",
              help="With --bench: exit 5 when the measured CPU speedup is below this.")
@quality_options
@quiet_option
@handle_errors
def prune(
    model: str,
    importances: str | None,
    output: str,
    ratio: str | None,
    threshold: float | None,
    scope: str,
    aggregate: str,
    min_channels: int,
    target_macs: float | None,
    target_params: float | None,
    target_speedup: float | None,
    target_latency: float | None,
    latency_table: str | None,
    search_rounds: int,
    search_seconds: float,
    round_to: int,
    head_dims: bool,
    allocate: str,
    target_accuracy_drop: float | None,
    search_steps: int,
    report_path: str | None,
    as_json: bool,
    verify: bool,
    shapes: tuple[str, ...],
    atol: float,
    rtol: float,
    external_data: bool | None,
    run_bench: bool,
    fail_below: float | None,
    quiet: bool,
    **quality_kwargs: Any,
) -> None:
    """Remove unimportant channels from MODEL and write the pruned model to OUTPUT.

    \b
    Example:
      onnxrecede prune samples/resnet_small.onnx -i samples/resnet_small.imp.json \\
          -o pruned.onnx --ratio 0.5 --report report.json
    """
    setup_logging(quiet=quiet)
    from onnxrecede import api
    from onnxrecede.io.outputs import Outputs
    from onnxrecede.io.paths import CLI_LABELS, prune_file_paths
    from onnxrecede.report.reports import format_prune
    from onnxrecede.runtime.session import parse_shape_specs

    ratio_value = _parse_ratio(ratio)
    data_driven = importances is None or allocate == "sensitivity"  # --calibration scores
    quality = pop_quality_options(quality_kwargs, data_driven=data_driven)
    input_shapes = parse_shape_specs(shapes)
    reads, writes = prune_file_paths(
        model, importances, output, quality.repair.calibration, CLI_LABELS
    )
    guard_paths(
        [*reads, ("--latency-table", latency_table), *quality.reads],
        [*writes, ("--report", report_path)],
    )
    with Outputs() as outputs, progress_callback(not quiet) as progress:
        outputs.staged(f"{output}.data")  # moved into place when prune_file writes it
        staged, report = outputs.write(
            output,
            lambda path: (path, api.prune_file(
                model,
                importances,
                path,
                external_data=external_data,
                ratio=ratio_value,
                threshold=threshold,
                scope=scope,
                aggregate=aggregate,
                min_channels=min_channels,
                round_to=round_to,
                head_units="dims" if head_dims else "heads",
                target_macs=target_macs,
                target_params=target_params,
                target_speedup=target_speedup,
                speedup_search={"rounds": search_rounds, "seconds": search_seconds},
                allocate=allocate,
                target_accuracy_drop=target_accuracy_drop,
                accuracy_search={"steps": search_steps},
                latency_table=latency_table,
                target_latency=target_latency,
                verify=verify,
                input_shapes=input_shapes,
                atol=atol,
                rtol=rtol,
                progress=progress,
                repair=quality.repair if quality.repair.active or data_driven else None,
                evaluation=quality.evaluation,
                bench=run_bench,
                fail_below=fail_below,
                gates=False,  # checked below, once the output is in place
            )),
        )  # fmt: skip
        report.output = output
        doc: dict[str, Any] = report.to_dict()
        if report_path:
            outputs.write_text(report_path, json.dumps(doc, indent=2) + "\n")
        outputs.commit()
    if as_json:
        echo_json(doc)
    else:
        click.echo(format_prune(report))
        if report.accuracy is not None:
            click.echo(report.accuracy.format())
        if report.bench is not None:
            from onnxrecede.bench import format_comparison

            click.echo(format_comparison(report.bench))
    report.check_gates()


def _parse_ratio(text: str | None) -> float | Literal["auto"] | None:
    if text is None:
        return None
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"--ratio must be a number in [0, 1) or 'auto', got '{text}'"
        ) from None


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "-i",
    "--importances",
    "importances",
    type=click.Path(dir_okay=False),
    default=None,
    help="Importances file: adds an importance summary to each group.",
)
@json_flag("the groups and barriers")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE.png",
              help="Histogram of the importances (global and per group) with the threshold; "
                   "text on stdout without matplotlib.")
@click.option("--log", "log_scale", is_flag=True, help="--plot: log-scale importance axis.")
@click.option("--ratio", "plot_ratio", default=None, metavar="R|auto",
              help="--plot: draw the threshold of this ratio (default: auto's valley if bimodal).")
@click.option("--threshold", "plot_threshold", type=FINITE, default=None,
              help="--plot: draw this threshold.")
@_aggregate_option("--plot: how coupled producers' scores combine.")
@click.option("--head-dims", is_flag=True,
              help="Group attention blocks by head dims (as prune --head-dims) instead of heads.")
@shape_option
@handle_errors
def inspect_cmd(
    model: str,
    importances: str | None,
    as_json: bool,
    plot_path: str | None,
    log_scale: bool,
    plot_ratio: str | None,
    plot_threshold: float | None,
    aggregate: str,
    head_dims: bool,
    shapes: tuple[str, ...],
) -> None:
    """List the channel groups of MODEL, their members, and the barriers that block some.

    --shape binds an input's dynamic dims for the analysis and the MACs (a dynamic batch
    counts as 1 without it).

    \b
    Example:
      onnxrecede inspect samples/resnet_small.onnx -i samples/resnet_small.imp.json
      onnxrecede inspect keras_model.onnx --shape input_1:1x224x224x3
    """
    setup_logging(quiet=True)
    from onnxrecede import api
    from onnxrecede.report.reports import format_inspect

    if not os.path.exists(model):
        raise InputError(f"model file not found: {model}")
    from onnxrecede.runtime.session import parse_shape_specs

    input_shapes = parse_shape_specs(shapes)
    if plot_path is not None or log_scale or plot_ratio or plot_threshold is not None:
        from onnxrecede_cli.inspect_plot import plot_importances

        plot_importances(model, importances, plot_path, log_scale, _parse_ratio(plot_ratio),
                         plot_threshold, aggregate, as_json, input_shapes)  # fmt: skip
        return
    report = api.inspect(model, importances, input_shapes, head_units="dims" if head_dims else "heads")
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(format_inspect(report))
