"""Data sources: synthetic set, CIFAR pickles, image folders, splits and augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnxrecede.errors import InputError  # noqa: E402
from onnxrecede.train.data import augment, load_data, num_train_batches, train_batches  # noqa: E402
from onnxrecede.train.synthetic import make_synthetic  # noqa: E402


def test_synthetic_is_deterministic_cifar_shaped_and_balanced():
    x1, y1 = make_synthetic(200, seed=5)
    x2, y2 = make_synthetic(200, seed=5)
    assert x1.shape == (200, 3, 32, 32) and x1.dtype == np.uint8
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.bincount(y1, minlength=10).tolist() == [20] * 10
    x3, _ = make_synthetic(200, seed=6)
    assert not np.array_equal(x1, x3)
    assert 20 < x1.std() < 90  # neither blank nor saturated


def test_synthetic_is_not_linearly_separable_from_pixels():
    x, y = make_synthetic(1200, seed=0)
    xf = x.reshape(len(x), -1).astype(np.float64) / 255
    xf -= xf[:1000].mean(0)
    w = np.linalg.lstsq(np.c_[xf[:1000], np.ones(1000)], np.eye(10)[y[:1000]], rcond=None)[0]
    acc = ((np.c_[xf[1000:], np.ones(200)] @ w).argmax(1) == y[1000:]).mean()
    assert acc < 0.25  # chance is 0.1: the classes need translation-invariant filters


def test_validation_split_is_disjoint_and_seeded():
    b = load_data("synthetic:100", val_fraction=0.2, seed=1)
    assert len(b.train) == 80 and len(b.val) == 20 and b.test is not None and len(b.test) == 20
    train_rows = {bytes(r) for r in b.train.images.numpy().reshape(80, -1)}
    assert not any(bytes(r) in train_rows for r in b.val.images.numpy().reshape(20, -1))
    b2 = load_data("synthetic:100", val_fraction=0.2, seed=1)
    assert torch.equal(b.val.images, b2.val.images)


def _write_cifar(root, n_per_file, classes, cifar100=False):
    rng = np.random.default_rng(0)
    root.mkdir()

    def dump(name, n, key):
        d = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            key: rng.integers(0, classes, n).tolist(),
            b"batch_label": b"x",
        }
        with open(root / name, "wb") as f:
            pickle.dump(d, f)

    if cifar100:
        dump("train", n_per_file * 5, b"fine_labels")
        dump("test", n_per_file, b"fine_labels")
    else:
        for i in range(1, 6):
            dump(f"data_batch_{i}", n_per_file, b"labels")
        dump("test_batch", n_per_file, b"labels")


def test_cifar10_and_100_from_local_pickles(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py", 8, 10)
    b = load_data(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", val_fraction=0.1)
    assert len(b.train) + len(b.val) == 40 and b.test is not None and len(b.test) == 8
    assert b.num_classes == 10 and b.mean == (0.4914, 0.4822, 0.4465)
    assert b.image_shape == (3, 32, 32)
    _write_cifar(tmp_path / "cifar-100-python", 8, 100, cifar100=True)
    b = load_data(f"cifar100:{tmp_path / 'cifar-100-python'}")
    assert b.num_classes == 100 and len(b.train) + len(b.val) == 40


def test_cifar_pickle_cannot_run_code(tmp_path):
    root = tmp_path / "c"
    _write_cifar(root, 4, 10)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    with open(root / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(InputError, match="refusing to load builtins.print"):
        load_data(f"cifar10:{root}")


@pytest.mark.parametrize(
    ("spec", "msg"),
    [
        ("cifar10:/nonexistent/dir", "CIFAR folder not found"),
        ("imagenet", "unknown data source"),
        ("synthetic:abc", "integer"),
        ("folder:/nonexistent", "image folder not found"),
    ],
)
def test_bad_data_specs(spec, msg):
    with pytest.raises(InputError, match=msg):
        load_data(spec)


def test_image_folder_with_png_and_npy(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                if i % 2:
                    np.save(d / f"{i}.npy", img.transpose(2, 0, 1))
                else:
                    pil.fromarray(img).save(d / f"{i}.png")
    b = load_data(f"folder:{tmp_path}", val_fraction=0.25)
    assert b.num_classes == 2 and b.image_shape == (3, 32, 32)
    assert len(b.train) + len(b.val) == 12 and b.test is not None and len(b.test) == 4


def test_augment_crops_and_flips_deterministically():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8).to(torch.uint8)
    a1 = augment(x, torch.Generator().manual_seed(0), pad=2)
    a2 = augment(x, torch.Generator().manual_seed(0), pad=2)
    assert a1.shape == (2, 3, 8, 8) and torch.equal(a1, a2)
    same = augment(x, torch.Generator().manual_seed(0), pad=0)
    xf = x.float() / 255
    for i in range(2):  # without padding, each image is itself or its mirror
        assert torch.equal(same[i], xf[i]) or torch.equal(same[i], xf[i].flip(-1))


def test_sharded_batches_cover_the_global_batch():
    from onnxrecede.train.data import ImageSet

    data = ImageSet(torch.zeros(10, 3, 2, 2, dtype=torch.uint8), torch.arange(10))
    full = list(train_batches(data, 4, torch.Generator().manual_seed(0)))
    r0 = list(train_batches(data, 4, torch.Generator().manual_seed(0), rank=0, world=2))
    r1 = list(train_batches(data, 4, torch.Generator().manual_seed(0), rank=1, world=2))
    assert len(full) == num_train_batches(10, 4) == 3
    assert len(r0) == len(r1) == num_train_batches(10, 4, world=2) == 2
    for f, a, b in zip(full, r0, r1, strict=False):
        assert sorted(torch.cat([a, b]).tolist()) == sorted(f.tolist())


def test_no_flips_where_a_flip_changes_the_class():
    """A mirrored grating of orientation k*pi/5 has orientation (5-k)*pi/5: another class."""
    assert load_data("synthetic:20").flip is False
    x, y = make_synthetic(400, seed=3)
    from onnxrecede.train.synthetic import _class_params

    angle, _ = _class_params(np.arange(10))
    mirrored = (np.pi - angle) % np.pi
    assert not np.allclose(mirrored[1:5], angle[1:5])  # classes 1..4 turn into 4..1
