"""Honest verification (issue 17): the noise floor, real samples, vacuous checks.

1. A cut whose outputs differ from the masked reference by more than the fixed tolerance, but
   within what the reference itself moves between ONNX Runtime optimisation levels, passes; a
   wrong channel removed still fails with exit 4.
2. With ``--eval-data`` / ``--calibration`` verification runs on those samples.
3. An output that is ~0 on N(0, 1) inputs is named vacuous (report, summary, a warning line) and
   judged relative to its scale.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

import onnxrecede
from onnxrecede.engine import tolerance
from tests.models import noisy

pytest.importorskip("onnxruntime")

ATOL = RTOL = 1e-5


@pytest.fixture(scope="module")
def noisy_report():
    model, imp = noisy.noisy_softmax()
    _, report = onnxrecede.prune(model, imp, ratio=0.5)
    return report.verification


def test_a_cut_within_the_noise_floor_passes(noisy_report):
    v = noisy_report
    (out,) = v["outputs"]
    assert v["masked_reference"] == "passed" and out["failed"] == 0
    # the fixed rule alone would call it a bug: 100x its tolerance
    assert out["max_abs_diff"] > 10 * (ATOL + RTOL * out["scale"])
    # ... but the reference moves as much between optimisation levels
    assert v["noise_floor_levels"] == ["extended", "all", "disabled"]
    assert out["noise_floor"] > ATOL + RTOL * out["scale"]
    assert out["max_abs_diff"] <= tolerance.NOISE_FACTOR * out["noise_floor"]
    assert out["tolerance"] == pytest.approx(tolerance.NOISE_FACTOR * out["noise_floor"])


def test_the_floor_is_measured_only_when_the_tolerance_is_exceeded():
    model, imp = noisy.near_zero()
    _, report = onnxrecede.prune(model, imp, ratio=0.5)
    v = report.verification
    assert v["masked_reference"] == "passed" and v["noise_floor_levels"] is None
    assert v["outputs"][0]["noise_floor"] is None


def _swap_one_channel(monkeypatch) -> None:
    """Make the rewrite remove one kept channel of conv_a instead of one removed one."""
    import onnxrecede.api as api

    real_rewrite = api.rewrite

    def wrong_rewrite(analysis, keep_element, *args, **kwargs):
        view = next(v for n, v in analysis.ctx.channel_outputs.items() if n.name == "conv_a")
        labels = np.asarray(view.labels)
        removed, kept = labels[~keep_element[labels]], labels[keep_element[labels]][1:]
        wrong = keep_element.copy()
        wrong[removed[0]], wrong[kept[0]] = True, False  # channel 0 (the 1e4 one) stays
        return real_rewrite(analysis, wrong, *args, **kwargs)

    monkeypatch.setattr(api, "rewrite", wrong_rewrite)


def _write(tmp_path, model: onnx.ModelProto, imp: dict) -> tuple[str, str]:
    path, imp_path = tmp_path / "m.onnx", tmp_path / "imp.json"
    onnx.save(model, str(path))
    imp_path.write_text(json.dumps(imp))
    return str(path), str(imp_path)


def test_a_wrong_channel_still_fails_with_exit_4(tmp_path, monkeypatch):
    model, imp = _write(tmp_path, *noisy.noisy_softmax())
    _swap_one_channel(monkeypatch)
    out = tmp_path / "out" / "p.onnx"
    out.parent.mkdir()
    r = CliRunner().invoke(main, ["prune", model, "-i", imp, "-o", str(out), "--ratio", "0.5"])
    assert r.exit_code == 4, r.output
    assert r.stderr.startswith("error: pruned model differs from the masked reference")
    assert "noise floor" in r.stderr and "This is a bug in onnxrecede" in r.stderr
    assert list(out.parent.iterdir()) == []


def _prune_cli(tmp_path, *extra: str) -> tuple[dict, str, str]:
    model, imp = _write(tmp_path, *noisy.near_zero())
    out, report = tmp_path / "p.onnx", tmp_path / "report.json"
    r = CliRunner().invoke(main, ["prune", model, "-i", imp, "-o", str(out), "--ratio", "0.5",
                                  "--report", str(report), *extra])  # fmt: skip
    assert r.exit_code == 0, r.output
    return json.loads(report.read_text())["verification"], r.stdout, r.stderr


def test_an_output_near_zero_on_random_inputs_is_a_vacuous_check(tmp_path):
    v, stdout, stderr = _prune_cli(tmp_path)
    (out,) = v["outputs"]
    assert v["inputs"] == {"source": "random N(0, 1), seed 0", "samples": 1}
    assert out["scale"] < 10 * ATOL and out["vacuous"].startswith("near zero")
    assert v["vacuous"] == ["p"] and v["masked_reference"] == "passed"
    assert out["tolerance"] == pytest.approx((ATOL + RTOL) * out["scale"])  # relative to scale
    assert "warning: output 'p': the check against the masked reference is vacuous" in stderr
    assert "give --calibration or --eval-data" in stderr
    assert "vacuous check: output 'p' (near zero" in stdout


def _data(tmp_path) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **noisy.real_inputs())
    return str(path)


@pytest.mark.parametrize("flags", [["--eval-data"], ["--compensate", "--calibration"]])
def test_verification_runs_on_the_real_samples_given(tmp_path, flags):
    data = _data(tmp_path)
    v, stdout, stderr = _prune_cli(tmp_path, *flags, data)
    assert v["inputs"] == {"source": data, "samples": 4}
    (out,) = v["outputs"]
    # on these samples the output is far from zero: the check is not vacuous
    assert v["vacuous"] == [] and out["vacuous"] is None and out["scale"] > 1e-3
    assert v["masked_reference"] == "passed" and "warning" not in stderr
    assert f"on 4 sample(s) of {data}" in stdout


def test_api_verify_data_and_fixed_batch_models(tmp_path):
    data = _data(tmp_path)
    model, imp = noisy.near_zero()
    _, report = onnxrecede.prune(model, imp, ratio=0.5, verify_data=data)
    assert report.verification["inputs"] == {"source": data, "samples": 4}
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 3  # fixed batch of 3
    _, report = onnxrecede.prune(fixed, imp, ratio=0.5, verify_data=data)
    # 4 samples in batches of 3, the last one padded: still the 4 real samples
    assert report.verification["inputs"] == {"source": data, "samples": 4}


def test_judged_relative_to_scale_catches_what_atol_hides():
    rng = np.random.default_rng(0)
    ref = (rng.uniform(0, 1, 64) * 2e-5).astype(np.float32)
    half = (ref * 0.5).astype(np.float32)  # off by half of the output: under atol everywhere
    (plain,) = tolerance.judge([ref * 1e5], [half * 1e5], ["big"], ATOL, RTOL)
    assert not plain.passed and plain.vacuous is None  # a large output: the usual rule fails it
    (v,) = tolerance.judge([ref], [half], ["p"], ATOL, RTOL)
    assert np.abs(ref - half).max() < ATOL  # the fixed rule would pass it
    assert not v.passed and v.vacuous is not None and v.diff.failed > 0


def test_a_nearly_constant_output_is_named():
    ref = np.full((2, 8), 3.0, np.float32)
    (v,) = tolerance.judge([ref], [ref.copy()], ["c"], ATOL, RTOL)
    assert v.passed and v.vacuous is not None and v.vacuous.startswith("nearly constant")
    (one,) = tolerance.judge([ref[:1, :1]], [ref[:1, :1]], ["one"], ATOL, RTOL)
    assert one.vacuous is None  # a single element is not "constant"
    lines = tolerance.notes([v])
    assert lines == [f"output 'c': the check is vacuous ({v.vacuous})"]


def test_noise_floor_widens_only_up_to_its_multiple():
    ref = np.linspace(-1, 1, 32).astype(np.float32)
    off = ref + np.float32(1e-3)
    (no_floor,) = tolerance.judge([ref], [off], ["y"], ATOL, RTOL)
    assert not no_floor.passed and no_floor.noise_floor is None
    (within,) = tolerance.judge([ref], [off], ["y"], ATOL, RTOL, floors=[2e-4])
    assert within.passed and within.noise_floor == 2e-4
    (beyond,) = tolerance.judge([ref], [off], ["y"], ATOL, RTOL, floors=[5e-5])
    assert not beyond.passed and beyond.diff.failed == 32
    assert tolerance.noise_floors([ref], [off]) == [pytest.approx(1e-3, rel=1e-3)]
