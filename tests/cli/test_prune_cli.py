"""`onnxrecede prune` / `inspect`: outputs, exit codes and one-line error messages."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

from onnxrecede.errors import VerificationError
from tests.models.importances import make_random_importances


@pytest.fixture
def model_and_imp(handmade_path, tmp_path):
    model = handmade_path("split13")
    imp = tmp_path / "imp.json"
    imp.write_text(json.dumps(make_random_importances(model, seed=3)))
    return model, imp


def _run(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_prune_writes_model_report_and_table(model_and_imp, tmp_path):
    model, imp = model_and_imp
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    out, report = tmp_path / "p.onnx", tmp_path / "r.json"
    r = _run(["prune", model, "-i", imp, "-o", out, "--ratio", "0.5", "--report", report, "-q"])
    assert r.exit_code == 0, r.output
    assert out.is_file() and "channels removed" in r.stdout and "masked reference passed" in r.stdout
    doc = json.loads(report.read_text())
    assert doc["removed_channels"] and doc["params"]["after"] < doc["params"]["before"]
    assert doc["macs"]["after"] < doc["macs"]["before"]
    assert {"groups_pruned", "groups_blocked", "verification"} <= doc.keys()
    assert hashlib.sha256(model.read_bytes()).hexdigest() == digest


def test_prune_json_on_stdout(model_and_imp, tmp_path):
    model, imp = model_and_imp
    r = _run(["prune", model, "-i", imp, "-o", tmp_path / "p.onnx", "--json", "-q"])
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    for name, removed in doc["removed_channels"].items():
        assert removed == sorted(removed) and name


def test_inspect_json(model_and_imp):
    model, imp = model_and_imp
    r = _run(["inspect", model, "-i", imp, "--json"])
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert any(g["status"] == "blocked" for g in doc["groups"])
    assert all("reason" in b for b in doc["barriers"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ratio", "0.5", "--threshold", "0.1"], "give only one of --ratio, --threshold"),
        (["--ratio", "1.5"], "ratio must be in [0, 1)"),
        (["--min-channels", "0"], "min-channels must be at least 1"),
        (["--shape", "bad"], "bad --shape"),
        (["--fail-below", "1.2"], "--fail-below needs --bench"),
    ],
)
def test_bad_options(model_and_imp, tmp_path, extra, message):
    model, imp = model_and_imp
    out = tmp_path / "p.onnx"
    r = _run(["prune", model, "-i", imp, "-o", out, *extra])
    assert r.exit_code == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_bad_inputs(model_and_imp, tmp_path):
    model, imp = model_and_imp
    cases = [
        (["prune", tmp_path / "none.onnx", "-i", imp, "-o", tmp_path / "p.onnx"], "model file not found"),
        (["prune", model, "-i", tmp_path / "none.json", "-o", tmp_path / "p.onnx"], "importances file not found"),
        (["prune", model, "-i", imp, "-o", model], "an input is never overwritten"),
        (["inspect", tmp_path / "none.onnx"], "model file not found"),
    ]
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model")
    cases.append((["inspect", garbage], "cannot read"))
    for args, message in cases:
        r = _run(args)
        assert r.exit_code == 2, (args, r.output)
        assert r.stderr.startswith("error: ") and message in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_importance_key_errors(model_and_imp, tmp_path):
    model, _ = model_and_imp
    imp = tmp_path / "bad.json"
    imp.write_text(json.dumps({"conv_q": [1.0] * 8}))
    r = _run(["prune", model, "-i", imp, "-o", tmp_path / "p.onnx"])
    assert r.exit_code == 2 and "'conv_q' matches no node" in r.stderr and "conv_" in r.stderr


def test_verification_failure_writes_nothing(model_and_imp, tmp_path, monkeypatch):
    import onnxrecede.api as api

    def fail(*args, **kwargs):
        raise VerificationError("pruned model differs from the masked reference")

    monkeypatch.setattr(api, "run_verification", fail)
    model, imp = model_and_imp
    out = tmp_path / "p.onnx"
    r = _run(["prune", model, "-i", imp, "-o", out])
    assert r.exit_code == 4 and "masked reference" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".onnxrecede-*"))


def test_external_data_flag(model_and_imp, tmp_path):
    model, imp = model_and_imp
    out = tmp_path / "p.onnx"
    r = _run(["prune", model, "-i", imp, "-o", out, "--external-data", "-q"])
    assert r.exit_code == 0
    assert (tmp_path / "p.onnx.data").is_file()
    import onnx

    onnx.checker.check_model(str(out), full_check=True)


@pytest.fixture
def attention_and_imp(tmp_path):
    import onnx

    from tests.models.attention import AttentionSpec, attention_model, head_importances

    spec = AttentionSpec(layout="separate")
    model = tmp_path / "attn.onnx"
    onnx.save(attention_model(spec), str(model))
    imp = tmp_path / "imp.json"
    imp.write_text(json.dumps(head_importances(spec, [0.9, 0.1, 0.8, 0.2])))
    return model, imp


def test_prune_reports_removed_heads(attention_and_imp, tmp_path):
    model, imp = attention_and_imp
    r = _run(["prune", model, "-i", imp, "-o", tmp_path / "p.onnx", "--json", "-q"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["removed_heads"] == {"q, k, v": [1, 3]} and doc["removed_head_dims"] == {}
    r = _run(["prune", model, "-i", imp, "-o", tmp_path / "p.onnx", "-q"])
    assert "heads removed from q, k, v: [1, 3]" in r.stdout


def test_prune_head_dims_flag(attention_and_imp, tmp_path):
    model, imp = attention_and_imp
    args = ["prune", model, "-i", imp, "-o", tmp_path / "p.onnx", "--head-dims", "--json", "-q"]
    r = _run(args)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["removed_heads"] == {}
    r = _run(["inspect", model, "--head-dims", "--json"])
    assert [(b["block"], b["units"], b["count"]) for b in json.loads(r.stdout)["attention"]] == [
        ("q, k", "dims", 4),
        ("v", "dims", 4),
    ]
