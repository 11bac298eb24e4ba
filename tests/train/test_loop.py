"""The training loop: learning, determinism, resume, log, custom models."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from onnxrecede.errors import InputError  # noqa: E402
from onnxrecede.train.bounded_bn import bounded_modules  # noqa: E402
from onnxrecede.train.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from onnxrecede.train.data import load_data  # noqa: E402
from onnxrecede.train.loop import TrainConfig, evaluate, fit  # noqa: E402
from onnxrecede.train.models import build_model  # noqa: E402

TINY = dict(
    model="vgg16",
    width=0.125,
    data="synthetic:240",
    batch_size=32,
    lr=0.05,
    milestones=(),
    augment=False,
)


@pytest.fixture(scope="module")
def bundle():
    return load_data("synthetic:240", 0.1, 0)


def test_a_few_steps_lower_the_loss(bundle):
    cfg = TrainConfig(**{**TINY, "lr": 0.02}, method="l1", epochs=3, seed=0)
    torch.manual_seed(cfg.seed)  # the initial weights fit() draws
    before = evaluate(build_model("vgg16", 10, 0.125), bundle.train, bundle, torch.device("cpu"))
    res = fit(cfg, bundle=bundle)
    after = evaluate(res.model, bundle.train, bundle, torch.device("cpu"))
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"] - 0.05
    assert after["loss"] < before["loss"]


def test_seeded_run_is_deterministic_and_resume_continues_it(tmp_path, bundle):
    base = dict(TINY, method="rni", epochs=2, max_steps_per_epoch=3, strength=1e-2, seed=3)
    full = fit(TrainConfig(**base, out=str(tmp_path / "a")), bundle=bundle)

    class Stop(Exception):
        pass

    def stop_after_first_epoch(ev):
        if ev["phase"] == "epoch" and ev["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        fit(
            TrainConfig(**base, out=str(tmp_path / "b")),
            bundle=bundle,
            progress=stop_after_first_epoch,
        )
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed = fit(TrainConfig(**base, out=str(tmp_path / "b"), resume=True), bundle=bundle)
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]


def test_resume_refuses_changed_settings(tmp_path, bundle):
    base = dict(TINY, method="l1", epochs=1, max_steps_per_epoch=1)
    fit(TrainConfig(**base, out=str(tmp_path)), bundle=bundle)
    with pytest.raises(InputError, match="settings changed.*width"):
        fit(TrainConfig(**{**base, "width": 0.25}, out=str(tmp_path), resume=True), bundle=bundle)


def test_log_checkpoints_and_best_on_validation(tmp_path, bundle):
    cfg = TrainConfig(**TINY, method="rni", epochs=2, max_steps_per_epoch=2, out=str(tmp_path))
    res = fit(cfg, bundle=bundle)
    doc = json.loads((tmp_path / "log.json").read_text())
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    for e in doc["epochs"]:
        assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "reg"} <= e.keys()
        hist = e["importance_histogram"]
        assert (
            sum(hist["counts"])
            == hist["n"]
            == sum(m.num_features for _, m in bounded_modules(res.model))
        )
        assert hist["edges"][0] == 0.0 and hist["edges"][-1] == 1.0
    best = max(doc["epochs"], key=lambda e: e["val_acc"])
    assert doc["best_epoch"] == best["epoch"] == res.best_epoch
    assert doc["test"] is not None and 0.0 <= doc["test"]["acc"] <= 1.0
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["epoch"] == res.best_epoch and ckpt["arch"]["bn"] == "bounded"
    rebuilt = model_from_checkpoint(ckpt)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), res.model(x), atol=1e-6)


def test_any_module_trains_through_the_swap(bundle):
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    res = fit(
        TrainConfig(**{**TINY, "method": "rni", "epochs": 1, "max_steps_per_epoch": 2}),
        model=net,
        bundle=bundle,
    )
    ((name, bn),) = bounded_modules(res.model)
    assert name == "1" and bn.theta.shape == (8,)
    assert res.history[0]["reg"] > 0  # the receding regulariser acted on the swapped layer
    assert sum(res.history[0]["importance_histogram"]["counts"]) == 8


@pytest.mark.parametrize(
    ("change", "msg"),
    [
        ({"method": "ucs", "strength": 1e-3}, "ucs trains without"),
        ({"epochs": 0}, "--epochs"),
        ({"lr": -1.0}, "--lr"),
        ({"device": "cuda:7"}, "cuda|CUDA"),
    ],
)
def test_config_errors(change, msg, bundle):
    if change.get("device") and torch.cuda.is_available():
        pytest.skip("a CUDA device exists")
    with pytest.raises(InputError, match=msg):
        fit(TrainConfig(**{**TINY, "epochs": 1, **change}), bundle=bundle)


def test_regulariser_warmup_switches_it_on_after_n_epochs(bundle):
    cfg = TrainConfig(
        **TINY, method="rni", epochs=3, max_steps_per_epoch=1, strength=1e-2, reg_warmup=2
    )
    res = fit(cfg, bundle=bundle)
    assert [h["reg"] > 0 for h in res.history] == [False, False, True]
    with pytest.raises(InputError, match="--reg-warmup must be >= 0"):
        fit(TrainConfig(**TINY, epochs=1, reg_warmup=-1), bundle=bundle)


def test_bimodality_coefficient():
    from onnxrecede.train.loop import bimodality_coefficient

    two = torch.cat([torch.full((50,), 0.01), torch.full((50,), 0.99)])
    one = torch.erfinv(torch.linspace(-0.98, 0.98, 101))  # normal-shaped: BC near 1/3
    assert bimodality_coefficient(two) > 0.9 > 5 / 9 > bimodality_coefficient(one)
    assert bimodality_coefficient(torch.ones(10)) == 0.0
