"""apply_cut and `finetune --epochs 0`: the torch cut equals the ONNX prune it was read from.

Each case builds a small model with known low-importance channels (every other channel random),
exports it, prunes the export in ONNX below a threshold, carries the report back to torch with
apply_cut (through `onnxrecede finetune --epochs 0` in the CLI case), exports the cut model and
checks (1) which channels went, including the ResNets' residual streams and option-A pads, and
(2) that both ONNX models give the same outputs on the same inputs (atol 1e-4).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402
from onnxrecede_cli.main import main  # noqa: E402

import onnxrecede  # noqa: E402
from onnxrecede.errors import InputError  # noqa: E402
from onnxrecede.train.bounded_bn import swap_to_bounded  # noqa: E402
from onnxrecede.train.checkpoint import save_checkpoint  # noqa: E402
from onnxrecede.train.cut import apply_cut, apply_module_cut  # noqa: E402
from onnxrecede.train.export import export_checkpoint, export_model, importances_to_export  # noqa: E402
from onnxrecede.train.models import build_model  # noqa: E402

LOW = -8.0  # theta (rni) giving importance 3e-4; |gamma| 3e-4 for plain BN
THRESHOLD = 0.01
WIDTH = 0.25


def _low_channels(name: str, model) -> dict[str, list[int]]:
    """BN path -> channels made unimportant. ResNet: chains through both option-A pads."""
    if name == "vgg16":
        return {bn: list(range(0, i % 3 + 1)) for i, bn in enumerate(model.prune_candidates)}
    n = len(model.layer1)
    low = {"bn1": [0]}
    stream = {1: [0], 2: [2, 0], 3: [6, 4, 0]}  # width 0.25: 4 / 8 / 16, pads 2 and 4
    for s in (1, 2, 3):
        for j in range(n):
            low[f"layer{s}.{j}.bn2"] = stream[s]
            low[f"layer{s}.{j}.bn1"] = [j % 2, 2] if s > 1 else [j % 2]
    return low


def _model(name: str, method: str, seed: int = 0):
    torch.manual_seed(seed)
    m = build_model(name, 10, WIDTH)
    if method == "rni":
        swap_to_bounded(m)
    low = _low_channels(name, m)
    with torch.no_grad():
        for path, mod in m.named_modules():
            if not isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and not hasattr(
                mod, "theta"
            ):
                continue
            mod.running_mean.normal_(0, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
            if method == "rni":
                mod.theta.uniform_(-1.0, 3.0)
                mod.theta[low.get(path, [])] = LOW
            else:
                mod.weight.uniform_(0.1, 1.5)
                mod.bias.normal_(0, 0.3)
                mod.weight[low.get(path, [])] = 3e-4
    return m.eval(), low


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _x():
    return np.random.default_rng(1).normal(size=(3, 3, 32, 32)).astype(np.float32)


def _conv_of(bn: str) -> str:
    return bn[: -len("bn")] + "conv" if bn.endswith(".bn") else bn.replace("bn", "conv")


def _check_removed(name: str, original, cut, low: dict[str, list[int]]) -> None:
    """Every BN's conv lost exactly its low channels; pads shrank as the streams say."""
    for bn, chans in low.items():
        conv = _conv_of(bn)
        before = original.get_submodule(conv).out_channels
        after = cut.get_submodule(conv).out_channels
        assert after == before - len(chans), conv
        assert cut.get_submodule(bn).num_features == after
    if name.startswith("resnet"):
        assert (cut.layer2[0].shortcut.pad_lo, cut.layer2[0].shortcut.pad_hi) == (1, 2)
        assert (cut.layer3[0].shortcut.pad_lo, cut.layer3[0].shortcut.pad_hi) == (3, 4)
        assert cut.linear.in_features == 16 - 3
    else:
        assert cut.classifier.in_features == original.classifier.in_features - len(
            low[original.prune_candidates[-1]]
        )


def _case(tmp_path, name: str, method: str, exporter: str) -> None:
    model, low = _model(name, method)
    onnx_path, imp_path = tmp_path / "model.onnx", tmp_path / "imp.json"
    export_model(
        model,
        onnx_path,
        imp_path,
        importances_to_export(model, method, all_layers=True),
        exporter=exporter,
    )
    pruned, report = onnxrecede.prune(
        onnx_path, imp_path, threshold=THRESHOLD, min_channels=1, verify=False
    )
    node_modules = json.loads(imp_path.read_text())["producer"]["node_modules"]
    removed = {node_modules[k]: v for k, v in report.removed_channels.items()}
    assert removed == {_conv_of(bn): sorted(v) for bn, v in low.items()}
    onnxrecede.save_model(pruned, tmp_path / "pruned.onnx")
    cut = apply_cut(copy.deepcopy(model), report.to_dict(), imp_path)
    _check_removed(name, model, cut, low)
    export_model(
        cut,
        tmp_path / "cut.onnx",
        tmp_path / "cut.json",
        importances_to_export(cut, method),
        exporter=exporter,
    )
    x = _x()
    want = _run(tmp_path / "pruned.onnx", x)
    assert np.allclose(_run(tmp_path / "cut.onnx", x), want, atol=1e-4)
    with torch.no_grad():
        assert np.allclose(cut(torch.from_numpy(x)).numpy(), want, atol=1e-4)
    if method == "l1":  # plain BN: removed channels output relu(beta) != 0, so a cut shows
        assert not np.allclose(_run(onnx_path, x), want, atol=1e-4)


@pytest.mark.parametrize(
    "name,method,exporter",
    [("vgg16", "rni", "dynamo"), ("resnet56", "l1", "torchscript")],
)
def test_apply_cut_equals_the_onnx_prune(tmp_path, name, method, exporter):
    torch.set_num_threads(1)
    _case(tmp_path, name, method, exporter)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rni", "l1"])
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("name", ["vgg16", "resnet56", "resnet20"])
def test_apply_cut_equals_the_onnx_prune_full_matrix(tmp_path, name, method, exporter):
    torch.set_num_threads(1)
    _case(tmp_path, name, method, exporter)


def _checkpoint(tmp_path, name: str, method: str):
    model, low = _model(name, method)
    arch = {"model": name, "num_classes": 10, "width": WIDTH, "bn": "bounded"}
    if method != "rni":
        arch["bn"] = "plain"
    ckpt = tmp_path / "train" / "best.pt"
    ckpt.parent.mkdir()
    save_checkpoint(
        ckpt,
        {
            "arch": arch,
            "method": method,
            "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
            "config": {"data": "synthetic:20", "seed": 0},
            "epoch": 1,
            "model": model.state_dict(),
            "val_acc": 0.0,
        },
    )
    return ckpt, model, low


@pytest.mark.parametrize("exporter", ["dynamo"])
def test_finetune_epochs_0_cli_equals_the_onnx_prune_resnet20(tmp_path, exporter):
    """train checkpoint -> export -> prune --report -> finetune --epochs 0: same outputs."""
    torch.set_num_threads(1)
    ckpt, model, low = _checkpoint(tmp_path, "resnet20", "rni")
    d = ckpt.parent
    runner = CliRunner()
    r = runner.invoke(
        main,
        ["export", str(ckpt), "-o", str(d / "model.onnx"), "--importances", str(d / "imp.json"),
         "--exporter", exporter, "--all-layers", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    imp_before = (d / "imp.json").read_bytes()
    r = runner.invoke(
        main,
        ["prune", str(d / "model.onnx"), "--importances", str(d / "imp.json"),
         "-o", str(d / "pruned.onnx"), "--threshold", str(THRESHOLD), "--min-channels", "1",
         "--report", str(d / "report.json")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = tmp_path / "ft"
    r = runner.invoke(
        main,
        ["finetune", str(ckpt), "--cut", str(d / "report.json"), "--out", str(out),
         "--epochs", "0", "--exporter", exporter, "--device", "cpu", "-q", "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["channels_removed"] == sum(len(v) for v in low.values())
    assert (d / "imp.json").read_bytes() == imp_before  # inputs untouched
    assert {p.name for p in out.iterdir()} >= {"best.pt", "log.json", "model.onnx", "imp.json"}
    log = json.loads((out / "log.json").read_text())
    assert log["finetune"]["removed"] == summary["channels_removed"]
    assert log["arch"]["cut"]["layer3.0.conv2"] == [0, 4, 6]
    x = _x()
    assert np.allclose(_run(out / "model.onnx", x), _run(d / "pruned.onnx", x), atol=1e-4)
    # the fine-tune checkpoint rebuilds the cut model (export reads arch["cut"])
    res = export_checkpoint(
        out / "best.pt", tmp_path / "again.onnx", tmp_path / "again.json", exporter="torchscript"
    )
    assert np.allclose(_run(res.onnx_path, x), _run(d / "pruned.onnx", x), atol=1e-4)
    _check_removed("resnet20", model, apply_cut(copy.deepcopy(model), d / "report.json",
                                               d / "imp.json"), low)  # fmt: skip


def test_finetune_trains_resumes_and_cuts_again(tmp_path):
    """A short fine-tune trains the cut model (regulariser off); resume continues it; a second
    cut of the fine-tuned export composes with the first."""
    torch.set_num_threads(1)
    from onnxrecede.train.checkpoint import load_checkpoint
    from onnxrecede.train.finetune import finetune, finetune_config

    ckpt, model, low = _checkpoint(tmp_path, "vgg16", "rni")
    d = ckpt.parent
    export_checkpoint(
        ckpt, d / "model.onnx", d / "imp.json", all_layers=True, exporter="torchscript"
    )
    _, report = onnxrecede.prune(
        d / "model.onnx", d / "imp.json", threshold=THRESHOLD, min_channels=1, verify=False
    )
    out = tmp_path / "ft"
    kw = dict(epochs=2, max_steps_per_epoch=1, batch_size=8, device="cpu", out=str(out))
    cfg = finetune_config(load_checkpoint(ckpt), **kw)
    assert cfg.strength == 0.0 and cfg.method == "rni" and cfg.lr == 0.1
    res = finetune(ckpt, report.to_dict(), d / "imp.json", cfg)
    assert len(res.history) == 2 and all(h["reg"] == 0.0 for h in res.history)
    first = load_checkpoint(out / "last.pt")
    assert first["epoch"] == 2
    # resume: two more epochs from last.pt
    cfg2 = finetune_config(load_checkpoint(ckpt), **{**kw, "epochs": 2, "resume": True})
    res2 = finetune(ckpt, report.to_dict(), d / "imp.json", cfg2)
    assert len(res2.history) == 2  # already done: nothing more, history kept
    # a second cut of the fine-tuned model, composed into the original's channel indices
    export_checkpoint(
        out / "best.pt",
        out / "model.onnx",
        out / "imp.json",
        all_layers=True,
        exporter="torchscript",
    )
    _, report2 = onnxrecede.prune(
        out / "model.onnx", out / "imp.json", ratio=0.3, min_channels=1, verify=False
    )
    cfg3 = finetune_config(load_checkpoint(out / "best.pt"), **{**kw, "epochs": 0})
    cfg3.out = str(tmp_path / "ft2")
    res3 = finetune(out / "best.pt", report2.to_dict(), out / "imp.json", cfg3)
    total = sum(len(v) for v in res3.arch["cut"].values())
    assert total == report.channels_removed + report2.channels_removed
    for path, removed in res3.arch["cut"].items():
        assert set(low.get(path[: -len("conv")] + "bn", [])) <= set(removed)
    assert {_conv_of(bn) for bn in low} <= set(res3.arch["cut"])


def test_bad_cuts_are_refused_and_leave_the_model_alone(tmp_path):
    model, _ = _model("resnet20", "rni")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # one residual stream cut unevenly: its producers must lose the same channels
    with pytest.raises(InputError, match="coupled group unevenly"):
        apply_module_cut(model, {"layer1.0.conv2": [1]})
    # a shortcut passing on channels cut differently from the stream feeding it
    with pytest.raises(InputError, match="option-A shortcut 'layer2.0.shortcut'"):
        apply_module_cut(model, {f"layer2.{j}.conv2": [3] for j in range(3)})
    with pytest.raises(InputError, match="outside 0..3"):
        apply_module_cut(model, {"layer1.0.conv1": [7]})
    with pytest.raises(InputError, match="every channel"):
        apply_module_cut(model, {"layer1.0.conv1": [0, 1, 2, 3]})
    with pytest.raises(InputError, match="cannot be removed on their own"):
        apply_module_cut(model, {"linear": [0]})
    with pytest.raises(InputError, match="key mapping does not know"):
        apply_cut(model, {"removed_channels": {"node_Conv_9": [0]}}, {"node_Conv_1": "conv1"})
    with pytest.raises(InputError, match="no 'node_modules'"):
        apply_cut(model, {"removed_channels": {}}, {"producer": {}, "importances": {}})
    with pytest.raises(InputError, match="no 'removed_channels'"):
        apply_cut(model, {"policy": {}}, {"a": "conv1"})
    with pytest.raises(InputError, match="prune report not found"):
        apply_cut(model, tmp_path / "nope.json", {"a": "conv1"})
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.layer2[0].shortcut.pad_lo == 2


def test_finetune_cli_errors(tmp_path):
    ckpt, _, _ = _checkpoint(tmp_path, "resnet20", "rni")
    runner = CliRunner()
    (tmp_path / "r.json").write_text(json.dumps({"removed_channels": {}}))
    r = runner.invoke(
        main,
        ["finetune", str(ckpt), "--cut", str(tmp_path / "r.json"), "--out", str(tmp_path / "o")],
    )
    assert r.exit_code == 2 and "importances file not found" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(
        main,
        ["finetune", str(ckpt), "--cut", str(tmp_path / "r.json"), "--out", str(ckpt.parent)],
    )
    assert r.exit_code == 2 and "new folder" in r.output
