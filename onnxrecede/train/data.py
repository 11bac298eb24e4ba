"""Data sets held in memory as uint8 tensors, with CIFAR-style augmentation and sharded batches.

Sources (``--data``):
1. ``synthetic`` or ``synthetic:N``: the built-in procedural set (N training images, default
   5000; N // 5 test images), see :mod:`onnxrecede.train.synthetic`; augmented without flips,
   since a flip turns one orientation class into another;
2. ``cifar10:DIR`` / ``cifar100:DIR``: a local ``cifar-10-batches-py`` / ``cifar-100-python``
   folder in the python pickle format (never downloaded), read by the opcode parser of
   :mod:`onnxrecede.data.cifar_pickle` (no numpy object is reconstructed from the file);
3. ``folder:DIR``: ImageFolder layout, ``DIR/train/CLASS/*`` and optionally ``DIR/test/CLASS/*``
   (or just ``DIR/CLASS/*``, test split held out); images read with Pillow (png, jpg, ...) or
   as ``.npy`` arrays (HxWxC or CxHxW, uint8), resized to 32x32;
4. ``digits``: scikit-learn's bundled handwritten digits (1,797 real images, 10 classes),
   upsampled to 3x32x32 floats in [0, 1], with the fixed train / validation / test split of
   :mod:`onnxrecede.digits` (1,257 / 180 / 360; ``--val-fraction`` does not apply). Augmented
   by random crops only: a flipped digit is not the same digit.

A validation split is always held out of the training images: the best epoch is chosen on it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from onnxrecede.data.sources import cifar_split, read_npy_image
from onnxrecede.errors import InputError
from onnxrecede.train.synthetic import make_synthetic

log = logging.getLogger(__name__)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".npy"}


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 (0..255) or float32 in [0, 1], N x C x H x W
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, idx: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[idx], self.labels[idx])


@dataclass
class DataBundle:
    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet | None
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool = True  # horizontal flips in the augmentation

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)


# ----------------------------------------------------------------------------- sources


def load_cifar(kind: str, root: str | os.PathLike[str]) -> tuple[ImageSet, ImageSet, int]:
    """Train and test sets of a local CIFAR-10 or CIFAR-100 python-format folder."""
    root = Path(root)
    xtr, ytr = cifar_split(kind, root, "train")
    xte, yte = cifar_split(kind, root, "test")
    classes = 10 if kind == "cifar10" else 100
    return _as_set(xtr, ytr), _as_set(xte, yte), classes


def _as_set(x: np.ndarray, y: np.ndarray) -> ImageSet:
    return ImageSet(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))


def _read_image(path: Path, size: int) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        arr = read_npy_image(path)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        t = torch.from_numpy(np.ascontiguousarray(arr.astype(np.float32))).permute(2, 0, 1)
        if t.shape[1:] != (size, size):
            t = F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False)[0]
        return t.clamp(0, 255).round().to(torch.uint8).numpy()
    try:
        from PIL import Image
    except ImportError:
        raise InputError(
            f"{path}: reading images needs Pillow (pip install pillow), or give .npy files"
        ) from None
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None


def _read_class_dirs(root: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for label, cls in enumerate(classes):
        d = root / cls
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                xs.append(_read_image(f, size))
                ys.append(label)
    if not xs:
        raise InputError(
            f"no images found under {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def load_folder(
    root: str | os.PathLike[str], size: int = 32, test_fraction: float = 0.1, seed: int = 0
) -> tuple[ImageSet, ImageSet, int]:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder not found: {root}")
    train_root = root / "train" if (root / "train").is_dir() else root
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir() and p.name != "test")
    if len(classes) < 2:
        raise InputError(f"{train_root}: need at least two class folders, found {len(classes)}")
    x, y = _read_class_dirs(train_root, classes, size)
    test_root = root / "test"
    if train_root != root and test_root.is_dir():
        xte, yte = _read_class_dirs(test_root, classes, size)
        return _as_set(x, y), _as_set(xte, yte), len(classes)
    train, test = _split(_as_set(x, y), test_fraction, seed + 7919)
    return train, test, len(classes)


# ----------------------------------------------------------------------------- bundle


def _split(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Seeded split into (rest, held out); the held-out part has at least one image."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data), generator=g)
    n_out = max(1, int(round(len(data) * fraction)))
    if n_out >= len(data):
        raise InputError(f"cannot hold out {fraction:.0%} of {len(data)} images")
    return data.subset(perm[n_out:].sort().values), data.subset(perm[:n_out].sort().values)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = to_unit(images)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def load_data(spec: str, val_fraction: float = 0.1, seed: int = 0) -> DataBundle:
    """Parse a ``--data`` value (see the module docstring) and load the data set."""
    kind, _, arg = spec.partition(":")
    if not 0 < val_fraction < 1:
        raise InputError(f"the validation fraction must be in (0, 1), got {val_fraction}")
    test: ImageSet | None
    if kind == "digits":
        return load_digits_bundle(arg)
    if kind == "synthetic":
        try:
            n = int(arg) if arg else 5000
        except ValueError:
            raise InputError(f"--data synthetic:N needs an integer N, got '{arg}'") from None
        if n < 20:
            raise InputError(f"--data synthetic:N needs N >= 20, got {n}")
        train_all = _as_set(*make_synthetic(n, seed=1234))
        test = _as_set(*make_synthetic(max(10, n // 5), seed=4321))
        classes = 10
    elif kind in ("cifar10", "cifar100"):
        if not arg:
            raise InputError(
                f"--data {kind}:DIR needs the folder, e.g. {kind}:./cifar-10-batches-py"
            )
        train_all, test, classes = load_cifar(kind, arg)
    elif kind == "folder":
        if not arg:
            raise InputError("--data folder:DIR needs the folder")
        train_all, test, classes = load_folder(arg, seed=seed)
    else:
        raise InputError(
            f"unknown data source '{spec}'; use synthetic[:N], digits, cifar10:DIR, "
            "cifar100:DIR or folder:DIR"
        )
    train, val = _split(train_all, val_fraction, seed)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    if kind == "cifar10":
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    else:
        mean, std = _channel_stats(train.images)
    log.info(
        "data %s: %d train, %d val, %d test, %d classes",
        spec,
        len(train),
        len(val),
        len(test),
        classes,
    )
    # a mirrored grating has the mirrored orientation, another class of the synthetic set
    return DataBundle(kind, train, val, test, classes, mean, std, flip=kind != "synthetic")


def load_digits_bundle(arg: str = "") -> DataBundle:
    """``--data digits``: the fixed splits of :mod:`onnxrecede.digits`, float images in [0, 1]."""
    from onnxrecede.data.digits import NUM_CLASSES, load_digits_split

    if arg:
        raise InputError(f"--data digits takes no argument, got 'digits:{arg}'")
    sets = {}
    for split in ("train", "val", "test"):
        x, y = load_digits_split(split)
        sets[split] = ImageSet(torch.from_numpy(x), torch.from_numpy(y))
    mean, std = _channel_stats(sets["train"].images)
    log.info(
        "data digits: %d train, %d val, %d test, %d classes",
        len(sets["train"]),
        len(sets["val"]),
        len(sets["test"]),
        NUM_CLASSES,
    )
    return DataBundle(
        "digits", sets["train"], sets["val"], sets["test"], NUM_CLASSES, mean, std, flip=False
    )


# ----------------------------------------------------------------------------- batches


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (0..255) or float ([0, 1]) images as float in [0, 1]."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def normalize(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """uint8 or [0,1] float N x C x H x W -> normalised float."""
    x = to_unit(images)
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def augment(
    images: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip of a batch, vectorised.

    Takes uint8 or [0, 1] float images, returns floats in [0, 1]. With ``flip=False`` the
    same random numbers are drawn, none of them flips.
    """
    x = to_unit(images)
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flips = (torch.rand(n, generator=generator) < 0.5) & flip
    rows = oy[:, None] + torch.arange(h)[None]
    cols = torch.arange(w)[None].expand(n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + ox[:, None]
    return padded[
        torch.arange(n)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def train_batches(
    data: ImageSet, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1
) -> Iterator[torch.Tensor]:
    """Index tensors of this rank's share of each global batch of a seeded permutation.

    ``batch_size`` is the global batch: with ``world`` processes each takes every world-th
    sample of it. A last batch too small to give every rank two samples is dropped.
    """
    perm = torch.randperm(len(data), generator=generator)
    for start in range(0, len(perm), batch_size):
        idx = perm[start : start + batch_size]
        if len(idx) < 2 * world:
            break
        yield idx[rank::world]


def num_train_batches(n: int, batch_size: int, world: int = 1) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 * world else 0)
