"""Bad and unusual inputs, run as a user would: each case must exit with its documented code,
print exactly one ``error:`` line and no traceback, leave every input byte-identical, and leave
no output or temporary file behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "resnet_small.onnx"
SAMPLE_IMP = ROOT / "samples" / "resnet_small.imp.json"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder with the inputs every case may read."""
    shutil.copy(SAMPLE, tmp_path / "m.onnx")
    shutil.copy(SAMPLE_IMP, tmp_path / "imp.json")
    model = onnx.load(str(SAMPLE))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
              location="weights.bin", size_threshold=0)  # fmt: skip
    scores = json.loads(SAMPLE_IMP.read_text())["importances"]
    (tmp_path / "ext.imp.json").write_text(json.dumps(scores))
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "binary.json").write_bytes(bytes(range(256)) * 4)
    key = next(iter(scores))
    entry = f'"{key}": {json.dumps(scores[key])}'
    (tmp_path / "dup.json").write_text(f'{{"importances": {{{entry}, {entry}}}}}')
    (tmp_path / "a_file").write_text("not a folder\n")
    os.symlink(tmp_path / "m.onnx", tmp_path / "link.onnx")
    os.link(tmp_path / "m.onnx", tmp_path / "hard.onnx")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    flat = {k: [1.0] * len(v) for k, v in scores.items()}  # one distinct value
    (tmp_path / "flat.json").write_text(json.dumps({"importances": flat}))
    os.symlink("gone/out.onnx", tmp_path / "dangling.onnx")
    os.symlink(tmp_path / "gone" / "deeper" / "out.onnx", tmp_path / "dangling_abs.onnx")
    return tmp_path


def _snapshot(folder: Path) -> dict[str, str]:
    """Every regular file below ``folder`` (symlinks and FIFOs not followed) and its hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink() or not p.is_file():
            out[str(p.relative_to(folder))] = "special"
            continue
        out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    message: str  # a fragment the one error line must contain


P = ("prune", "m.onnx", "-i", "imp.json")
CASES = [
    # data loss: an output that is also an input
    Case("out-is-importances", (*P, "-o", "imp.json"), 2, "-o imp.json is the --importances"),
    Case("report-is-model", (*P, "-o", "out.onnx", "--report", "m.onnx"), 2,
         "--report m.onnx is the model"),
    Case("report-is-output", (*P, "-o", "out.onnx", "--report", "out.onnx"), 2,
         "are the same file"),
    Case("bench-json-is-model", ("bench", "m.onnx", "link.onnx", "--json", "link.onnx"), 2,
         "--json link.onnx is the model"),
    Case("out-is-external-data", ("prune", "ext.onnx", "-i", "ext.imp.json", "-o", "weights.bin"),
         2, "is the external data of the model"),
    Case("out-data-is-external-data",
         ("prune", "ext.onnx", "-i", "ext.imp.json", "-o", "weights.bin.onnx", "--report",
          "weights.bin"), 2, "weights.bin is the external data"),
    Case("out-symlink-to-model", (*P, "-o", "link.onnx"), 2, "-o link.onnx is the model m.onnx"),
    Case("out-hardlink-to-model", (*P, "-o", "hard.onnx"), 2, "-o hard.onnx is the model m.onnx"),
    Case("out-dotdot-model", (*P, "-o", "folder/../m.onnx"), 2, "is the model m.onnx"),
    Case("out-fifo", (*P, "-o", "fifo"), 2, "is a FIFO, not a regular file"),
    Case("out-folder", (*P, "-o", "folder"), 2, "is a directory"),
    Case("report-folder", (*P, "-o", "out.onnx", "--report", "folder"), 2, "is a directory"),
    Case("out-device", (*P, "-o", "/dev/null"), 2, "is a device"),
    Case("importances-out-is-model", ("importances", "m.onnx", "-o", "m.onnx", "-c", "l1"), 2,
         "-o m.onnx is the model"),
    Case("export-out-is-checkpoint", ("export", "imp.json", "-o", "imp.json", "--importances",
                                      "i.json"), 2, "-o imp.json is the checkpoint"),
    Case("export-importances-is-output", ("export", "imp.json", "-o", "x.onnx", "--importances",
                                          "x.onnx"), 2, "are the same file"),
    Case("finetune-out-holds-the-cut", ("finetune", "m.onnx", "--cut", "folder/log.json",
                                        "--out", "folder"), 2, "is the --cut folder/log.json"),
    Case("train-lr-nan", ("train", "--lr", "nan", "--out", "folder"), 2, "not a finite"),
    # an output that does not exist yet: refused, and nothing created through a link or on failure
    Case("out-dangling-symlink", (*P, "-o", "dangling.onnx"), 2,
         "-o dangling.onnx is a symbolic link to gone/out.onnx, which does not exist"),
    Case("out-dangling-symlink-absolute", (*P, "-o", "dangling_abs.onnx"), 2,
         "never writes through a dangling link"),
    Case("report-dangling-symlink", (*P, "-o", "out.onnx", "--report", "dangling.onnx"), 2,
         "--report dangling.onnx is a symbolic link"),
    Case("importances-out-dangling-symlink", ("importances", "m.onnx", "-o", "dangling.onnx",
                                              "-c", "l1"), 2, "is a symbolic link"),
    Case("new-folders-bad-shape", (*P, "-o", "new1/new2/out.onnx", "--shape",
                                   "input:2x3x32x32"), 2, "conflicts with the model input"),
    Case("new-folders-bad-importances", ("prune", "m.onnx", "-i", "dup.json", "-o",
                                         "new1/new2/out.onnx", "--report", "new3/r.json"), 2,
         "more than once"),
    Case("new-folders-zero-shape", (*P, "-o", "new1/out.onnx", "--shape", "input:0x3x32x32"), 2,
         "bad shape [0, 3, 32, 32] for input 'input'"),
    Case("importances-new-folder-bad-seed", ("importances", "m.onnx", "-o", "new1/imp.json",
                                             "-c", "random", "--seed", "-1"), 2,
         "the seed (--seed) must be at least 0, got -1"),
    Case("ratio-auto-one-distinct-value", ("prune", "m.onnx", "-i", "flat.json", "-o", "out.onnx",
                                           "--ratio", "auto"), 2,
         "needs at least 8 distinct prunable importances, got 1 distinct value among 240"),
    # checks that a value could switch off
    Case("atol-nan", (*P, "-o", "out.onnx", "--atol", "nan"), 2, "'--atol': nan is not a finite"),
    Case("rtol-nan", (*P, "-o", "out.onnx", "--rtol", "nan"), 2, "'--rtol': nan is not a finite"),
    Case("atol-negative", (*P, "-o", "out.onnx", "--atol", "-1e-5"), 2, "must be at least 0"),
    Case("rtol-inf", (*P, "-o", "out.onnx", "--rtol", "inf"), 2, "not a finite number"),
    Case("bench-fail-below-nan", ("bench", "m.onnx", "m.onnx", "--fail-below", "nan"), 2,
         "'--fail-below': nan is not a finite"),
    Case("bench-fail-below-negative", ("bench", "m.onnx", "m.onnx", "--fail-below", "-1"), 2,
         "must be greater than 0"),
    Case("prune-fail-below-nan", (*P, "-o", "out.onnx", "--bench", "--fail-below", "nan"), 2,
         "not a finite number"),
    Case("bench-atol-nan", ("bench", "m.onnx", "m.onnx", "--atol", "nan"), 2, "not a finite"),
    Case("bench-seconds-nan", ("bench", "m.onnx", "--seconds", "nan"), 2, "not a finite"),
    Case("threshold-nan", (*P, "-o", "out.onnx", "--threshold", "nan"), 2, "not a finite"),
    Case("accuracy-drop-nan", (*P, "-o", "out.onnx", "--eval-data", "digits:test",
                               "--max-accuracy-drop", "nan"), 2, "not a finite"),
    Case("accuracy-drop-negative", (*P, "-o", "out.onnx", "--eval-data", "digits:test",
                                    "--max-accuracy-drop", "-1"), 2, "must be at least 0"),
    Case("plot-threshold-nan", ("inspect", "m.onnx", "-i", "imp.json", "--threshold", "nan"), 2,
         "not a finite"),
    Case("ratio-nan", (*P, "-o", "out.onnx", "--ratio", "nan"), 2, "ratio"),
    # wrong or misleading answers
    Case("bench-fixed-batch", ("bench", "m.onnx", "--batch", "8", "--seconds", "0.1"), 2,
         "the batch dimension is fixed"),
    Case("empty-model-inspect", ("inspect", "empty.onnx"), 2, "empty.onnx is empty"),
    Case("empty-model-prune", ("prune", "empty.onnx", "-i", "imp.json", "-o", "out.onnx"), 2,
         "empty.onnx is empty"),
    Case("duplicate-key", (*P[:3], "dup.json", "-o", "out.onnx"), 2, "appears more than once"),
    Case("binary-importances", (*P[:3], "binary.json", "-o", "out.onnx"), 2, "is not text"),
    Case("shape-conflict", (*P, "-o", "out.onnx", "--shape", "input:2x3x32x32"), 2,
         "input:2x3x32x32 conflicts with the model input 'input', whose shape is 1x3x32x32"),
    Case("shape-unknown-input", (*P, "-o", "out.onnx", "--shape", "nope:1x3x32x32"), 2,
         "'nope', which is not a model input"),
    # user and I/O errors, not internal errors
    Case("out-under-a-file", (*P, "-o", "a_file/out.onnx"), 2, "a_file/out.onnx"),
    Case("out-unwritable", (*P, "-o", "/proc/onnxrecede/out.onnx"), 2, "not writable"),
    Case("report-unwritable", (*P, "-o", "out.onnx", "--report", "/proc/onnxrecede/r.json"), 2,
         "--report /proc/onnxrecede/r.json"),
    Case("bench-json-unwritable", ("bench", "m.onnx", "--json", "a_file/r.json"), 2, "a_file"),
    # click's own usage errors, as one line
    Case("missing-importances", ("prune", "m.onnx", "-o", "out.onnx"), 2, "Missing option"),
    Case("unknown-option", (*P, "-o", "out.onnx", "--bogus"), 2, "No such option"),
    Case("bad-int", (*P, "-o", "out.onnx", "--min-channels", "two"), 2, "'two' is not a valid"),
    Case("unknown-command", ("prunee",), 2, "No such command"),
    Case("missing-model", ("prune", "nope.onnx", "-i", "imp.json", "-o", "out.onnx"), 2,
         "not found"),
]  # fmt: skip


def _invoke(work: Path, args: tuple[str, ...]):
    cwd = os.getcwd()
    os.chdir(work)
    try:
        return CliRunner().invoke(main, list(args))
    finally:
        os.chdir(cwd)


def _assert_one_error_line(stderr: str, fragment: str) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert "Traceback" not in stderr
    assert len(errors) == 1 and errors[0] == lines[-1], stderr  # log lines may come before
    assert errors[0].startswith("error: "), stderr
    assert fragment in errors[0], errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(work: Path, case: Case) -> None:
    before = _snapshot(work)
    result = _invoke(work, case.args)
    assert result.exit_code == case.code, (result.stdout, result.stderr)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    _assert_one_error_line(result.stderr, case.message)
    assert _snapshot(work) == before  # inputs byte-identical, no output, no temp file


def test_importances_object_without_format_is_accepted(work: Path) -> None:
    scores = json.loads((work / "imp.json").read_text())["importances"]
    (work / "plain.json").write_text(json.dumps({"importances": scores}))
    result = _invoke(work, ("prune", "m.onnx", "-i", "plain.json", "-o", "out.onnx", "-q"))
    assert result.exit_code == 0, result.stderr
    assert (work / "out.onnx").stat().st_size < (work / "m.onnx").stat().st_size


def test_wrong_format_field_is_still_refused(work: Path) -> None:
    scores = json.loads((work / "imp.json").read_text())["importances"]
    (work / "f.json").write_text(json.dumps({"format": "other", "importances": scores}))
    result = _invoke(work, ("prune", "m.onnx", "-i", "f.json", "-o", "out.onnx", "-q"))
    assert result.exit_code == 2
    _assert_one_error_line(result.stderr, "'format' is 'other'")


def test_min_channels_above_every_group_says_nothing_was_removed(work: Path) -> None:
    result = _invoke(work, ("prune", "m.onnx", "-i", "imp.json", "-o", "out.onnx",
                            "--min-channels", "1000", "--report", "r.json"))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "warning: nothing was removed: --min-channels 1000" in result.stderr
    doc = json.loads((work / "r.json").read_text())
    assert doc["channels"]["removed"] == 0
    assert "--min-channels 1000 is at least the size of every prunable group" in doc[
        "nothing_removed"
    ]


def test_full_disk_names_the_users_path(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxrecede.io import stream as streamio

    def full(model, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(streamio, "write_model", full)
    before = _snapshot(work)
    result = _invoke(work, ("prune", "m.onnx", "-i", "imp.json", "-o", "out.onnx",
                            "--report", "r.json"))  # fmt: skip
    assert result.exit_code == 2
    _assert_one_error_line(result.stderr, "cannot write out.onnx: No space left on device")
    assert _snapshot(work) == before


def test_report_failure_leaves_no_model(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs are committed together: a report that cannot be written keeps the model out too."""
    from onnxrecede.io import outputs as _io

    real = _io.Outputs.write_text

    def failing(self, path, text):
        real(self, path, text)
        raise _io.output_error(path, OSError(28, "No space left on device"))

    monkeypatch.setattr(_io.Outputs, "write_text", failing)
    before = _snapshot(work)
    result = _invoke(work, ("prune", "m.onnx", "-i", "imp.json", "-o", "out.onnx",
                            "--report", "r.json"))  # fmt: skip
    assert result.exit_code == 2
    _assert_one_error_line(result.stderr, "cannot write r.json")
    assert _snapshot(work) == before


SITECUSTOMIZE = """
import os, signal
from onnxrecede.io import stream as streamio

# pytest-xdist workers ignore SIGINT, and an ignored signal stays ignored across exec: give the
# command Python's usual handler, as it has when started from a shell
signal.signal(signal.SIGINT, signal.default_int_handler)

_write = streamio.write_model

def write(*args, **kwargs):
    written = _write(*args, **kwargs)
    os.kill(os.getpid(), signal.{sig})
    return written

streamio.write_model = write
"""


@pytest.mark.parametrize(("sig", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_mid_write_leaves_nothing(work: Path, tmp_path_factory, sig: str, code: int):
    hook = tmp_path_factory.mktemp("hook")
    (hook / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE.format(sig=sig)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)])}
    before = _snapshot(work)
    proc = subprocess.run(
        [sys.executable, "-m", "onnxrecede_cli.main", "prune", "m.onnx", "-i", "imp.json",
         "-o", "out.onnx", "--report", "r.json", "-q"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    _assert_one_error_line(proc.stderr, "unfinished outputs were discarded")
    assert _snapshot(work) == before
    assert signal.Signals[sig]  # the case names a real signal
