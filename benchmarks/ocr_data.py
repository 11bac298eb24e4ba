"""Labelled OCR data made offline: text rendered with Pillow (labels known by construction).

Three sets, matching the PaddleOCR models that RapidOCR ships (see ``production.py``):

1. ``rec``: one line of text per image (digits, letters, a few symbols; DejaVu fonts), resized
   to height 48 and padded to 48 x 320 as RapidOCR does; the label is the text;
2. ``cls``: the same kind of line at 48 x 192, upright (label 0) or rotated by 180 degrees
   (label 1);
3. ``det``: 640 x 640 pages with 3-6 lines at random places; the labels are the lines' boxes.

Pixels are scaled to ``(x / 255 - 0.5) / 0.5``, NCHW float32, as the models expect.
"""

from __future__ import annotations

import glob
import math
import string
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: letters and digits without the pairs a font cannot tell apart (l I 1, O 0 o)
ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "lI1O0oQ")
FONTS = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/DejaVuSans*.ttf")) + sorted(
    glob.glob("/usr/share/fonts/truetype/dejavu/DejaVuSerif*.ttf")
)


def _text(rng: np.random.Generator) -> str:
    words = []
    for _ in range(int(rng.integers(1, 4))):
        n = int(rng.integers(2, 8))
        words.append("".join(rng.choice(list(ALPHABET), n)))
    return " ".join(words)


def _font(rng: np.random.Generator, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(FONTS[int(rng.integers(len(FONTS)))], size)


def _line(rng: np.random.Generator, text: str) -> Image.Image:
    font = _font(rng, int(rng.integers(28, 40)))
    left, top, right, bottom = font.getbbox(text)
    pad = int(rng.integers(4, 10))
    bg = int(rng.integers(200, 256))
    fg = int(rng.integers(0, 60))
    img = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), (bg, bg, bg))
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=(fg, fg, fg))
    return img


def _normalise(img: Image.Image) -> np.ndarray:
    x = np.asarray(img, dtype=np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1)


def _fit(img: Image.Image, height: int, width: int) -> np.ndarray:
    """Resize to ``height`` keeping the aspect ratio (at most ``width`` wide), pad right."""
    w = min(width, int(math.ceil(height * img.width / img.height)))
    x = _normalise(img.resize((w, height), Image.BILINEAR))
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :w] = x
    return out


def rec_set(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    texts = [_text(rng) for _ in range(n)]
    return np.stack([_fit(_line(rng, t), 48, 320) for t in texts]), texts


def cls_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        img = _line(rng, _text(rng))
        flip = i % 2
        if flip:
            img = img.rotate(180)
        xs.append(_fit(img, 48, 192))
        ys.append(flip)
    return np.stack(xs), np.asarray(ys)


@dataclass
class Page:
    image: np.ndarray  #: [3, 640, 640]
    boxes: list[tuple[int, int, int, int]]  #: x0, y0, x1, y1 of each line


def det_set(n: int, seed: int, size: int = 640) -> list[Page]:
    rng = np.random.default_rng(seed)
    pages = []
    for _ in range(n):
        bg = int(rng.integers(200, 256))
        page = Image.new("RGB", (size, size), (bg, bg, bg))
        boxes: list[tuple[int, int, int, int]] = []
        for _ in range(int(rng.integers(3, 7))):
            line = _line(rng, _text(rng))
            if line.width >= size:
                continue
            for _ in range(20):  # a place that overlaps no other line
                x0 = int(rng.integers(0, size - line.width))
                y0 = int(rng.integers(0, size - line.height))
                box = (x0, y0, x0 + line.width, y0 + line.height)
                if all(_disjoint(box, b) for b in boxes):
                    page.paste(line, (x0, y0))
                    boxes.append(_ink_box(line, x0, y0))
                    break
        pages.append(Page(_normalise(page), boxes))
    return pages


def _disjoint(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int = 8) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _ink_box(line: Image.Image, x0: int, y0: int) -> tuple[int, int, int, int]:
    """The box of the line's ink (not its padding), in page coordinates."""
    gray = np.asarray(line.convert("L"), dtype=np.int32)
    ys, xs = np.nonzero(gray < gray.max() - 40)
    return (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
