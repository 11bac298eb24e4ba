"""``--help``, ``--version`` and usage errors answer without importing the heavy libraries.

Each case runs the command line in a fresh interpreter and lists which of onnx, onnx-ir,
ONNX Runtime, numpy and torch are in ``sys.modules`` when it exits (the start-up time itself is
measured by ``benchmarks/cli_startup.py``, not here).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import onnxrecede

HEAVY = ("onnx", "onnx_ir", "onnxruntime", "numpy", "torch")
COMMANDS = ("prune", "inspect", "importances", "eval", "bench", "latency", "train", "export",
            "finetune")

_PROBE = f"""
import json, sys
from onnxrecede_cli.main import main
try:
    main(sys.argv[1:], prog_name="onnxrecede")
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def _run(*args: str) -> tuple[int, list[str], str]:
    p = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120
    )
    *lines, last = p.stderr.strip().splitlines()
    result = json.loads(last)
    return result["code"], result["heavy"], "\n".join(lines)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--help",), 0),
        (("--version",), 0),
        *[((cmd, "--help"), 0) for cmd in COMMANDS],
        (("prune",), 2),  # missing MODEL
        (("prune", "m.onnx", "-i", "imp.json", "-o", "o.onnx", "--bogus"), 2),
        (("prune", "m.onnx", "-i", "imp.json", "-o", "o.onnx", "--atol", "nan"), 2),
        (("prune", "m.onnx", "-i", "imp.json", "-o", "o.onnx", "--scope", "nowhere"), 2),
        (("nosuchcommand",), 2),
        (("eval", "m.onnx"), 2),  # missing --data
        (("bench",), 2),
    ],
)
def test_answers_without_heavy_imports(args, code):
    exit_code, heavy, stderr = _run(*args)
    assert exit_code == code, stderr
    assert heavy == [], f"{' '.join(args)} imported {heavy}"
    if code == 2:
        assert len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1


def test_real_work_does_import_them(tmp_path):
    """The probe sees imports: a command that does work loads onnx (the check is not blind)."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "samples" / "resnet_small.onnx"
    exit_code, heavy, stderr = _run("inspect", str(sample))
    assert exit_code == 0, stderr
    assert {"onnx", "onnx_ir", "numpy"} <= set(heavy)


def test_every_public_name_resolves():
    for name in onnxrecede.__all__:
        assert getattr(onnxrecede, name) is not None, name
    assert onnxrecede.prune is __import__("onnxrecede.api", fromlist=["prune"]).prune
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = onnxrecede.nope  # type: ignore[attr-defined]
