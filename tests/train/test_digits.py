"""The digits data set: fixed split, value range, upsampling, and ``--data digits`` in the trainer."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

pytest.importorskip("sklearn")

from onnxrecede.data import digits  # noqa: E402
from onnxrecede.errors import InputError  # noqa: E402


def test_splits_are_fixed_disjoint_and_cover_the_set():
    idx = digits.split_indices()
    sizes = {k: len(v) for k, v in idx.items()}
    assert sizes == {"train": 1257, "val": 180, "test": 360}
    allidx = np.concatenate(list(idx.values()))
    assert sorted(allidx.tolist()) == list(range(1797))
    again = digits.split_indices()
    assert all(np.array_equal(idx[k], again[k]) for k in idx)


def test_split_arrays_shape_range_and_labels():
    from sklearn.datasets import load_digits

    raw = load_digits()
    for split in digits.SPLITS:
        x, y = digits.load_digits_split(split)
        assert x.dtype == np.float32 and x.shape == (len(y), 3, 32, 32)
        assert y.dtype == np.int64
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 0], x[:, 2])
        assert np.array_equal(y, raw.target[digits.split_indices()[split]])
        assert set(np.unique(y).tolist()) == set(range(10))
    # each 4x4 block of the upsampled image follows its source pixel (value / 16)
    x, _ = digits.load_digits_split("test")
    coarse = x[:, 0].reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4)).ravel()
    source = raw.images[digits.split_indices()["test"]].ravel() / 16
    assert np.corrcoef(coarse, source)[0, 1] > 0.95


def test_upsample_is_bilinear_with_half_pixel_centres():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    imgs = rng.random((3, 8, 8))
    ref = torch.nn.functional.interpolate(
        torch.tensor(imgs)[:, None], size=(32, 32), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    assert np.allclose(digits.upsample(imgs), ref, atol=1e-12)


def test_returned_arrays_are_copies():
    x, y = digits.load_digits_split("val")
    x[:] = 7.0
    y[:] = 3
    x2, y2 = digits.load_digits_split("val")
    assert x2.max() <= 1.0 and not np.all(y2 == 3)


def test_unknown_split_and_missing_sklearn(monkeypatch):
    with pytest.raises(InputError, match="unknown digits split 'dev'"):
        digits.load_digits_split("dev")  # type: ignore[arg-type]
    digits._all_digits.cache_clear()
    real_import = builtins.__import__

    def no_sklearn(name, *a, **kw):
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    try:
        with pytest.raises(InputError, match="needs scikit-learn"):
            digits.load_digits_split("train")
    finally:
        monkeypatch.setattr(builtins, "__import__", real_import)
        digits._all_digits.cache_clear()


def test_trainer_uses_the_fixed_splits_without_flips():
    torch = pytest.importorskip("torch")
    from onnxrecede.train.data import augment, load_data

    b = load_data("digits", val_fraction=0.3, seed=5)  # neither changes the digits split
    assert (len(b.train), len(b.val), len(b.test)) == (1257, 180, 360)
    assert b.num_classes == 10 and b.image_shape == (3, 32, 32) and not b.flip
    xv, yv = digits.load_digits_split("val")
    assert torch.equal(b.val.images, torch.from_numpy(xv))
    assert torch.equal(b.val.labels, torch.from_numpy(yv))
    assert len(b.mean) == 3 and all(s > 0 for s in b.std)
    # pad 0, no flip: augmentation is the identity on [0, 1] floats
    same = augment(b.val.images[:8], torch.Generator().manual_seed(0), pad=0, flip=False)
    assert torch.equal(same, b.val.images[:8])
    flipped = augment(b.val.images[:64], torch.Generator().manual_seed(0), pad=0, flip=True)
    assert not torch.equal(flipped, b.val.images[:64])
    with pytest.raises(InputError, match="takes no argument"):
        load_data("digits:5")


def test_trainer_learns_digits():
    """A few hundred steps of a narrow VGG on digits: far above chance on the test split."""
    torch = pytest.importorskip("torch")
    from onnxrecede.train.loop import TrainConfig, fit

    torch.set_num_threads(1)
    cfg = TrainConfig(
        model="vgg16", method="l1", data="digits", epochs=4, batch_size=64, lr=0.05,
        width=0.125, max_steps_per_epoch=20, device="cpu",
    )  # fmt: skip
    res = fit(cfg)
    assert res.test is not None and res.test["acc"] > 0.5
