"""Export: plain ONNX, one file, outputs equal to torch, every importances key resolves."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import onnx_ir as ir  # noqa: E402

from onnxrecede.errors import InputError  # noqa: E402
from onnxrecede.importance.file_format import load_importances, resolve_importances  # noqa: E402
from onnxrecede.train.bounded_bn import swap_to_bounded  # noqa: E402
from onnxrecede.train.export import export_checkpoint, export_model, importances_to_export  # noqa: E402
from onnxrecede.train.models import build_model  # noqa: E402

PLAIN_OPS = {
    "Conv",
    "BatchNormalization",
    "Relu",
    "MaxPool",
    "Add",
    "Pad",
    "Flatten",
    "Reshape",
    "Gemm",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
}


def _trained_like(name: str, method: str, seed: int = 0):
    """A model with non-trivial BN parameters and statistics (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    model = build_model(name, width=0.25)
    if method == "rni":
        swap_to_bounded(model)
    for m in model.modules():
        if hasattr(m, "running_mean") and m.running_mean is not None:
            n = m.running_mean.numel()
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            if hasattr(m, "theta"):
                m.theta.data.copy_(torch.randn(n, generator=gen) * 3)
            else:
                m.weight.data.copy_(torch.randn(n, generator=gen))
                m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def _check(tmp_path, model, method, exporter, all_layers=False):
    onnx_path, imp_path = tmp_path / "m.onnx", tmp_path / "imp.json"
    imps = importances_to_export(model, method, all_layers)
    res = export_model(model, onnx_path, imp_path, imps, exporter=exporter)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imp.json", "m.onnx"]  # one file
    proto = onnx.load(str(onnx_path))
    assert {n.op_type for n in proto.graph.node} <= PLAIN_OPS
    resolved = resolve_importances(ir.load(onnx_path), load_importances(imp_path))
    assert len(resolved) == len(imps) == len(res.keys)
    assert {r.node.op_type for r in resolved.values()} == {"Conv"}
    loaded = load_importances(imp_path)
    for bn, key in res.keys.items():
        assert np.allclose(loaded.scores[key], imps[bn].numpy(), atol=1e-7)
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert np.allclose(got, want, atol=1e-4, rtol=1e-4)
    return proto, res


@pytest.mark.parametrize(
    ("method", "exporter"), [("rni", "dynamo"), ("rni", "torchscript"), ("l1", "torchscript")]
)
def test_vgg_export_both_exporters(tmp_path, method, exporter):
    model = _trained_like("vgg16", method)
    proto, res = _check(tmp_path, model, method, exporter)
    assert len(res.keys) == 13
    assert sum(n.op_type == "BatchNormalization" for n in proto.graph.node) == 0  # folded


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_resnet_export_all_layers(tmp_path, exporter):
    model = _trained_like("resnet20", "rni")
    proto, res = _check(tmp_path, model, "rni", exporter, all_layers=True)
    assert len(res.keys) == 19  # stem + 2 per block
    pads = [n for n in proto.graph.node if n.op_type == "Pad"]
    assert len(pads) == 2  # the two option-A shortcuts, with constant pads
    inits = {t.name for t in proto.graph.initializer}
    consts = {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    assert all(p.input[1] in inits | consts for p in pads)


def test_resnet_default_keys_are_the_authors_candidates():
    model = _trained_like("resnet20", "ucs")
    assert sorted(importances_to_export(model, "ucs")) == sorted(
        f"layer{i}.{j}.bn1" for i in (1, 2, 3) for j in range(3)
    )


def test_unfolded_batchnorm_keys_the_conv(tmp_path):
    """TorchScript with training=PRESERVE keeps BatchNormalization nodes: keys still name Convs."""
    from onnxrecede.train.export import choose_keys, producer_of_bn

    model = _trained_like("vgg16", "l1")
    path = tmp_path / "keep_bn.onnx"
    torch.onnx.export(
        model, (torch.randn(1, 3, 32, 32),), str(path), dynamo=False, do_constant_folding=False
    )
    g = ir.load(path)
    assert any(n.op_type == "BatchNormalization" for n in g.graph)
    keys = choose_keys(g, model.prune_candidates, producer_of_bn(model, torch.randn(1, 3, 32, 32)))
    assert all(k.endswith("/conv/Conv") for k in keys.values())


def test_export_checkpoint_errors(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable onnxrecede checkpoint"):
        export_checkpoint(bad, tmp_path / "m.onnx", tmp_path / "i.json")
    with pytest.raises(InputError, match="checkpoint not found"):
        export_checkpoint(tmp_path / "nope.pt", tmp_path / "m.onnx", tmp_path / "i.json")
