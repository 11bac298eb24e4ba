"""The README's table of what the engine understands, generated from the rule registry.

    python -m onnxrecede.engine.describe             # print the table
    python -m onnxrecede.engine.describe README.md   # rewrite the table in README.md

``tests/engine/test_describe.py`` checks that the README holds exactly this table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from onnxrecede.engine.registry import Rule, rules

#: row order: the families of onnxrecede/engine/rules, from producers to index maps
FAMILIES = ("conv", "norm", "elementwise", "pooling", "reshape", "linear", "indexing", "layout")
HEADER = "| ops | behaviour |\n|---|---|\n"
LAST_ROW = "| anything else, graph outputs, tensors read inside subgraphs | barrier |\n"


def rules_table() -> str:
    """One row per rule class: its op types (registration order) and its behaviour."""
    ops: dict[type[Rule], list[str]] = {}
    for (domain, op), rule in rules().items():
        ops.setdefault(type(rule), []).append(f"{domain}::{op}" if domain else op)

    first = {cls: i for i, cls in reversed(list(enumerate(ops)))}  # registration order

    def order(cls: type[Rule]) -> tuple[int, int]:
        family = cls.__module__.rsplit(".", 1)[-1]
        return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES), first[cls])

    rows = [f"| {', '.join(ops[cls])} | {cls.behaviour} |\n" for cls in sorted(ops, key=order)]
    return HEADER + "".join(rows) + LAST_ROW


def replace_table(readme: str) -> str:
    """``readme`` with the table after '## What the engine understands' replaced."""
    section = readme.index("## What the engine understands")
    start = readme.index(HEADER, section)
    end = readme.index(LAST_ROW, start) + len(LAST_ROW)
    return readme[:start] + rules_table() + readme[end:]


def main(argv: list[str]) -> int:
    if not argv:
        sys.stdout.write(rules_table())
        return 0
    path = Path(argv[0])
    path.write_text(replace_table(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
