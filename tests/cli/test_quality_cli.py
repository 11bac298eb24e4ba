"""`onnxrecede eval` and the cut-quality options of `onnxrecede prune` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

from onnxrecede.runtime.probe import Probe
from tests.models.small import importances_removing, small_cnn


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    model = small_cnn(seed=4)
    onnx.save(model, str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (40, 3, 8, 8)).astype(np.float32)
    logits = Probe(model, [], include_outputs=True).run({"input": x})["logits"]
    np.savez(tmp_path / "eval.npz", x=x, y=np.argmax(logits, axis=1))  # the model scores 100%
    np.savez(tmp_path / "calib.npz", x=rng.uniform(0, 1, (32, 3, 8, 8)).astype(np.float32))
    (tmp_path / "imp.json").write_text(json.dumps(importances_removing([0, 1, 2, 3], [0, 1, 2])))
    return {k: tmp_path / f for k, f in
            {"model": "m.onnx", "eval": "eval.npz", "calib": "calib.npz", "imp": "imp.json",
             "out": "p.onnx", "report": "r.json"}.items()}  # fmt: skip


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_eval_text_and_json(files) -> None:
    r = _run("eval", files["model"], "--data", files["eval"], "-q")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("top-1 100.00% (40/40)  top-5 100.00% (40/40)  on 40 samples")
    r = _run("eval", files["model"], "--data", files["eval"], "--batch", "7", "--json", "-q")
    doc = json.loads(r.stdout)
    assert (doc["top1"], doc["samples"], doc["classes"]) == (1.0, 40, 10)


def test_eval_bad_data_is_one_error_line(files, tmp_path: Path) -> None:
    r = _run("eval", files["model"], "--data", tmp_path / "missing.npz")
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: data not found")


def test_prune_accuracy_gate_exit_6_still_writes(files) -> None:
    args = ["prune", files["model"], "-i", files["imp"], "-o", files["out"], "--threshold", "0.5",
            "--eval-data", files["eval"], "--report", files["report"], "-q"]  # fmt: skip
    r = _run(*args, "--max-accuracy-drop", "1")
    assert r.exit_code == 6, r.output
    assert (
        "error: top-1 accuracy fell by" in r.stderr and "the pruned model was written" in r.stderr
    )
    assert files["out"].is_file()
    acc = json.loads(files["report"].read_text())["accuracy"]
    assert acc["original"]["top1"] == 1.0 and acc["pruned"]["top1"] < 0.99
    assert acc["top1_drop_points"] == pytest.approx(100 * (1 - acc["pruned"]["top1"]), abs=1e-3)
    r = _run(*args, "--max-accuracy-drop", "100")
    assert r.exit_code == 0 and "accuracy on 40 samples" in r.stdout


def test_prune_reconstruct_improves_and_says_so(files) -> None:
    base = ["prune", files["model"], "-i", files["imp"], "-o", files["out"], "--threshold", "0.5",
            "--eval-data", files["eval"], "--json", "-q"]  # fmt: skip
    plain = json.loads(_run(*base).stdout)["accuracy"]["pruned"]["top1"]
    r = _run(*base, "--reconstruct", "--calibration", files["calib"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["accuracy"]["pruned"]["top1"] > plain
    assert doc["verification"]["masked_reference"].startswith("replaced by the reconstruction")
    assert [e["node"] for e in doc["repair"]["reconstruction"]["consumers"]] == ["conv_b", "fc"]
    text = _run(*base[:-2], "--compensate", "--calibration", files["calib"], "-q").stdout
    assert "compensation: biases of 2 consumer(s) adjusted from 32 samples" in text
    assert "masked reference passed" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reconstruct"], "--reconstruct needs calibration data"),
        (["--max-accuracy-drop", "1"], "--max-accuracy-drop needs --eval-data"),
        (["--calibration", "x.npz"], "--calibration is used by --compensate or --reconstruct"),
        (["--compensate", "--calibration-limit", "0"], "--calibration-limit must be at least 1"),
    ],
)
def test_prune_option_errors(files, extra: list[str], message: str) -> None:
    r = _run("prune", files["model"], "-i", files["imp"], "-o", files["out"], *extra)
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {message}"), r.output
    assert not files["out"].exists()


def test_eval_and_reconstruct_never_import_torch(files) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from onnxrecede_cli.main import main\n"
        "for args in ({eval}, {prune}):\n"
        "    try:\n"
        "        main(list(args))\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "print('torch' in sys.modules)\n"
    ).format(
        eval=repr(("eval", str(files["model"]), "--data", str(files["eval"]), "-q")),
        prune=repr(("prune", str(files["model"]), "-i", str(files["imp"]), "-o",
                    str(files["out"]), "--threshold", "0.5", "--reconstruct", "--compensate",
                    "--calibration", str(files["calib"]), "-q")),
    )  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_eval_image_folder_options_reach_the_loader(tmp_path: Path) -> None:
    from PIL import Image

    from onnxrecede.data.sources import ImageOptions
    from onnxrecede.runtime.evaluate import evaluate

    onnx.save(small_cnn(seed=4), str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(0)
    for cls in ("a", "b", "c"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    opts = ["--resize", "9", "--mean", "0.4,0.5,0.6", "--std", "0.3", "--channel-order", "bgr"]
    r = _run("eval", tmp_path / "m.onnx", "--data", tmp_path / "imgs", *opts, "--json", "-q")
    assert r.exit_code == 0, r.output
    want = evaluate(str(tmp_path / "m.onnx"), str(tmp_path / "imgs"), image=ImageOptions(
        resize=9, mean=(0.4, 0.5, 0.6), std=(0.3,), channel_order="bgr"))  # fmt: skip
    doc = json.loads(r.stdout)
    assert (doc["correct_top1"], doc["correct_top5"], doc["samples"]) == (
        want.correct1, want.correct5, 9)  # fmt: skip
    r = _run("eval", tmp_path / "m.onnx", "--data", tmp_path / "imgs", "--image-size", "5x6")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: image size 5x6 does not fit model input 'input'")


def test_prune_target_accuracy_drop_writes_the_cut_it_measured(files) -> None:
    args = ["prune", files["model"], "-i", files["imp"], "-o", files["out"], "--eval-data",
            files["eval"], "--search-steps", "4", "--reconstruct", "--calibration", files["calib"],
            "--report", files["report"], "-q"]  # fmt: skip
    r = _run(*args, "--target-accuracy-drop", "30")
    assert r.exit_code == 0, r.output
    doc = json.loads(files["report"].read_text())
    search = doc["policy"]["target_accuracy_drop"]
    assert (search["max_drop_points"], search["eval_samples"], len(search["steps"])) == (30, 40, 4)
    within = [s for s in search["steps"] if s["within"]]
    assert within and all(s["drop_points"] <= 30 for s in within)
    chosen = min(within, key=lambda s: s["macs_after"])
    assert chosen["target_macs"] == search["chosen_target_macs"]
    # the written model is the candidate measured: same MACs, same accuracy on the same samples
    assert doc["macs"]["after"] == chosen["macs_after"]
    assert doc["accuracy"]["pruned"]["top1"] == pytest.approx(chosen["top1"])
    assert doc["repair"]["reconstruction"]["consumers"]
    assert "accuracy search (top-1 drop within 30 points on 40 samples" in r.stdout


def test_prune_allocate_sensitivity_needs_only_calibration(files) -> None:
    base = ["prune", files["model"], "-i", files["imp"], "-o", files["out"], "--threshold", "0.5",
            "--allocate", "sensitivity", "--json", "-q"]  # fmt: skip
    r = _run(*base)
    assert r.exit_code == 2
    assert r.stderr.strip() == "error: --allocate sensitivity needs --calibration DATA"
    r = _run(*base, "--calibration", files["calib"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["repair"]["reconstruction"]["consumers"]
