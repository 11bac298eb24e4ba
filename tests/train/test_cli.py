"""`onnxrecede train`, then `export` and `prune`, from the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402
from onnxrecede_cli.main import main  # noqa: E402

TINY = [
    "--model",
    "vgg16",
    "--data",
    "synthetic:120",
    "--epochs",
    "1",
    "--width",
    "0.125",
    "--batch-size",
    "32",
    "--max-steps",
    "2",
    "--lr",
    "0.02",
    "--no-progress",
]


def test_train_then_prune_end_to_end(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(
        main,
        [
            "train",
            *TINY,
            "--method",
            "rni",
            "--strength",
            "1e-2",
            "--shift",
            "0",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["prune_scope"] == "global" and summary["best_epoch"] == 1
    for name in ("last.pt", "best.pt", "log.json", "model.onnx", "imp.json", "importances.png"):
        assert (out / name).is_file(), name
    assert (out / "importances.png").read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(
        main,
        [
            "export",
            str(out / "best.pt"),
            "-o",
            str(tmp_path / "ts.onnx"),
            "--importances",
            str(tmp_path / "ts.json"),
            "--exporter",
            "torchscript",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["keys"] == 13
    r = CliRunner().invoke(
        main,
        [
            "prune",
            str(out / "model.onnx"),
            "-i",
            str(out / "imp.json"),
            "-o",
            str(tmp_path / "pruned.onnx"),
            "--ratio",
            "0.5",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pruned.onnx").is_file()


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["train", "--data", "cifar10:/no/such/dir", "--epochs", "1"], "CIFAR folder not found"),
        (["train", "--method", "ucs", "--strength", "0.1", "--epochs", "1"], "ucs trains without"),
        (["train", "--milestones", "0.5,2", "--epochs", "1"], "--milestones"),
        (
            ["export", "/no/such.pt", "-o", "m.onnx", "--importances", "i.json"],
            "checkpoint not found",
        ),
    ],
)
def test_user_errors_are_one_line(tmp_path, args, msg):
    r = CliRunner().invoke(
        main, [*args, *([] if args[0] == "export" else ["--out", str(tmp_path)])]
    )
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and msg in r.stderr
    assert "Traceback" not in r.output


@pytest.mark.skipif(
    shutil.which("torchrun") is None
    and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "torchrun")),
    reason="torchrun not installed",
)
def test_ddp_two_processes_gloo(tmp_path):
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = tmp_path / "ddp"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "onnxrecede_cli.main",
        "train",
        *TINY,
        "--epochs",
        "2",
        "--method",
        "rni",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    log = json.loads((out / "log.json").read_text())
    assert log["world_size"] == 2 and log["ranks_in_sync"] is True
    assert len(log["epochs"]) == 2
    assert (out / "model.onnx").is_file() and (out / "imp.json").is_file()
