"""``onnxrecede eval``: top-1 / top-5 accuracy of a classifier in ONNX Runtime (CPU)."""

from __future__ import annotations

from typing import Any

import click
from onnxrecede_cli.common import (
    echo_json,
    handle_errors,
    json_flag,
    progress_callback,
    quiet_option,
    setup_logging,
)
from onnxrecede_cli.data_options import DATA_HELP, image_options, pop_image_options

from onnxrecede.errors import InputError


@click.command("eval")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", "data", required=True, metavar="DATA", help=f"Labelled samples: {DATA_HELP}.")
@click.option("--batch", "batch_size", type=int, default=32, show_default=True,
              help="Samples per ONNX Runtime run (a model with a fixed batch size uses its own).")
@click.option("--limit", type=int, default=None, metavar="N",
              help="Evaluate a seeded random subset of N samples.")
@click.option("--output", "output_name", default=None, metavar="NAME",
              help="The output holding the class scores (default: the first).")
@image_options
@json_flag("the result")
@quiet_option
@handle_errors
def eval_cmd(model: str, data: str, batch_size: int, limit: int | None, output_name: str | None,
             as_json: bool, quiet: bool, **image: Any) -> None:  # fmt: skip
    """Top-1 and top-5 accuracy of MODEL on the labelled samples DATA.

    \b
    Examples:
      onnxrecede eval pruned.onnx --data digits:test
      onnxrecede eval model.onnx --data val/ --resize 256 --image-size 224 \\
          --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --json
    """
    setup_logging(quiet=quiet)
    from onnxrecede.runtime.evaluate import evaluate

    if batch_size < 1:
        raise InputError(f"--batch must be at least 1, got {batch_size}")
    options = pop_image_options(image)
    with progress_callback(not quiet) as progress:
        acc = evaluate(model, data, image=options, batch_size=batch_size, limit=limit,
                       output=output_name, progress=progress)  # fmt: skip
    if as_json:
        echo_json({"model": model, **acc.to_dict()})
    else:
        click.echo(f"{acc.line()}  on {acc.samples} samples of {acc.data} (output '{acc.output}')")
