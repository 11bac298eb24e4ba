""".npy and .npz files read with every size checked before anything is allocated.

``numpy.load`` trusts the header: a 100-byte file that claims 10^13 elements makes it allocate
(``MemoryError``), a member that is not an array comes back as raw bytes, and a damaged zip
raises ``BadZipFile``. These readers parse the header themselves and refuse, with
:class:`InputError` naming the file (and the member):

1. a file without the ``.npy`` magic, or a header numpy cannot parse (``max_header_size``
   bounds it), or a format version other than 1.0 and 2.0;
2. a dtype other than bool, integer or float (objects, structures, strings, voids);
3. a shape whose data does not fit in the bytes the file (or zip member) holds, or that needs
   more memory than is available;
4. for ``.npz``: a file that is not a zip archive, a member whose name does not end in
   ``.npy``, a damaged member (bad CRC, truncated).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from onnxrecede.errors import InputError
from onnxrecede.runtime.memory import check_allocation

_NUMERIC_KINDS = frozenset("biuf")


def read_npy(f: IO[bytes], size: int, where: str) -> np.ndarray:
    """The array in ``f`` (``size`` bytes in all), every size checked first (cases 1-3)."""
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
    except (ValueError, EOFError, OSError) as e:
        raise InputError(f"{where} is not a readable .npy array: {e}") from None
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject or dtype.fields is not None:
        raise InputError(f"{where} holds {dtype} values; only bool, integer and float arrays")
    if any(d < 0 for d in shape):
        raise InputError(f"{where}: the header gives a negative size in shape {shape}")
    count = 1
    for d in shape:
        count *= d
    nbytes = count * dtype.itemsize
    held = size - f.tell()
    if nbytes > held:
        raise InputError(
            f"{where}: the header claims shape {shape} of {dtype} ({nbytes} bytes), the file "
            f"holds {held}; it is truncated or damaged"
        )
    check_allocation(nbytes, f"{where} (shape {shape}, {dtype})", "give a smaller array")
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise InputError(f"{where} is truncated: {len(data)} of {nbytes} data bytes")
    flat = np.frombuffer(bytearray(data), dtype=dtype)
    return flat.reshape(shape, order="F") if fortran else flat.reshape(shape)


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """One ``.npy`` file (cases 1-3)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return read_npy(f, os.fstat(f.fileno()).st_size, str(p))
    except OSError as e:
        raise InputError(f"cannot read {p}: {e.strerror}") from None


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` archive, keyed by member name without ``.npy`` (cases 1-4)."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as z:
            members = z.infolist()
            for info in members:
                if not info.filename.endswith(".npy"):
                    raise InputError(
                        f"{p}: member '{info.filename}' is not a .npy array; a .npz holds only "
                        "arrays (numpy.savez)"
                    )
            return {info.filename[:-4]: _member(z, info, p) for info in members}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as e:
        raise InputError(f"{p}: cannot read it as a .npz file of arrays: {e}") from None
    except OSError as e:
        raise InputError(f"cannot read {p}: {e.strerror or e}") from None


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    with z.open(info) as f:
        return read_npy(f, info.file_size, f"{path}: member '{info.filename}'")
