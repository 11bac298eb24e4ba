"""Honest verification (issue 17): the noise floor, real samples, vacuous checks.

1. A cut whose outputs differ from the masked reference by more than the fixed tolerance, but
   within what the reference itself moves between ONNX Runtime optimisation levels, passes; the
   same cut beyond that fails with exit 4, and so does a wrong channel removed. How much the
   reference really moves depends on the CPU's kernels (summation order), so these tests inject
   both moves at verification's seams: the reference's runs at the floor's levels and the pruned
   model's outputs are moved by known amounts, on a model whose own differences are ~1e-6.
2. With ``--eval-data`` / ``--calibration`` verification runs on those samples.
3. An output that is ~0 on N(0, 1) inputs is named vacuous (report, summary, a warning line) and
   judged relative to its scale.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

import onnxrecede
from onnxrecede.engine import tolerance, verify
from tests.models import noisy

pytest.importorskip("onnxruntime")

ATOL = RTOL = 1e-5


#: the controlled difference of the pruned output (one element): 500x the fixed tolerance
CUT = 1e-2
#: where the pruned output and the reference's runs at other levels are moved
CUT_AT, FLOOR_AT = 7, 0


def _moved(outputs: list[np.ndarray], by: float, at: int) -> list[np.ndarray]:
    first = np.array(outputs[0])
    first.flat[at] += np.float32(by)
    return [first, *outputs[1:]]


class _Moved:
    """A session whose first output is moved by ``by`` at element ``at`` (other names: the
    wrapped session's)."""

    def __init__(self, session: Any, by: float, at: int) -> None:
        self.session, self.by, self.at = session, by, at

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return _moved(self.session.run(names, feeds), self.by, self.at)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def _inject_floor(monkeypatch, moves: dict[str, float]) -> list[str]:
    """Move the masked reference by ``moves[level]`` when verification runs it at one of the
    noise floor's levels (on the clean model it moves ~1e-6 on its own); returns the levels of
    every session verification opens, in order."""
    real, levels = verify._session, []

    def session(path: Any, level: str = verify.MAIN_LEVEL) -> Any:
        levels.append(level)
        s = real(path, level)
        return _Moved(s, moves[level], FLOOR_AT) if level in moves else s

    monkeypatch.setattr(verify, "_session", session)
    return levels


def _move_the_cut(monkeypatch) -> None:
    """Move the pruned model's output by ``CUT`` (the clean model's own difference is ~1e-6)."""
    real = verify._run_pruned

    def run_pruned(path: Any, run: Any) -> Any:
        ran = real(path, run)
        assert ran is not None  # ONNX Runtime is there (importorskip)
        return ran[0], _moved(ran[1], CUT, CUT_AT)

    monkeypatch.setattr(verify, "_run_pruned", run_pruned)


def _floors(larger: str, size: float) -> dict[str, float]:
    """``size`` at level ``larger``, half of it at the other floor level."""
    return {level: size if level == larger else size / 2 for level in verify.FLOOR_LEVELS}


@pytest.mark.parametrize("larger", verify.FLOOR_LEVELS)
def test_a_cut_within_the_noise_floor_passes(monkeypatch, larger):
    floor = CUT / 5  # NOISE_FACTOR x floor = 2 x CUT
    levels = _inject_floor(monkeypatch, _floors(larger, floor))
    _move_the_cut(monkeypatch)
    _, report = onnxrecede.prune(*noisy.noisy_softmax(big=0.0), ratio=0.5)
    v = report.verification
    assert v is not None
    (out,) = v["outputs"]
    assert v["masked_reference"] == "passed" and out["failed"] == 0
    assert out["max_abs_diff"] == pytest.approx(CUT, abs=1e-5)
    # the fixed rule alone would call it a bug: 500x its tolerance
    assert out["max_abs_diff"] > 100 * (ATOL + RTOL * out["scale"])
    # ... but the reference moves by the floor between optimisation levels (the largest move)
    assert v["noise_floor_levels"] == ["extended", "all", "disabled"]
    assert levels[-2:] == list(verify.FLOOR_LEVELS) and levels.count("extended") == 2
    assert out["noise_floor"] == pytest.approx(floor, abs=1e-5)
    assert out["tolerance"] == pytest.approx(tolerance.NOISE_FACTOR * out["noise_floor"])


def test_the_same_cut_beyond_the_noise_floor_fails_with_exit_4(tmp_path, monkeypatch):
    floor = CUT / 20  # NOISE_FACTOR x floor = CUT / 2
    _inject_floor(monkeypatch, _floors("all", floor))
    _move_the_cut(monkeypatch)
    r, out = _prune_failing(tmp_path, noisy.noisy_softmax(big=0.0))
    assert r.exit_code == 4, r.output
    assert r.stderr.startswith("error: pruned model differs from the masked reference")
    assert f"beyond {tolerance.NOISE_FACTOR:g}x the reference's noise floor" in r.stderr
    assert f"beyond the tolerance {tolerance.NOISE_FACTOR * floor:.3g}" in r.stderr
    assert f"max abs diff {CUT:.3g}" in r.stderr and f"noise floor {floor:.3g})" in r.stderr
    assert "This is a bug in onnxrecede" in r.stderr and list(out.parent.iterdir()) == []


def test_the_floor_is_measured_only_when_the_tolerance_is_exceeded(monkeypatch):
    levels = _inject_floor(monkeypatch, {})
    model, imp = noisy.near_zero()
    _, report = onnxrecede.prune(model, imp, ratio=0.5)
    v = report.verification
    assert v is not None
    assert v["masked_reference"] == "passed" and v["noise_floor_levels"] is None
    assert v["outputs"][0]["noise_floor"] is None
    assert levels == ["extended", "extended"]  # the pruned model and its reference, no floor


def _swap_one_channel(monkeypatch) -> None:
    """Make the rewrite remove one kept channel of conv_a instead of one removed one."""
    import onnxrecede.api as api

    real_rewrite = api.rewrite

    def wrong_rewrite(analysis, keep_element, *args, **kwargs):
        view = next(v for n, v in analysis.ctx.channel_outputs.items() if n.name == "conv_a")
        labels = np.asarray(view.labels)
        removed, kept = labels[~keep_element[labels]], labels[keep_element[labels]][1:]
        wrong = keep_element.copy()
        wrong[removed[0]], wrong[kept[0]] = True, False  # channel 0 (the `big` one) stays
        return real_rewrite(analysis, wrong, *args, **kwargs)

    monkeypatch.setattr(api, "rewrite", wrong_rewrite)


def _write(tmp_path, model: onnx.ModelProto, imp: dict) -> tuple[str, str]:
    path, imp_path = tmp_path / "m.onnx", tmp_path / "imp.json"
    onnx.save(model, str(path))
    imp_path.write_text(json.dumps(imp))
    return str(path), str(imp_path)


def _prune_failing(tmp_path, model_imp: tuple[onnx.ModelProto, dict]) -> tuple[Any, Any]:
    model, imp = _write(tmp_path, *model_imp)
    out = tmp_path / "out" / "p.onnx"
    out.parent.mkdir()
    r = CliRunner().invoke(main, ["prune", model, "-i", imp, "-o", str(out), "--ratio", "0.5"])
    return r, out


@pytest.mark.parametrize("big", [0.0, 1e4])
def test_a_wrong_channel_still_fails_with_exit_4(tmp_path, monkeypatch, big):
    """Within the floor that lets the right cut pass (injected), and on the noisy model with its
    own floor measured (whatever this CPU's kernels make it: ~1e-3 at most)."""
    floor = CUT / 5
    if big == 0.0:
        _inject_floor(monkeypatch, _floors("all", floor))
    _swap_one_channel(monkeypatch)
    r, out = _prune_failing(tmp_path, noisy.noisy_softmax(big=big))
    assert r.exit_code == 4, r.output
    assert r.stderr.startswith("error: pruned model differs from the masked reference")
    assert "noise floor" in r.stderr and "This is a bug in onnxrecede" in r.stderr
    assert big or f"noise floor {floor:.3g})" in r.stderr
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
