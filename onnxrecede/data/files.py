"""The exact files a data source reads, for the output-safety check of every command.

One function, :func:`source_files`, knows every form of ``--data`` / ``--calibration`` /
``--eval-data`` (those of :func:`onnxrecede.data.open_samples` and of the trainer's
``load_data``):

1. ``FILE.npz`` (or any other path that is not a folder): the file;
2. ``DIR`` or ``folder:DIR``: the folder (every write inside it is refused, since a new file
   there would join the data set) and every symbolic link below it, class folders and image
   files alike, so that a write to a link's target is refused too;
3. ``cifar10:DIR[:train|test]`` / ``cifar100:DIR[:train|test]``: the batch files of the split
   (``data_batch_1`` .. ``data_batch_5`` or ``test_batch``; ``train`` or ``test``); the trainer
   reads both splits;
4. ``digits[:split]``: the data file inside scikit-learn that :mod:`onnxrecede.digits` reads,
   when scikit-learn is installed;
5. ``synthetic[:N]``: nothing (the images are generated).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

#: class folders sit one level below DIR, or two (DIR/train/CLASS) for the trainer
_FOLDER_DEPTH = 3


def source_files(source: str, *, training: bool = False) -> list[Path]:
    """Every path ``source`` reads (see the module cases); ``training``: as ``train --data``."""
    kind, sep, rest = source.partition(":")
    if kind == "synthetic" and (sep or training):
        return []
    if kind == "digits" and (sep or training):
        return _digits_files()
    if sep and kind in ("cifar10", "cifar100"):
        return _cifar_files(kind, rest, training)
    if sep and kind == "folder":
        return _folder_files(Path(rest))
    path = Path(source)
    return _folder_files(path) if path.is_dir() else [path]


def _cifar_files(kind: str, rest: str, training: bool) -> list[Path]:
    from onnxrecede.data.sources import cifar_files

    folder, split = rest, "test"
    head, sep, tail = rest.rpartition(":")
    if sep and tail in ("train", "test"):
        folder, split = head, tail
    splits = ("train", "test") if training else (split,)
    return [f for s in splits for f in cifar_files(kind, Path(folder), s)]


def _folder_files(root: Path) -> list[Path]:
    found = [root]
    base = len(root.parts)
    for here, dirs, files in os.walk(root, followlinks=True):
        depth = len(Path(here).parts) - base
        if depth >= _FOLDER_DEPTH:
            dirs[:] = []
        for name in (*dirs, *files):
            path = Path(here) / name
            if path.is_symlink():
                found.append(path)
    return found


def _digits_files() -> list[Path]:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return []
    data = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return [data] if data.exists() else []
