"""``onnxrecede inspect --plot``: the importance histogram as a PNG, or as text without matplotlib."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import click
from onnxrecede_cli.common import echo_json, guard_paths

from onnxrecede.errors import InputError


def plot_importances(
    model: str,
    importances: str | None,
    plot_path: str | None,
    log_scale: bool,
    ratio: float | str | None,
    threshold: float | None,
    aggregate: str,
    as_json: bool,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> None:
    """Draw the histogram to ``plot_path`` (or as text); the summary goes to stdout."""
    from onnxrecede.io.paths import model_reads
    from onnxrecede.report.plot import PLOT_HINT, histogram_data, save_plot, text_histogram

    if importances is None:
        raise InputError(
            "--plot, --log, --ratio and --threshold need importances: give -i IMP.json"
        )
    if ratio is not None and threshold is not None:
        raise InputError("give either --ratio or --threshold, not both")
    guard_paths([*model_reads(model), ("-i", importances)], [("--plot", plot_path)])
    hist = histogram_data(model, importances, ratio=ratio, threshold=threshold,
                          aggregate=aggregate, input_shapes=input_shapes)  # fmt: skip
    drawn = False
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            click.echo(f"hint: {PLOT_HINT}; the histogram follows as text", err=True)
        else:
            save_plot(hist, plot_path, log=log_scale)
            drawn = True
    summary = hist.to_dict() | {"plot": plot_path if drawn else None}
    if as_json:
        echo_json(summary)
        return
    if not drawn:
        click.echo(text_histogram(hist, log=log_scale))
        return
    below, above = hist.sides()
    where = (
        f"threshold {hist.threshold:.4g} ({hist.how}): {below} below, {above} at or above"
        if hist.threshold is not None
        else hist.how
    )
    click.echo(f"{len(hist.values)} prunable channels in {len(hist.groups)} groups; {where}")
    click.echo(f"wrote {plot_path}")
