"""``onnxrecede importances``: write an importances file computed from the model (and data)."""

from __future__ import annotations

import os
from typing import Any

import click
from onnxrecede_cli.common import (
    echo_json,
    guard_paths,
    handle_errors,
    json_flag,
    progress_callback,
    quiet_option,
    setup_logging,
)
from onnxrecede_cli.data_options import DATA_HELP, image_options, pop_image_options

from onnxrecede.errors import InputError


@click.command("importances")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the importances file (JSON, written atomically).",
)
@click.option(
    "-c",
    "--criterion",
    required=True,
    type=click.Choice(["l1", "l2", "bn", "activation", "random"]),
    help="How channels are scored (see README).",
)
@click.option(
    "--normalize",
    type=click.Choice(["rank", "mean", "max", "zscore", "none"]),
    default="rank",
    show_default=True,
    help="Per-node normalisation, so that a global ranking compares channels across layers: "
    "rank (a global cut of p removes about p of every node), mean/max (divide by the node's "
    "mean/max), zscore, none (raw).",
)
@click.option(
    "--fold-bn/--no-fold-bn",
    default=True,
    show_default=True,
    help="l1/l2: fold a following BatchNormalization's scale into the weights.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="random: the seed.")
@click.option(
    "--calibration",
    type=str,
    default=None,
    metavar="DATA",
    help=f"activation: samples: {DATA_HELP}.",
)
@click.option(
    "--calibration-images",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="activation: an image folder (preprocessed by the image options).",
)
@image_options
@click.option(
    "--batch-size",
    type=int,
    default=32,
    show_default=True,
    help="activation: samples per ONNX Runtime run (memory holds one batch).",
)
@click.option("--limit", type=int, default=None, help="activation: use at most N samples.")
@json_flag("a summary")
@quiet_option
@handle_errors
def importances(
    model: str,
    output: str,
    criterion: str,
    normalize: str,
    fold_bn: bool,
    seed: int,
    calibration: str | None,
    calibration_images: str | None,
    batch_size: int,
    limit: int | None,
    as_json: bool,
    quiet: bool,
    **image_kwargs: Any,
) -> None:
    """Score every output channel of MODEL's Conv/Gemm/MatMul nodes and write OUTPUT.

    \b
    Examples:
      onnxrecede importances model.onnx -o imp.json --criterion l1
      onnxrecede importances model.onnx -o imp.json -c activation --calibration calib.npz
      onnxrecede prune model.onnx -i imp.json -o pruned.onnx --target-macs 0.5
    """
    setup_logging(quiet=quiet)
    from onnxrecede.importance.criteria import compute_importances
    from onnxrecede.importance.file_format import save_importances
    from onnxrecede.io.model_files import load_model

    if calibration is not None and calibration_images is not None:
        raise InputError("give either --calibration or --calibration-images, not both")
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    data = calibration or (f"folder:{calibration_images}" if calibration_images else None)
    from onnxrecede.io.paths import data_reads, model_reads

    guard_paths([*model_reads(model), *data_reads(data, "calibration data")], [("-o", output)])
    image = pop_image_options(image_kwargs)
    m = load_model(model)
    options: dict[str, Any] = {}
    if criterion == "activation":
        options = {"batch_size": batch_size, "limit": limit, "image": image}
    with progress_callback(not quiet) as progress:
        imp = compute_importances(
            m, criterion, normalize=normalize, fold_bn=fold_bn, seed=seed,
            calibration=data, progress=progress, **options,
        )  # fmt: skip
    producer = dict(imp.producer)
    producer["model"] = os.path.basename(model)
    if data is not None:
        producer["calibration"] = data
    save_importances(output, imp.scores, producer)
    channels = sum(len(v) for v in imp.scores.values())
    summary = {"output": output, "criterion": criterion, "keys": len(imp.scores),
               "channels": channels, "producer": producer}  # fmt: skip
    if as_json:
        echo_json(summary)
    else:
        click.echo(
            f"scored {channels} channels of {len(imp.scores)} nodes by {criterion} "
            f"(normalised: {producer.get('normalize', 'none')})\nwrote {output}"
        )
