"""Entry point of the ``onnxrecede`` command."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
from onnxrecede_cli.bench_cmd import bench
from onnxrecede_cli.eval_cmd import eval_cmd
from onnxrecede_cli.importances_cmd import importances
from onnxrecede_cli.latency_cmd import latency
from onnxrecede_cli.prune_cmd import inspect_cmd, prune
from onnxrecede_cli.train_cmd import export, finetune, train

from onnxrecede import __version__


class OneLineErrors(click.Group):
    """Click's usage errors as one ``error:`` line (what, and where to read more), exit 2."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None,
        complete_var: str | None = None, standalone_mode: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            click.echo(f"error: {' '.join(e.format_message().split())}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
main.add_command(latency)

if __name__ == "__main__":  # pragma: no cover
    main()
