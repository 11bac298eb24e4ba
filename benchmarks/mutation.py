"""Mutation run: does the fast suite notice when a rule silently gives up?

Mutants (one at a time):

1. ``refuse:OP`` for every registered op type: its rule turns every node of that type into a
   barrier (``analyze`` returns a reason), as a rule that quietly stopped supporting an op would.
2. ``no-HOOK:RULE`` for every rule class and every hook it implements: ``rewrite`` does
   nothing (the node keeps its old parameters), ``check`` finds no problem, ``macs`` counts 0,
   ``param_inputs`` names none, ``output_channels`` knows none.
3. ``verify-consistency-finds-nothing``: ``check_consistency`` returns no problem;
   ``verify-comparison-finds-nothing``: the output comparison counts no failures (it compares
   the pruned outputs with themselves); ``verify-accepts-all``: both.

A mutant is *killed* when at least one test fails with it in place. Tests run in this process
with ``pytest.main`` (one session per mutant, stopping at the first failure), and each mutant
only runs the tests that exercise it: a first, unmutated run records which op types each test
analyses. The suite used is the fast, handmade-model part of ``make test`` (tests that export
zoo models with torch are left out: they need minutes per session; the handmade tests must
catch every mutant on their own).

Some mutants cannot change behaviour (*equivalent* mutants): ops with no channel-carrying input
(``Constant``, ``RandomNormal``, ...) are barriers with nothing to block. They are run and
listed apart; they are not survivors.

Usage, from the repository root::

    nice -n 10 .venv/bin/python benchmarks/mutation.py              # all mutants
    .venv/bin/python benchmarks/mutation.py --only Concat,Slice      # some ops
    .venv/bin/python benchmarks/mutation.py --out benchmarks/results/mutation.txt

Exit status 1 when a mutant survives.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

from onnxrecede.engine import registry, verify  # noqa: E402
from onnxrecede.engine.registry import Rule  # noqa: E402
from onnxrecede.runtime import session as runtime  # noqa: E402

#: the fast-suite subset the mutants are run against (the fuzz test is left out: the handmade
#: tests must catch every mutant on their own; it runs in ``make test`` all the same)
SUITE = [
    "tests/engine",
    "tests/cli",
    "tests/importance/test_file_format.py",
    "tests/importance/test_module_paths.py",
    "tests/importance/test_criteria.py",
    "tests/repair/test_repair.py",
    "--deselect=tests/engine/test_fuzz.py::test_random_graphs_equal_the_masked_oracle",
]
#: ops whose rule never sees a channel-carrying input: refusing changes nothing
EQUIVALENT = {
    "Constant": "no inputs",
    "RandomNormal": "no inputs",
    "RandomUniform": "no inputs",
    "ConstantOfShape": "reads a shape vector, never channels",
}
REFUSAL = "mutant: this rule refuses"


def _with(rule: Rule, **methods: Any) -> Rule:
    """A copy of ``rule`` with some methods replaced (the others still delegate)."""
    proxy = copy.copy(rule)
    for name, fn in methods.items():
        setattr(proxy, name, fn)
    return proxy


def _refusing(rule: Rule) -> Rule:
    return _with(rule, analyze=lambda ctx, node: REFUSAL)


def _recording(rule: Rule, op: str, seen: Callable[[str], None]) -> Rule:
    def analyze(ctx: Any, node: Any) -> str | None:
        seen(op)
        return rule.analyze(ctx, node)

    return _with(rule, analyze=analyze)


#: hook mutants: the hook made to do nothing, and the tests to run first
HOOKS: dict[str, tuple[Callable[..., Any], list[str]]] = {
    "rewrite": (lambda ctx, node: None, []),
    "check": (lambda node, dims: [], ["tests/engine/test_verify_broken.py"]),
    "macs": (lambda node, shape_of: 0, ["tests/engine/test_cost.py"]),
    "param_inputs": (lambda op_type: (), ["tests/engine/test_cost.py"]),
    "output_channels": (
        lambda node: None,
        ["tests/engine/test_registry_hooks.py", "tests/importance/test_file_format.py"],
    ),
    "keeps_shape": (lambda op_type: False, ["tests/engine/test_registry_hooks.py"]),
    "param_source": (lambda node, ops, rank: None, ["tests/engine/test_registry_hooks.py"]),
    "weight_rows": (
        lambda node, weight: None,
        ["tests/engine/test_registry_hooks.py", "tests/importance/test_criteria.py"],
    ),
    "cost_axes": (lambda node, index, view_of: (), ["tests/engine/test_budget.py"]),
    "constant_through": (lambda node, values, const: None, ["tests/repair/test_repair.py"]),
}


class _SkipZoo:
    """Deselects tests that export zoo models with torch (minutes per pytest session)."""

    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        keep = [i for i in items if "zoo_path" not in getattr(i, "fixturenames", ())]
        gone = [i for i in items if i not in keep]
        if gone:
            config.hook.pytest_deselected(items=gone)
            items[:] = keep


class _Coverage(_SkipZoo):
    """Records the op types and rule classes each test exercises."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.ops: dict[str, set[str]] = defaultdict(set)  # op -> test ids
        self.failed: list[str] = []
        self.seconds: dict[str, float] = {}

    def pytest_runtest_setup(self, item: Any) -> None:
        self.current = item.nodeid

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.failed.append(report.nodeid)
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    def fastest_first(self, tests: set[str] | list[str]) -> list[str]:
        """Quick tests first: a mutant is usually killed by the first one that runs."""
        return sorted(tests, key=lambda t: (self.seconds.get(t, 0.0), t))

    def seen(self, op: str) -> None:
        if self.current is not None:
            self.ops[op].add(self.current)


class _Outcome(_SkipZoo):
    def __init__(self) -> None:
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.failed.append(report.nodeid)


@dataclass
class Mutant:
    name: str
    tests: list[str]
    patch: Callable[[], contextlib.AbstractContextManager[None]]
    equivalent: str | None = None


@contextlib.contextmanager
def _replace_rules(replace: Callable[[tuple[str, str], Rule], Rule | None]) -> Iterator[None]:
    registry.registered_ops()  # loads every rule module
    saved = dict(registry._RULES)
    try:
        for key, rule in saved.items():
            new = replace(key, rule)
            if new is not None:
                registry._RULES[key] = new
        yield
    finally:
        registry._RULES.clear()
        registry._RULES.update(saved)


@contextlib.contextmanager
def _accepting(consistency: bool, comparison: bool) -> Iterator[None]:
    """Verification that finds no consistency problem and/or no output difference."""
    check, compare = verify.check_consistency, runtime.compare_outputs

    def no_problems(model: Any) -> list[str]:
        return []

    def self_compare(expected: Any, actual: Any, *args: Any, **kwargs: Any) -> Any:
        return compare(actual, actual, *args, **kwargs)

    if consistency:
        verify.check_consistency = no_problems  # type: ignore[assignment]
    if comparison:
        runtime.compare_outputs = self_compare  # type: ignore[assignment]
    try:
        yield
    finally:
        verify.check_consistency = check  # type: ignore[assignment]
        runtime.compare_outputs = compare  # type: ignore[assignment]


def _run_pytest(args: list[str], plugin: Any) -> int:
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = pytest.main(
            ["-q", "-p", "no:cacheprovider", "-m", "not slow", "-W", "ignore", *args],
            plugins=[plugin],
        )
    return int(code)


def _coverage(suite: list[str]) -> _Coverage:
    cov = _Coverage()
    with _replace_rules(lambda key, rule: _recording(rule, key[1], cov.seen)):
        code = _run_pytest(suite, cov)
    if code not in (0, 1, 5):
        raise SystemExit(f"pytest could not run the suite (exit {code})")
    for tests in cov.ops.values():
        tests.difference_update(cov.failed)  # failing unmutated: they cannot tell anything
    return cov


def _mutants(cov: _Coverage, suite: list[str], only: set[str] | None) -> list[Mutant]:
    registry.registered_ops()
    mutants: list[Mutant] = []
    for _domain, op in sorted(registry._RULES, key=lambda k: k[1]):
        if only and op not in only:
            continue
        key = (_domain, op)
        mutants.append(
            Mutant(
                f"refuse:{op}",
                cov.fastest_first(cov.ops.get(op, set())),
                lambda key=key: _replace_rules(lambda k, r: _refusing(r) if k == key else None),
                EQUIVALENT.get(op),
            )
        )
    deselect = [f"--deselect={t}" for t in sorted(set(cov.failed))]
    by_class: dict[type[Rule], list[str]] = defaultdict(list)
    for (_d, op), rule in registry._RULES.items():
        by_class[type(rule)].append(op)
    for hook, (noop, first) in HOOKS.items():
        for cls, ops in sorted(by_class.items(), key=lambda kv: kv[0].__name__):
            if getattr(cls, hook) is getattr(Rule, hook) or (only and not only & set(ops)):
                continue
            if hook == "rewrite":
                tests = cov.fastest_first({t for op in ops for t in cov.ops.get(op, ())})
            else:
                tests = [*first, *suite, *deselect]

            def patch(
                cls: type[Rule] = cls, hook: str = hook, noop: Callable[..., Any] = noop
            ) -> contextlib.AbstractContextManager[None]:
                return _replace_rules(
                    lambda k, r: _with(r, **{hook: noop}) if type(r) is cls else None
                )

            mutants.append(Mutant(f"no-{hook}:{cls.__name__}", tests, patch))
    if not only:
        for name, flags in (
            ("verify-consistency-finds-nothing", (True, False)),
            ("verify-comparison-finds-nothing", (False, True)),
            ("verify-accepts-all", (True, True)),
        ):
            mutants.append(Mutant(name, [*suite, *deselect], lambda f=flags: _accepting(*f)))
    return mutants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated op types (default: every registered op)")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    only = set(args.only.split(",")) if args.only else None
    start = time.perf_counter()
    cov = _coverage(SUITE)
    lines: list[str] = []
    survivors: list[str] = []
    equivalent: list[str] = []
    for m in _mutants(cov, SUITE, only):
        if not m.tests:
            status = "SURVIVED (no test exercises it)"
        else:
            outcome = _Outcome()
            with m.patch():
                _run_pytest(["-x", *m.tests], outcome)
            status = f"killed by {outcome.failed[0]}" if outcome.failed else "SURVIVED"
        if status.startswith("SURVIVED"):
            if m.equivalent:
                status = f"equivalent ({m.equivalent}): {status.lower()}"
                equivalent.append(m.name)
            else:
                survivors.append(m.name)
        n_tests = sum(not t.startswith("-") for t in m.tests)
        line = f"{m.name:<40} {n_tests:>4} tests  {status}"
        lines.append(line)
        print(line, flush=True)
    elapsed = time.perf_counter() - start
    summary = [
        "",
        f"mutants: {len(lines)}  killed: {len(lines) - len(survivors) - len(equivalent)}  "
        f"equivalent: {len(equivalent)}  survived: {len(survivors)}",
        f"surviving: {', '.join(survivors) if survivors else 'none'}",
        f"suite: {' '.join(SUITE)} (fast tests, zoo exports left out); {elapsed:.0f} s",
    ]
    if cov.failed:
        summary.append(
            f"left out, failing before any mutation: {', '.join(sorted(set(cov.failed)))}"
        )
    for s in summary:
        print(s)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(["# benchmarks/mutation.py", *lines, *summary]) + "\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
