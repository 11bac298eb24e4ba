"""Entry point of the ``onnxrecede`` command."""

from __future__ import annotations

import click
from onnxrecede_cli.bench_cmd import bench
from onnxrecede_cli.eval_cmd import eval_cmd
from onnxrecede_cli.importances_cmd import importances
from onnxrecede_cli.prune_cmd import inspect_cmd, prune
from onnxrecede_cli.train_cmd import export, finetune, train

from onnxrecede import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="onnxrecede")
def main() -> None:
    """Structured channel pruning for ONNX models (receding neuron importances)."""


main.add_command(prune)
main.add_command(inspect_cmd)
main.add_command(train)
main.add_command(export)
main.add_command(finetune)
main.add_command(bench)
main.add_command(eval_cmd)
main.add_command(importances)

if __name__ == "__main__":  # pragma: no cover
    main()
