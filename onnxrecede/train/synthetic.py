"""A procedural, deterministic image-classification set shaped like CIFAR-10 (3x32x32, 10 classes).

Each image holds one localised grating patch whose orientation (5 values) and spatial frequency
(2 values) make its class, at a random position, size, phase and colour, over a smooth random
background, with a fainter grating of another class as distractor and pixel noise. Telling the
classes apart needs oriented, translation-invariant filters, so a CNN learns it and a linear model
on pixels does not; the distractor, jitter and noise keep it from being trivial.
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 10
SIZE = 32


def _class_params(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    angle = (labels % 5) * (np.pi / 5)
    freq = np.where(labels < 5, 0.11, 0.22)
    return angle, freq


def _patches(rng: np.random.Generator, labels: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """One grating patch per label, shape (N, 3, 32, 32), zero mean around 0."""
    n = len(labels)
    angle, freq = _class_params(labels)
    angle = angle + rng.uniform(-0.12, 0.12, n)
    freq = freq * rng.uniform(0.9, 1.1, n)
    cx, cy = rng.uniform(8, 24, n), rng.uniform(8, 24, n)
    radius = rng.uniform(6, 10, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    colour = rng.uniform(0.2, 1.0, (n, 3))
    colour *= rng.choice([-1.0, 1.0], (n, 1))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    xs = xx[None] - cx[:, None, None]
    ys = yy[None] - cy[:, None, None]
    proj = xs * np.cos(angle)[:, None, None] + ys * np.sin(angle)[:, None, None]
    wave = np.cos(2 * np.pi * freq[:, None, None] * proj + phase[:, None, None])
    env = np.exp(-(xs**2 + ys**2) / (2 * radius[:, None, None] ** 2))
    grey = amp[:, None, None] * wave * env
    return grey[:, None] * colour[:, :, None, None]


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth colour fields: a random 4x4 grid upsampled bilinearly."""
    coarse = rng.uniform(0.25, 0.75, (n, 3, 4, 4))
    t = np.linspace(0, 3, SIZE)
    i0 = np.minimum(t.astype(int), 2)
    w = t - i0
    rows = (
        coarse[:, :, i0] * (1 - w)[None, None, :, None]
        + coarse[:, :, i0 + 1] * w[None, None, :, None]
    )
    return rows[..., i0] * (1 - w) + rows[..., i0 + 1] * w


def make_synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (uint8, N x 3 x 32 x 32) and their labels (int64), balanced over classes."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
    amp = rng.uniform(0.35, 0.55, n)
    img = _background(rng, n)
    img += _patches(rng, labels, amp)
    others = (labels + rng.integers(1, NUM_CLASSES, n)) % NUM_CLASSES
    img += _patches(rng, others, amp * rng.uniform(0.2, 0.5, n))
    img += rng.normal(0, 0.06, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), labels
