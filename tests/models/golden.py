"""Golden expectations: what each test model must lose at ratio 0.5, and what is blocked and why.

One JSON file per model (and exporter) in ``tests/models/expected/``:

- ``removed_channels``: every reported producer and the output channels it loses, with the
  importances of :func:`tests.models.importances.make_random_importances` (seed 7);
- ``blocked``: every blocked group, as its producers and its barriers
  (``OpType 'node': reason``);
- ``groups``: how many groups are pruned, kept, blocked and unscored.

``tests/engine/test_zoo_prune.py`` compares each pruning with its file. When a change is meant
to alter the result, regenerate the files and review the diff::

    .venv/bin/python -m tests.models.golden --update            # every model and exporter
    .venv/bin/python -m tests.models.golden --update --handmade  # handmade models only
    .venv/bin/python -m tests.models.golden                      # check only, print differences
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXPECTED = Path(__file__).resolve().parent / "expected"
SEED = 7
RATIO = 0.5


def golden_path(name: str, exporter: str | None = None) -> Path:
    return EXPECTED / (f"{name}.{exporter}.json" if exporter else f"{name}.json")


def summarize(report: Any) -> dict[str, Any]:
    """The part of a :class:`~onnxrecede.reports.PruneReport` a golden file pins."""
    blocked = [
        {
            "producers": sorted(g.producers),
            "barriers": sorted(f"{b['op_type']} '{b['node']}': {b['reason']}" for b in g.barriers),
        }
        for g in report.groups
        if g.status == "blocked"
    ]
    counts: dict[str, int] = {}
    for g in report.groups:
        counts[g.status] = counts.get(g.status, 0) + 1
    return {
        "ratio": RATIO,
        "importances_seed": SEED,
        "removed_channels": {
            k: report.removed_channels[k] for k in sorted(report.removed_channels)
        },
        "blocked": sorted(blocked, key=lambda b: (b["producers"], b["barriers"])),
        "groups": dict(sorted(counts.items())),
    }


def prune_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    import onnxrecede
    from tests.models.importances import make_random_importances

    imp = make_random_importances(path, seed=SEED)
    _, report = onnxrecede.prune(path, imp, ratio=RATIO, verify=False)
    return summarize(report)


def dump(summary: dict[str, Any]) -> str:
    """JSON with one line per list of channel indices, for readable diffs."""
    text = json.dumps(summary, indent=1)
    return re.sub(r"\[([\d,\s]+)\]", lambda m: json.dumps(json.loads(m.group(0))), text) + "\n"


def load_golden(name: str, exporter: str | None = None) -> dict[str, Any]:
    path = golden_path(name, exporter)
    if not path.is_file():
        raise AssertionError(
            f"no golden file {path.name}: run `python -m tests.models.golden --update`"
        )
    return dict(json.loads(path.read_text()))


def assert_matches_golden(report: Any, name: str, exporter: str | None = None) -> None:
    expected = load_golden(name, exporter)
    actual = summarize(report)
    assert actual == expected, (
        f"{golden_path(name, exporter).name} differs: "
        f"{json.dumps(_diff(expected, actual), indent=1)[:2000]}\n"
        "If the change is intended, run `python -m tests.models.golden --update` and review."
    )


def _diff(expected: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    return {
        k: {"expected": expected.get(k), "actual": actual.get(k)}
        for k in sorted(set(expected) | set(actual))
        if expected.get(k) != actual.get(k)
    }


def _models(handmade_only: bool, exporters: list[str]) -> Iterator[tuple[str, str | None, Path]]:
    import onnx

    from tests.models.handmade import HANDMADE

    with tempfile.TemporaryDirectory() as tmp:
        for name, entry in HANDMADE.items():
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(entry.build(), str(path))
            yield name, None, path
        if handmade_only:
            return
        from tests.models.export import export_model
        from tests.models.zoo import ZOO

        for name, zoo in ZOO.items():
            for exporter in exporters:
                path = Path(tmp) / f"{name}.{exporter}.onnx"
                yield name, exporter, export_model(zoo.build(), zoo.input_shape, path, exporter)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="check or regenerate tests/models/expected/")
    parser.add_argument("--update", action="store_true", help="write the files")
    parser.add_argument("--handmade", action="store_true", help="handmade models only")
    parser.add_argument(
        "--exporters",
        default="dynamo,torchscript,dynamo_noopt,torchscript_bn",
        help="zoo exporters",
    )
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    EXPECTED.mkdir(exist_ok=True)
    changed = 0
    for name, exporter, path in _models(args.handmade, args.exporters.split(",")):
        summary = prune_summary(path)
        target = golden_path(name, exporter)
        old = json.loads(target.read_text()) if target.is_file() else None
        if old != summary:
            changed += 1
            print(f"{'updated' if args.update else 'differs'}: {target.name}")
            if args.update:
                target.write_text(dump(summary))
    print(f"{changed} file(s) {'updated' if args.update else 'differ'}")
    return 0 if args.update or not changed else 1


if __name__ == "__main__":
    sys.exit(main())
