"""Scoring the PaddleOCR models on the rendered sets of ``ocr_data``.

1. recogniser: greedy CTC decoding (argmax per step, repeats merged, blank 0 dropped) with the
   model's own ``character`` metadata (plus the space PaddleOCR appends); exact match of the
   whole line;
2. classifier: top-1 of 0 / 180 degrees;
3. detector: DBNet post-processing as RapidOCR does it in outline (probability > 0.3, connected
   components, each box grown by ``area * 1.6 / perimeter``); recall of the rendered lines at
   IoU >= 0.5 (each detection matches at most one line).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from scipy import ndimage

Run = Callable[[np.ndarray], np.ndarray]


def characters(model_path: str) -> list[str]:
    proto = onnx.load(model_path, load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    return ["<blank>", *meta["character"].splitlines(), " "]


def ctc_decode(probs: np.ndarray, chars: list[str]) -> list[str]:
    out = []
    for seq in probs.argmax(axis=-1):
        keep = np.r_[True, seq[1:] != seq[:-1]] & (seq != 0)
        out.append("".join(chars[i] for i in seq[keep]))
    return out


def batched(run: Run, x: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])


def rec_exact(run: Run, x: np.ndarray, texts: list[str], chars: list[str]) -> float:
    got = ctc_decode(batched(run, x), chars)
    return 100.0 * float(np.mean([g == t for g, t in zip(got, texts)]))


def cls_top1(run: Run, x: np.ndarray, y: np.ndarray) -> float:
    return 100.0 * float(np.mean(batched(run, x).argmax(axis=1) == y))


def det_boxes(prob: np.ndarray, thresh: float = 0.3, unclip: float = 1.6) -> list[tuple]:
    labels, n = ndimage.label(prob > thresh)
    boxes = []
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if min(h, w) < 3:
            continue
        d = h * w * unclip / (2 * (h + w))
        boxes.append((sl[1].start - d, sl[0].start - d, sl[1].stop + d, sl[0].stop + d))
    return boxes


def _iou(a: tuple, b: tuple) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def det_recall(run: Run, pages: list) -> float:
    found = total = 0
    x = np.stack([p.image for p in pages])
    probs = batched(run, x, batch=4)
    for page, prob in zip(pages, probs):
        dets = det_boxes(prob[0])
        used: set[int] = set()
        for box in page.boxes:
            total += 1
            best = max(((i, _iou(box, d)) for i, d in enumerate(dets) if i not in used),
                       key=lambda t: t[1], default=(-1, 0.0))  # fmt: skip
            if best[1] >= 0.5:
                used.add(best[0])
                found += 1
    return 100.0 * found / max(total, 1)
