"""The README's table of supported ops is the registry's (python -m onnxrecede.engine.describe)."""

from __future__ import annotations

from pathlib import Path

from onnxrecede.engine.describe import rules_table
from onnxrecede.engine.registry import Rule, registered_ops, rules

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_generated_from_the_registry():
    assert rules_table() in README.read_text(), (
        "README.md's 'What the engine understands' table is stale: run "
        "`python -m onnxrecede.engine.describe README.md`"
    )


def test_every_registered_op_is_in_the_table_once():
    table = rules_table()
    cells = [c.strip() for row in table.splitlines()[2:-1] for c in row.split("|")[1].split(",")]
    assert sorted(cells) == registered_ops()


def test_every_rule_says_what_it_does():
    assert all(type(r).behaviour for r in rules().values())
    assert all(type(r).behaviour != Rule.behaviour for r in rules().values())
