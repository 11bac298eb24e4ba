"""Sample data for calibration and evaluation: numpy only (Pillow reads image files).

Sources accepted by :func:`open_samples` (the ``--calibration`` and ``--data`` values):

1. ``FILE.npz``: one array per model input, keyed by the input's name (or ``x`` for a
   single-input model), samples on the first axis; optional integer labels under ``y`` (or
   ``labels``). Arrays are fed as stored; floating arrays are cast to the model's float type.
2. ``DIR`` or ``folder:DIR``: ImageFolder layout, ``DIR/CLASS/*.png|jpg|...|npy``; the class
   folders sorted by name are the labels 0..K-1. Images are read lazily, one batch at a time,
   and preprocessed as :class:`ImageOptions` says. Needs Pillow (the ``[images]`` extra).
3. ``cifar10:DIR`` / ``cifar100:DIR`` (test split; ``cifar10:DIR:train`` for the training
   batches): a local CIFAR folder in the python pickle format, read by a parser of the pickle
   opcodes that builds no numpy object but integer arrays from raw bytes, so a crafted file
   cannot run code or plant a pointer. Preprocessed like images.
4. ``digits:train|val|test``: scikit-learn's bundled 8x8 digits as 3x32x32 float images in
   [0, 1] (:mod:`onnxrecede.digits`; needs scikit-learn). Of the image options only ``mean`` and
   ``std`` apply (a model trained on normalised digits).

Image sources feed a model with exactly one input. ``limit=N`` takes a seeded random subset of
N samples (seed 0, kept in source order), so a calibration set covers every class.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxrecede.errors import InputError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".npy"}
)
SOURCE_FORMS = "a .npz file, an image folder, cifar10:DIR, cifar100:DIR or digits:train|val|test"


@dataclass(frozen=True)
class TensorSpec:
    """What a model input expects: its shape (``None`` where dynamic) and numpy dtype."""

    shape: tuple[int | None, ...]
    dtype: np.dtype

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{dims} {self.dtype}"


@dataclass(frozen=True)
class ImageOptions:
    """How an image becomes model input, in this order:

    1. ``resize``: the shorter side is scaled to this many pixels (bilinear); by default to the
       larger side of the crop, and not at all when the image already has the crop size;
    2. ``size``: centre crop (height, width); by default the model input's H x W;
    3. ``scale``: pixel values 0..255 are multiplied by it (default 1/255: values in [0, 1]);
    4. ``mean``, ``std``: per channel (one value, or one per channel), x = (x - mean) / std,
       applied after ``scale`` (defaults 0 and 1; ImageNet models want
       mean 0.485,0.456,0.406 and std 0.229,0.224,0.225);
    5. ``channel_order``: ``rgb`` or ``bgr`` (mean/std are given in that order);
    6. ``layout``: ``nchw``, ``nhwc`` or ``auto`` (the model input's shape decides: channels of
       size 1 or 3 on axis 1 or 3). A model that wants one channel gets grayscale images.
    """

    size: tuple[int, int] | None = None
    resize: int | None = None
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channel_order: str = "rgb"
    layout: str = "auto"

    def validate(self) -> None:
        if self.channel_order not in ("rgb", "bgr"):
            raise InputError(f"channel order must be rgb or bgr, got '{self.channel_order}'")
        if self.layout not in ("auto", "nchw", "nhwc"):
            raise InputError(f"image layout must be auto, nchw or nhwc, got '{self.layout}'")
        if (self.size is not None and min(self.size) <= 0) or (
            self.resize is not None and self.resize <= 0
        ):
            raise InputError("image size and resize must be positive")
        for what, values in (("mean", self.mean), ("std", self.std), ("scale", (self.scale,))):
            if not values or not all(math.isfinite(v) for v in values):
                raise InputError(f"image {what} must be finite numbers, got {_floats(values)}")
        if any(s <= 0 for s in (*self.std, self.scale)):
            raise InputError(
                f"image std and scale must be greater than 0, got std {_floats(self.std)}, "
                f"scale {self.scale:g}"
            )


def _floats(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


@dataclass
class Batch:
    """One batch: feeds keyed by model input name, and int64 labels where the source has them."""

    feeds: dict[str, np.ndarray]
    labels: np.ndarray | None


Reader = Callable[[np.ndarray], Batch]


class Samples:
    """A sized collection of model inputs (and labels) read batch by batch."""

    def __init__(
        self,
        input_names: Sequence[str],
        read: Reader,
        count: int,
        labels: np.ndarray | None,
        description: str,
        limit: int | None = None,
    ) -> None:
        self.input_names = list(input_names)
        self.description = description
        self._read = read
        self._index = _subset(count, limit)
        self.labels = None if labels is None else labels[self._index]

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def __len__(self) -> int:
        return len(self._index)

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Consecutive batches of at most ``batch_size`` samples, in a fixed order."""
        if batch_size <= 0:
            raise InputError(f"batch size must be positive, got {batch_size}")
        for start in range(0, len(self), batch_size):
            idx = self._index[start : start + batch_size]
            batch = self._read(idx)
            self._check_finite(batch, idx)
            yield batch

    def _check_finite(self, batch: Batch, idx: np.ndarray) -> None:
        """Refuse NaN or infinity: it would pass through every statistic unnoticed."""
        for name, x in batch.feeds.items():
            if x.dtype.kind != "f" or not len(x):
                continue
            bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
            if bad.any():
                sample = int(idx[int(np.argmax(bad))])
                raise InputError(
                    f"{self.description}: sample {sample} (input '{name}') holds NaN or "
                    "infinity; fix the data (or --mean/--std, which must keep values finite)"
                )


def _subset(count: int, limit: int | None) -> np.ndarray:
    if limit is not None and limit <= 0:
        raise InputError(f"the sample limit must be positive, got {limit}")
    if limit is None or limit >= count:
        return np.arange(count)
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(count, size=limit, replace=False))


# ----------------------------------------------------------------------------- model inputs


def input_specs(model: Any) -> dict[str, TensorSpec]:
    """Shape and dtype of every real input (initializers excluded) of a model or model path."""
    import onnx_ir as ir

    from onnxrecede.io.model_files import load_model

    m = model if isinstance(model, ir.Model) else load_model(model)
    specs = {}
    for v in m.graph.inputs:
        if v.is_initializer() or v.name is None:
            continue
        shape = tuple(d if isinstance(d, int) else None for d in v.shape) if v.shape else ()
        dtype = np.dtype(v.dtype.numpy()) if v.dtype is not None else np.dtype(np.float32)
        specs[v.name] = TensorSpec(shape, dtype)
    return specs


# ----------------------------------------------------------------------------- entry point


def open_samples(
    source: str | os.PathLike[str],
    input_names: Sequence[str] | Mapping[str, TensorSpec],
    *,
    image: ImageOptions | None = None,
    limit: int | None = None,
) -> Samples:
    """Open ``source`` (see the module docstring) as samples for a model with these inputs.

    ``input_names`` may be a mapping name -> :class:`TensorSpec` (see :func:`input_specs`): then
    shapes and dtypes are checked up front and image options default from the input's shape.
    """
    specs = dict(input_names) if isinstance(input_names, Mapping) else None
    names = list(input_names)
    if not names:
        raise InputError("the model has no inputs to feed")
    image = image or ImageOptions()
    image.validate()
    text = os.fspath(source)
    kind, sep, rest = text.partition(":")
    if sep and kind == "digits":
        return _open_digits(rest, names, specs, image, limit)
    if sep and kind in ("cifar10", "cifar100"):
        return _open_cifar(kind, rest, names, specs, image, limit)
    if sep and kind == "folder":
        return _open_folder(Path(rest), names, specs, image, limit)
    path = Path(text)
    if path.is_dir():
        return _open_folder(path, names, specs, image, limit)
    if path.is_file():
        return _open_npz(path, names, specs, limit)
    raise InputError(f"data not found: {text} (give {SOURCE_FORMS})")


def _single_input(names: list[str], what: str) -> str:
    if len(names) != 1:
        raise InputError(
            f"{what} feeds a model with one input, but this model has {len(names)} "
            f"({', '.join(names)}); give a .npz file with one array per input instead"
        )
    return names[0]


# ----------------------------------------------------------------------------- .npz


def _open_npz(
    path: Path, names: list[str], specs: dict[str, TensorSpec] | None, limit: int | None
) -> Samples:
    from onnxrecede.data.npy_files import load_npz

    stored = load_npz(path)
    label_key = next((k for k in ("y", "labels") if k in stored and k not in names), None)
    arrays = _npz_inputs(path, stored, names, label_key)
    counts = {k: len(a) if a.ndim else 0 for k, a in arrays.items()}
    count = next(iter(counts.values()))
    if len(set(counts.values())) > 1 or count == 0:
        detail = ", ".join(f"'{k}' {n}" for k, n in counts.items())
        raise InputError(
            f"{path}: input arrays need the same non-zero number of samples ({detail})"
        )
    labels = None
    if label_key is not None:
        labels = _check_labels(path, label_key, stored[label_key], count)
    if specs is not None:
        arrays = {n: _check_array(path, n, a, specs[n]) for n, a in arrays.items()}

    def read(idx: np.ndarray) -> Batch:
        return Batch(
            {n: np.ascontiguousarray(a[idx]) for n, a in arrays.items()},
            None if labels is None else labels[idx],
        )

    return Samples(names, read, count, labels, str(path), limit)


def _npz_inputs(
    path: Path, stored: dict[str, np.ndarray], names: list[str], label_key: str | None
) -> dict[str, np.ndarray]:
    if all(n in stored for n in names):
        return {n: stored[n] for n in names}
    if len(names) == 1 and "x" in stored:
        return {names[0]: stored["x"]}
    keys = ", ".join(k for k in stored if k != label_key) or "none"
    wanted = ", ".join(f"'{n}'" for n in names)
    hint = " (or 'x')" if len(names) == 1 else ""
    raise InputError(
        f"{path}: holds arrays {keys}, but the model's inputs are {wanted}; store one array per "
        f"input under its name{hint}, labels under 'y'"
    )


def _check_labels(path: Path, key: str, y: np.ndarray, count: int) -> np.ndarray:
    if y.ndim != 1 or len(y) != count or not np.issubdtype(y.dtype, np.integer):
        raise InputError(
            f"{path}: labels '{key}' must be {count} integers (one per sample), "
            f"got {y.dtype} of shape {y.shape}"
        )
    return y.astype(np.int64)


def _check_array(path: Path | str, name: str, a: np.ndarray, spec: TensorSpec) -> np.ndarray:
    want = spec.shape[1:] if spec.shape else ()
    got = a.shape[1:]
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
        raise InputError(
            f"{path}: array for input '{name}' has samples of shape {'x'.join(map(str, got))}, "
            f"the model expects {spec.describe()} (first axis = samples)"
        )
    if a.dtype == spec.dtype:
        return a
    if np.issubdtype(spec.dtype, np.floating) and np.issubdtype(a.dtype, np.floating):
        return a.astype(spec.dtype)
    if np.issubdtype(spec.dtype, np.integer) and np.issubdtype(a.dtype, np.integer):
        return a.astype(spec.dtype)
    raise InputError(
        f"{path}: array for input '{name}' is {a.dtype}, the model expects {spec.dtype}"
    )


# ----------------------------------------------------------------------------- images


@dataclass(frozen=True)
class _ImagePlan:
    """ImageOptions resolved against the model input: everything concrete."""

    size: tuple[int, int] | None
    resize: int | None
    channels: int
    layout: str
    opts: ImageOptions
    dtype: np.dtype

    def prepare(self, hwc: np.ndarray) -> np.ndarray:
        """A float N x H x W x C batch of 0..255 values -> model input."""
        x = hwc.astype(np.float32) * np.float32(self.opts.scale)
        if self.opts.channel_order == "bgr":
            x = x[..., ::-1]
        mean = np.asarray(self.opts.mean, dtype=np.float32)
        std = np.asarray(self.opts.std, dtype=np.float32)
        for what, v in (("mean", mean), ("std", std)):
            if v.size not in (1, self.channels):
                raise InputError(f"image {what} has {v.size} values for {self.channels} channels")
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            x = (x - mean) / std  # a tiny std overflows: the batch check names the sample
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=self.dtype)


def _image_plan(name: str, spec: TensorSpec | None, opts: ImageOptions) -> _ImagePlan:
    shape = spec.shape if spec is not None else ()
    if spec is not None and len(shape) != 4:
        raise InputError(
            f"model input '{name}' has shape {spec.describe()}; image data needs a 4-D input"
        )
    layout = opts.layout
    if layout == "auto":
        layout = (
            "nhwc" if len(shape) == 4 and shape[1] not in (1, 3) and shape[3] in (1, 3) else "nchw"
        )
    c_axis, hw = (1, (2, 3)) if layout == "nchw" else (3, (1, 2))
    channels = shape[c_axis] if len(shape) == 4 and shape[c_axis] else 3
    size = opts.size
    if len(shape) == 4 and shape[hw[0]] and shape[hw[1]]:
        fixed = (int(shape[hw[0]]), int(shape[hw[1]]))  # type: ignore[arg-type]
        if size is not None and size != fixed:
            raise InputError(
                f"image size {size[0]}x{size[1]} does not fit model input '{name}' "
                f"({spec.describe() if spec else ''}): crop to {fixed[0]}x{fixed[1]}"
            )
        size = fixed
    if channels not in (1, 3):
        raise InputError(f"model input '{name}' wants {channels} channels; images have 1 or 3")
    dtype = spec.dtype if spec is not None else np.dtype(np.float32)
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"model input '{name}' is {dtype}; image data is fed as floats")
    return _ImagePlan(size, opts.resize, int(channels), layout, opts, dtype)


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise InputError(
            "reading image files needs Pillow: pip install 'onnxrecede[images]'"
        ) from None
    return Image


def _fit_image(img: Any, plan: _ImagePlan) -> np.ndarray:
    """Resize and centre-crop one PIL image; H x W x C float array of 0..255 values."""
    Image = _pil()
    img = img.convert("L" if plan.channels == 1 else "RGB")
    if plan.size is not None or plan.resize is not None:
        crop_h, crop_w = plan.size if plan.size is not None else (img.height, img.width)
        short = plan.resize or max(crop_h, crop_w)
        if plan.resize is not None or (img.height, img.width) != (crop_h, crop_w):
            f = short / min(img.width, img.height)
            new = (max(crop_w, round(img.width * f)), max(crop_h, round(img.height * f)))
            img = img.resize(new, Image.Resampling.BILINEAR)
        left, top = (img.width - crop_w) // 2, (img.height - crop_h) // 2
        img = img.crop((left, top, left + crop_w, top + crop_h))
    arr = np.asarray(img, dtype=np.float32)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _read_image_file(path: Path, plan: _ImagePlan) -> np.ndarray:
    Image = _pil()
    if path.suffix.lower() == ".npy":
        return _fit_image(Image.fromarray(read_npy_image(path)), plan)
    try:
        with Image.open(path) as img:
            return _fit_image(img, plan)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None


def read_npy_image(path: Path) -> np.ndarray:
    """A ``.npy`` image (H x W, H x W x C or C x H x W; C 1 or 3) as H x W[x 3] uint8.

    Float and integer values are clipped to 0..255; NaN or infinity is refused."""
    from onnxrecede.data.npy_files import load_npy

    arr = load_npy(path)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3) or 0 in arr.shape:
        raise InputError(f"{path}: expected an HxWxC or CxHxW image array, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{path}: the image array holds NaN or infinity")
    return np.clip(arr, 0, 255).astype(np.uint8)


def _open_folder(
    root: Path,
    names: list[str],
    specs: dict[str, TensorSpec] | None,
    opts: ImageOptions,
    limit: int | None,
) -> Samples:
    if not root.is_dir():
        raise InputError(f"image folder not found: {root}")
    name = _single_input(names, f"the image folder {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(label)
    if not files:
        raise InputError(
            f"no images in class sub-folders of {root} (ImageFolder layout DIR/CLASS/IMAGE, "
            f"suffixes {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    plan = _image_plan(name, specs.get(name) if specs else None, opts)
    if any(f.suffix.lower() != ".npy" for f in files):
        _pil()  # fail now, not in the middle of a run
    y = np.asarray(labels, dtype=np.int64)

    def read(idx: np.ndarray) -> Batch:
        images = [_read_image_file(files[i], plan) for i in idx]
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise InputError(
                f"{root}: images of different sizes {sorted(shapes)[:3]}; give an image size "
                "(crop) so that they can be batched"
            )
        return Batch({name: plan.prepare(np.stack(images))}, y[idx])

    return Samples(names, read, len(files), y, f"{root} ({len(classes)} classes)", limit)


# ----------------------------------------------------------------------------- CIFAR


def read_cifar_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR python-format pickle as a dict with str keys, read without unpickling it
    (:mod:`onnxrecede.data.cifar_pickle`: no numpy object is ever reconstructed)."""
    from onnxrecede.data.cifar_pickle import PickleRefused, load_batch

    if not path.is_file():
        raise InputError(f"CIFAR file not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read CIFAR file {path}: {e.strerror}") from None
    try:
        data = load_batch(raw)
    except PickleRefused as e:
        raise InputError(f"{path} is not a CIFAR python-format pickle: {e}") from None
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in data.items()}


def cifar_arrays(
    path: Path, label_key: str, classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 N x 3 x 32 x 32) and int64 labels of one CIFAR pickle.

    1. ``data`` must be a uint8 array of N x 3072;
    2. the labels a list (or 1-D integer array) of N ints, each in 0..classes-1 when given.
    """
    d = read_cifar_pickle(path)
    if "data" not in d or label_key not in d:
        raise InputError(f"{path}: expected keys 'data' and '{label_key}'")
    x = d["data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        got = f"{x.dtype} of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise InputError(f"{path}: 'data' must be an N x 3072 uint8 array, got {got}")
    y = _cifar_labels(path, label_key, d[label_key])
    if len(y) != len(x):
        raise InputError(
            f"{path}: {len(x)} images but {len(y)} '{label_key}'; a batch needs one label per image"
        )
    if classes is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        bad = int(np.flatnonzero((y < 0) | (y >= classes))[0])
        raise InputError(f"{path}: label {int(y[bad])} of sample {bad} is outside 0..{classes - 1}")
    return x.reshape(-1, 3, 32, 32), y


def _cifar_labels(path: Path, key: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype != np.bool_:
        return value.astype(np.int64)
    if isinstance(value, list):
        bad = next((i for i, v in enumerate(value) if type(v) is not int), None)
        if bad is None:
            try:
                return np.asarray(value, dtype=np.int64)
            except OverflowError:
                raise InputError(f"{path}: '{key}' holds an integer beyond int64") from None
        raise InputError(
            f"{path}: '{key}' must be a list of integers; item {bad} is a "
            f"{type(value[bad]).__name__}"
        )
    raise InputError(f"{path}: '{key}' must be a list of integers, got {type(value).__name__}")


def cifar_split(kind: str, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``train`` or ``test`` split of a local CIFAR-10/100 python-format folder."""
    if not root.is_dir():
        raise InputError(f"CIFAR folder not found: {root} (onnxrecede never downloads data)")
    files = cifar_files(kind, root, split)
    key, classes = ("labels", 10) if kind == "cifar10" else ("fine_labels", 100)
    parts = [cifar_arrays(f, key, classes) for f in files]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def cifar_files(kind: str, root: Path, split: str) -> list[Path]:
    """The batch files of one split of a CIFAR-10/100 python-format folder."""
    if kind == "cifar10" and split == "train":
        return [root / f"data_batch_{i}" for i in range(1, 6)]
    if kind == "cifar10":
        return [root / "test_batch"]
    return [root / split]


def _open_cifar(
    kind: str,
    rest: str,
    names: list[str],
    specs: dict[str, TensorSpec] | None,
    opts: ImageOptions,
    limit: int | None,
) -> Samples:
    folder, split = rest, "test"
    head, sep, tail = rest.rpartition(":")
    if sep and tail in ("train", "test"):
        folder, split = head, tail
    if not folder:
        raise InputError(f"{kind}:DIR needs the folder, e.g. {kind}:./cifar-10-batches-py")
    name = _single_input(names, f"{kind} data")
    x, y = cifar_split(kind, Path(folder), split)
    plan = _image_plan(name, specs.get(name) if specs else None, opts)
    resize = (plan.size is not None and plan.size != (32, 32)) or plan.resize is not None
    if plan.channels != 3 or resize:
        _pil()

    def read(idx: np.ndarray) -> Batch:
        hwc = x[idx].transpose(0, 2, 3, 1)
        if plan.channels != 3 or resize:
            Image = _pil()
            hwc = np.stack([_fit_image(Image.fromarray(im), plan) for im in hwc])
        return Batch({name: plan.prepare(hwc)}, y[idx])

    return Samples(names, read, len(y), y, f"{kind} {split} split of {folder}", limit)


# ----------------------------------------------------------------------------- digits


def _open_digits(
    split: str,
    names: list[str],
    specs: dict[str, TensorSpec] | None,
    image: ImageOptions,
    limit: int | None,
) -> Samples:
    if split not in ("train", "val", "test"):
        raise InputError(f"digits:{split}: the split must be train, val or test")
    name = _single_input(names, "the digits set")
    try:
        from onnxrecede.data.digits import load_digits_split

        x, y = load_digits_split(split)
    except ImportError as e:
        raise InputError(
            f"the digits set needs scikit-learn ({e}): pip install 'onnxrecede[train]'"
        ) from None
    if specs is not None:
        x = _check_array(f"digits:{split}", name, x, specs[name])
    mean = np.asarray(image.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(image.std, dtype=np.float32).reshape(1, -1, 1, 1)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        x = ((x - mean) / std).astype(x.dtype)  # [0, 1] images: only mean and std apply

    def read(idx: np.ndarray) -> Batch:
        return Batch({name: np.ascontiguousarray(x[idx])}, y[idx])

    return Samples(names, read, len(y), np.asarray(y, dtype=np.int64), f"digits:{split}", limit)
