"""``onnxrecede bench`` on the command line: outputs, JSON files and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from onnxrecede_cli.main import main

from tests.bench.conftest import npz_for

FAST = ["--runs", "3", "--warmup", "1"]


def _run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["bench", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def test_table_on_stdout_and_json_file(classifier_paths: tuple[Path, Path], tmp_path: Path) -> None:
    ref, cand = classifier_paths
    out = tmp_path / "sub" / "result.json"
    code, stdout, _ = _run(ref, cand, *FAST, "--threads", "1", "--batch", "1,2", "--json", out)
    assert code == 0
    assert "speedup:" in stdout and "agreement: max abs diff" in stdout
    assert "intra-op threads: 1" in stdout and "onnxruntime" in stdout
    d = json.loads(out.read_text())
    assert isinstance(d["speedup"], float) and isinstance(d["max_abs_diff"], float)
    assert [r["batch"] for r in d["results"]] == [1, 2]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".onnxrecede-")]


def test_json_to_stdout_is_pure_json(classifier_paths: tuple[Path, Path]) -> None:
    ref, _ = classifier_paths
    code, stdout, stderr = _run(ref, ref, *FAST, "--json", "-")
    assert code == 0
    d = json.loads(stdout)
    assert d["max_abs_diff"] == 0.0 and d["top1_agreement"] == 1.0
    assert "speedup:" in stderr


def test_fail_below_exit_codes(classifier_paths: tuple[Path, Path]) -> None:
    ref, cand = classifier_paths
    code, _, stderr = _run(ref, cand, *FAST, "-q", "--fail-below", "1000")
    assert code == 5
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "below --fail-below 1000" in lines[0]
    assert lines[0].startswith("error: speedup ")
    code, _, _ = _run(ref, cand, *FAST, "-q", "--fail-below", "0.001")
    assert code == 0
    code, _, stderr = _run(ref, *FAST, "--fail-below", "1.2")
    assert code == 2 and "needs two models" in stderr


def test_inputs_npz(classifier_paths: tuple[Path, Path], tmp_path: Path) -> None:
    ref, cand = classifier_paths
    npz = npz_for(tmp_path / "feeds.npz", batch=3)
    code, stdout, stderr = _run(ref, cand, *FAST, "--inputs", npz, "--json", "-")
    assert code == 0, stderr
    d = json.loads(stdout)
    assert d["results"][0]["batch"] == 3
    assert d["results"][0]["input_shapes"] == {"x": [3, 3, 16, 16]}


def test_user_errors_are_one_line_without_traceback(
    classifier_paths: tuple[Path, Path], tmp_path: Path
) -> None:
    ref, _ = classifier_paths
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_text("not a zip")
    cases = [
        ([tmp_path / "missing.onnx"], "model file not found"),
        ([ref, "--shape", "x:1xfoo"], "bad --shape"),
        ([ref, "--batch", "0"], "positive integers"),
        ([ref, "--providers", "tpu"], "unknown execution provider"),
        ([ref, "--runs", "3", "--seconds", "1"], "either --runs or --seconds"),
        ([ref, "--inputs", bad_npz], "bad.npz: cannot read it as a .npz file of arrays"),
    ]
    for args, message in cases:
        code, _, stderr = _run(*args)
        assert code == 2, (args, stderr)
        assert message in stderr and "Traceback" not in stderr
        assert len([ln for ln in stderr.splitlines() if ln.startswith("error:")]) == 1


def _cuda_runs() -> bool:
    from onnxrecede.runtime import import_ort

    return "CUDAExecutionProvider" in import_ort().get_available_providers()


def test_cuda_graph_without_cuda_is_one_error_line_exit_3(
    classifier_paths: tuple[Path, Path], tmp_path: Path
) -> None:
    import pytest

    if _cuda_runs():
        pytest.skip("a CUDA build of onnxruntime is installed (tests/bench/test_gpu.py runs it)")
    ref, cand = classifier_paths
    out = tmp_path / "r.json"
    code, stdout, stderr = _run(ref, cand, "--cuda-graph", *FAST, "--json", out)
    assert code == 3 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: CUDA EP unavailable:")
    assert not out.exists()


def test_cuda_graph_refuses_other_providers_and_copies(classifier_paths: tuple[Path, Path]) -> None:
    ref, _ = classifier_paths
    code, _, stderr = _run(ref, "--cuda-graph", "--providers", "cpu,cuda", *FAST)
    assert code == 2 and "error: --cuda-graph runs on the CUDA EP only" in stderr
    code, _, stderr = _run(ref, "--cuda-graph", "--include-copies", *FAST)
    assert code == 2 and "drop --include-copies" in stderr
