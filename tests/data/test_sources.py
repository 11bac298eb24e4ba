"""Sample sources: .npz, ImageFolder, CIFAR python folders, digits; their errors."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxrecede.data import sources as data
from onnxrecede.data.sources import ImageOptions, TensorSpec, input_specs, open_samples
from onnxrecede.errors import InputError
from tests.models.small import small_cnn

F32 = np.dtype(np.float32)


def _collect(samples: data.Samples, batch: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    batches = list(samples.batches(batch))
    feeds = {n: np.concatenate([b.feeds[n] for b in batches]) for n in samples.input_names}
    labels = None
    if samples.has_labels:
        labels = np.concatenate([b.labels for b in batches if b.labels is not None])
    return feeds, labels


# ----------------------------------------------------------------------------- .npz


def test_npz_single_input_x_and_labels(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(10, 3, 8, 8))  # float64: cast to the model's type
    y = np.arange(10) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    specs = input_specs(small_cnn())
    samples = open_samples(tmp_path / "d.npz", specs)
    assert len(samples) == 10 and samples.has_labels
    batches = list(samples.batches(4))
    assert [len(b.labels) for b in batches] == [4, 4, 2]  # type: ignore[arg-type]
    assert batches[0].feeds["input"].dtype == np.float32
    feeds, labels = _collect(samples, 4)
    np.testing.assert_allclose(feeds["input"], x.astype(np.float32))
    assert labels is not None and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, y)


def test_npz_one_array_per_input_name(tmp_path: Path) -> None:
    a, b = np.ones((5, 2), np.float32), np.zeros((5, 4), np.int64)
    np.savez(tmp_path / "d.npz", a=a, b=b)
    samples = open_samples(str(tmp_path / "d.npz"), ["a", "b"])
    assert not samples.has_labels
    batch = next(samples.batches(8))
    assert set(batch.feeds) == {"a", "b"} and batch.labels is None
    np.testing.assert_array_equal(batch.feeds["b"], b)


def test_npz_limit_is_a_seeded_subset_in_order(tmp_path: Path) -> None:
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(100))
    first = open_samples(tmp_path / "d.npz", ["x_in"], limit=10)
    second = open_samples(tmp_path / "d.npz", ["x_in"], limit=10)
    feeds, labels = _collect(first, 3)
    assert len(first) == 10
    np.testing.assert_array_equal(feeds["x_in"][:, 0], labels)  # labels follow their samples
    assert np.all(np.diff(labels) > 0) and labels.max() > 50  # spread, kept in order
    np.testing.assert_array_equal(labels, second.labels)


def test_npz_wrong_keys_name_both_sides(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=np.ones((2, 3)), y=np.zeros(2, np.int64))
    with pytest.raises(
        InputError, match=r"holds arrays images, but the model's inputs are 'input'"
    ):
        open_samples(tmp_path / "d.npz", ["input"])


def test_npz_shape_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.ones((2, 3, 4, 4), np.float32))
    with pytest.raises(InputError, match=r"shape 3x4x4, the model expects \?x3x8x8 float32"):
        open_samples(tmp_path / "d.npz", input_specs(small_cnn()))


def test_npz_dtype_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.ones((2, 3, 8, 8), np.int32))
    with pytest.raises(InputError, match=r"is int32, the model expects float32"):
        open_samples(tmp_path / "d.npz", input_specs(small_cnn()))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.ones((3, 2)), "y": np.ones(2, np.int64)}, r"labels 'y' must be 3 integers"),
        ({"x": np.ones((3, 2)), "y": np.ones(3)}, r"labels 'y' must be 3 integers"),
        ({"a": np.ones((3, 2)), "b": np.ones((4, 2))}, r"same non-zero number of samples"),
    ],
)
def test_npz_inconsistent(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    names = ["a", "b"] if "a" in arrays else ["input"]
    with pytest.raises(InputError, match=message):
        open_samples(tmp_path / "d.npz", names)


def test_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"data not found: .*nope.npz \(give a .npz file"):
        open_samples(tmp_path / "nope.npz", ["input"])
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(InputError, match=r"cannot read it as a .npz file"):
        open_samples(tmp_path / "bad.npz", ["input"])


# ----------------------------------------------------------------------------- images


def _write_folder(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> dict[str, list[Path]]:
    from PIL import Image

    rng = np.random.default_rng(1)
    written: dict[str, list[Path]] = {}
    for cls, shapes in sizes.items():
        (root / cls).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            path = root / cls / f"{i}.png"
            Image.fromarray(arr).save(path)
            written.setdefault(cls, []).append(path)
    (root / next(iter(sizes)) / "notes.txt").write_text("ignored")
    return written


def test_image_folder_labels_and_preprocessing(tmp_path: Path) -> None:
    from PIL import Image

    files = _write_folder(tmp_path, {"dog": [(8, 8)] * 2, "cat": [(8, 8)] * 3})
    opts = ImageOptions(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), channel_order="bgr")
    samples = open_samples(tmp_path, input_specs(small_cnn()), image=opts)
    feeds, labels = _collect(samples, 2)
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1])  # cat=0, dog=1 (sorted)
    rgb = np.asarray(Image.open(files["cat"][0]), dtype=np.float32) / 255
    want = ((rgb[..., ::-1] - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.5]).transpose(2, 0, 1)
    np.testing.assert_allclose(feeds["input"][0], want, rtol=1e-5, atol=1e-5)


def test_image_folder_resize_crop_and_layout(tmp_path: Path) -> None:
    _write_folder(tmp_path, {"a": [(12, 16), (16, 12)], "cat": [(8, 8)]})
    nhwc = {"input": TensorSpec((None, 6, 6, 3), F32)}
    samples = open_samples(tmp_path, nhwc, image=ImageOptions(scale=1.0))
    batch = next(samples.batches(8))
    assert batch.feeds["input"].shape == (3, 6, 6, 3)
    assert batch.feeds["input"].max() > 1.5  # scale 1: values stay 0..255
    gray = {"input": TensorSpec((None, 1, 4, 5), F32)}
    batch = next(open_samples(tmp_path, gray, image=ImageOptions(resize=7)).batches(8))
    assert batch.feeds["input"].shape == (3, 1, 4, 5)


def test_image_folder_reads_one_batch_at_a_time(tmp_path: Path, monkeypatch) -> None:
    _write_folder(tmp_path, {"a": [(8, 8)] * 5, "cat": [(8, 8)] * 2})
    reads: list[Path] = []
    original = data._read_image_file
    monkeypatch.setattr(
        data, "_read_image_file", lambda p, plan: reads.append(p) or original(p, plan)
    )
    samples = open_samples(tmp_path, input_specs(small_cnn()))
    assert reads == []
    it = samples.batches(3)
    next(it)
    assert len(reads) == 3
    next(it)
    assert len(reads) == 6


def test_image_folder_errors(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(InputError, match=r"no images in class sub-folders of .*empty"):
        open_samples(tmp_path / "empty", ["input"])
    _write_folder(tmp_path / "mixed", {"a": [(8, 8), (9, 9)]})
    with pytest.raises(InputError, match=r"images of different sizes"):
        next(open_samples(tmp_path / "mixed", ["input"]).batches(4))
    with pytest.raises(InputError, match=r"feeds a model with one input, but this model has 2"):
        open_samples(tmp_path / "mixed", ["a", "b"])
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(InputError, match=r"needs Pillow: pip install 'onnxrecede\[images\]'"):
        open_samples(tmp_path / "mixed", ["input"])


# ----------------------------------------------------------------------------- CIFAR


def _write_cifar10(root: Path) -> tuple[np.ndarray, np.ndarray]:
    root.mkdir()
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    y = [int(v) for v in rng.integers(0, 10, 6)]
    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": x, b"labels": y}, f)
    return x.reshape(-1, 3, 32, 32), np.asarray(y)


def test_cifar10_test_split(tmp_path: Path) -> None:
    x, y = _write_cifar10(tmp_path / "c10")
    spec = {"input": TensorSpec((None, 3, 32, 32), F32)}
    opts = ImageOptions(mean=(0.5,), std=(0.25,))
    feeds, labels = _collect(open_samples(f"cifar10:{tmp_path / 'c10'}", spec, image=opts), 4)
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_allclose(feeds["input"], (x / 255 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match=r"CIFAR file not found: .*data_batch_1"):
        open_samples(f"cifar10:{tmp_path / 'c10'}:train", spec)


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    root = tmp_path / "evil"
    root.mkdir()
    with open(root / "test_batch", "wb") as f:
        pickle.dump({"data": print}, f)  # a global other than numpy arrays
    with pytest.raises(InputError, match=r"not a CIFAR python-format pickle: refusing to load"):
        open_samples(f"cifar10:{root}", ["input"])


# ----------------------------------------------------------------------------- digits


def test_digits_split() -> None:
    pytest.importorskip("sklearn")
    from onnxrecede.data.digits import load_digits_split

    spec = {"input": TensorSpec((None, 3, 32, 32), F32)}
    samples = open_samples("digits:test", spec, limit=50)
    x, y = load_digits_split("test")
    feeds, labels = _collect(samples, 16)
    assert len(samples) == 50 and feeds["input"].shape == (50, 3, 32, 32)
    idx = [int(np.flatnonzero((x == row).all(axis=(1, 2, 3)))[0]) for row in feeds["input"][:3]]
    np.testing.assert_array_equal(labels[:3], y[idx])
    norm = open_samples("digits:test", spec, image=ImageOptions(mean=(0.5,), std=(0.25,)))
    np.testing.assert_allclose(
        next(norm.batches(4)).feeds["input"], (x[:4] - 0.5) / 0.25, atol=1e-6
    )
    with pytest.raises(InputError, match=r"digits:dev: the split must be train, val or test"):
        open_samples("digits:dev", spec)
