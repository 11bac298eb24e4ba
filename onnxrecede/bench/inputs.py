"""Input feeds: seeded random arrays, or given arrays from an ``.npz`` file."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from onnxrecede.errors import InputError
from onnxrecede.runtime.session import ORT_DTYPES, random_inputs, resolve_input_shape


def check_same_inputs(reference: Any, candidate: Any, candidate_path: str) -> None:
    """Both sessions must take the same feeds (pruning never changes the inputs)."""
    ref = {i.name: f"{i.type}{_dims(i.shape)}" for i in reference.get_inputs()}
    cand = {i.name: f"{i.type}{_dims(i.shape)}" for i in candidate.get_inputs()}
    if ref != cand:
        raise InputError(
            f"{candidate_path}: its inputs {_describe(cand)} differ from the reference's "
            f"{_describe(ref)}; both models must take the same inputs"
        )


def _dims(shape: Sequence[Any]) -> str:
    """Rank and static dims; symbolic dims all read ``?`` so that their names do not matter."""
    return "[" + ",".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in shape) + "]"


def _describe(inputs: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{n}: {t}" for n, t in inputs.items()) + "}"


def check_shape_names(session: Any, shapes: Mapping[str, Sequence[int]]) -> None:
    names = [i.name for i in session.get_inputs()]
    unknown = [n for n in shapes if n not in names]
    if unknown:
        raise InputError(
            f"--shape names {', '.join(unknown)}, which is not a model input; "
            f"model inputs: {', '.join(names)}"
        )


def feed_shapes(
    session: Any, shapes: Mapping[str, Sequence[int]], batch: int
) -> dict[str, tuple[int, ...]]:
    """Concrete input shapes: ``--shape`` wins, a dynamic first dim is the batch."""
    return {
        i.name: resolve_input_shape(i.name, i.shape, shapes, batch) for i in session.get_inputs()
    }


def seeded_feeds(
    session: Any, shapes: Mapping[str, Sequence[int]], batch: int, seed: int
) -> dict[str, np.ndarray]:
    feeds = random_inputs(session, shapes, batch=batch, seed=seed)
    if batch != 1 and not any(a.ndim and a.shape[0] == batch for a in feeds.values()):
        fixed = ", ".join(f"'{n}' {list(a.shape)}" for n, a in feeds.items())
        raise InputError(
            f"--batch {batch}: no model input can take batch {batch}, the batch dimension is "
            f"fixed (inputs: {fixed}); export the model with a dynamic batch axis, or bench "
            "the batch it has"
        )
    return feeds


def load_npz_feeds(path: str | os.PathLike[str], session: Any) -> dict[str, np.ndarray]:
    """Arrays from ``path`` by input name, checked against the model's inputs."""
    from onnxrecede.data.npy_files import load_npz

    arrays = load_npz(path)  # every size checked before allocating
    inputs = {i.name: i for i in session.get_inputs()}
    missing = [n for n in inputs if n not in arrays]
    extra = [n for n in arrays if n not in inputs]
    if missing or extra:
        raise InputError(
            f"--inputs {path}: arrays {sorted(arrays)} do not match the model inputs "
            f"{list(inputs)} (missing: {missing or 'none'}, unknown: {extra or 'none'}); "
            "save them with np.savez(path, **{input_name: array})"
        )
    feeds: dict[str, np.ndarray] = {}
    for name, info in inputs.items():
        array = arrays[name]
        dtype = np.dtype(ORT_DTYPES.get(info.type, array.dtype))
        if array.ndim != len(info.shape):
            raise InputError(
                f"--inputs {path}: array '{name}' has rank {array.ndim}, the model input "
                f"has rank {len(info.shape)}"
            )
        if array.dtype != dtype:
            if not np.can_cast(array.dtype, dtype, casting="same_kind"):
                raise InputError(
                    f"--inputs {path}: array '{name}' is {array.dtype}, the model input is "
                    f"{info.type}; save it as {dtype}"
                )
            array = array.astype(dtype)
        feeds[name] = np.ascontiguousarray(array)
    return feeds


def batch_of(feeds: Mapping[str, np.ndarray]) -> int:
    """The leading dim of the first input (what ``--inputs`` arrays use as batch)."""
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1
