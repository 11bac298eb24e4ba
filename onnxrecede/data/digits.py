"""scikit-learn's bundled handwritten digits as a small real CIFAR-shaped set (no torch, no download).

The source: ``sklearn.datasets.load_digits`` reads a file shipped inside scikit-learn: 1,797 real
8x8 grey images of the digits 0-9 (pixel values 0..16), 10 classes. What this module makes of it:

1. values: pixel / 16, so every value lies in [0, 1] (0 = background);
2. size: each 8x8 image is upsampled to 32x32 by bilinear interpolation with half-pixel
   centres (output pixel i samples source coordinate (i + 0.5) / 4 - 0.5, clamped to the
   image; the same as ``torch.nn.functional.interpolate(mode="bilinear",
   align_corners=False)``), then replicated to 3 identical channels: float32, N x 3 x 32 x 32,
   still in [0, 1];
3. split: one fixed permutation of the 1,797 indices, ``numpy.random.default_rng(20220413)``;
   its first 360 images are the test split, the next 180 the validation split, the remaining
   1,257 the training split. Each split keeps the original order of its indices. The split
   never depends on a user seed, so every run and every tool sees the same test images.

:func:`load_digits_split` returns one split as ``(x, y)`` numpy arrays; ``x`` float32
(N, 3, 32, 32) in [0, 1], ``y`` int64 (N,).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

from onnxrecede.errors import InputError

Split = Literal["train", "val", "test"]

NUM_CLASSES = 10
SIZE = 32
SPLIT_SEED = 20220413
N_TEST = 360
N_VAL = 180
N_TOTAL = 1797
SPLITS: tuple[Split, ...] = ("train", "val", "test")


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear weights, half-pixel centres, edges clamped (align_corners=False)."""
    scale = n_in / n_out
    src = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    w = src - lo
    m = np.zeros((n_out, n_in), dtype=np.float64)
    m[np.arange(n_out), lo] += 1.0 - w
    m[np.arange(n_out), hi] += w
    return m


def upsample(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Bilinear resize of (N, H, W) images to (N, size, size), as described in the module doc."""
    rows = _interp_matrix(images.shape[1], size)
    cols = _interp_matrix(images.shape[2], size)
    return np.einsum("ih,nhw,jw->nij", rows, images, cols)


def split_indices() -> dict[Split, np.ndarray]:
    """The fixed test / validation / training indices into the 1,797 images (sorted)."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(N_TOTAL)
    return {
        "test": np.sort(perm[:N_TEST]),
        "val": np.sort(perm[N_TEST : N_TEST + N_VAL]),
        "train": np.sort(perm[N_TEST + N_VAL :]),
    }


@lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError(
            "the digits data set needs scikit-learn: pip install 'onnxrecede[train]' "
            "(or pip install scikit-learn)"
        ) from None
    d = load_digits()
    images = np.asarray(d.images, dtype=np.float64)
    labels = np.asarray(d.target, dtype=np.int64)
    if images.shape != (N_TOTAL, 8, 8):
        raise InputError(
            f"scikit-learn's digits have shape {images.shape}, expected ({N_TOTAL}, 8, 8); "
            "this scikit-learn version is not supported"
        )
    big = upsample(images / 16.0).astype(np.float32)
    x = np.ascontiguousarray(np.repeat(big[:, None], 3, axis=1))
    x.setflags(write=False)
    labels.setflags(write=False)
    return x, labels


def load_digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split of the digits: ``x`` float32 (N, 3, 32, 32) in [0, 1], ``y`` int64 (N,).

    Sizes: train 1,257, val 180, test 360. Raises :class:`InputError` for an unknown split or
    when scikit-learn is missing. The arrays returned are fresh copies.
    """
    if split not in SPLITS:
        raise InputError(f"unknown digits split '{split}'; use one of: {', '.join(SPLITS)}")
    x, y = _all_digits()
    idx = split_indices()[split]
    return x[idx].copy(), y[idx].copy()
