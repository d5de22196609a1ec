"""Read a 2-D array inside an ``.npz`` archive row block by row block.

``np.load`` of an npz member decompresses the whole array at once; the
Imagenet64 training batches are 1.5 GB each. Reading the ``.npy`` header
ourselves lets us stream the rows instead. Only plain (non-object) dtypes
are accepted, so nothing is ever unpickled.
"""

from __future__ import annotations

import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Tuple

import numpy as np

from raysys.errors import DataError

# What a damaged archive raises while reading (BadZipFile covers CRC errors).
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


def _read_header(member: IO[bytes], where: str) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(member)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(member)
    except ValueError as err:
        raise DataError(f"corrupt array {where}: {err}") from None
    raise DataError(f"array {where} uses .npy format {version}, expected 1.0 or 2.0")


@contextmanager
def open_rows(path: Path, key: str) -> Iterator[Tuple[Tuple[int, ...], np.dtype, IO[bytes]]]:
    """(shape, dtype, stream positioned at the first row) of ``key`` in the npz ``path``."""
    where = f"{key!r} in {path}"
    try:
        with zipfile.ZipFile(path) as archive:
            if f"{key}.npy" not in archive.namelist():
                keys = sorted(name[: -len(".npy")] for name in archive.namelist())
                raise DataError(f"{path} lacks the array {key!r} (has: {', '.join(keys)})")
            with archive.open(f"{key}.npy") as member:
                shape, fortran_order, dtype = _read_header(member, where)
                if dtype.hasobject:
                    raise DataError(f"array {where} holds Python objects; refusing to unpickle it")
                if fortran_order and len(shape) > 1:
                    raise DataError(f"array {where} is stored column-major; expected row-major")
                yield shape, dtype, member
    except _ARCHIVE_ERRORS as err:
        raise DataError(f"corrupt npz file {path}: {err}") from None


def read_rows(
    stream: IO[bytes], rows: int, row_shape: Tuple[int, ...], dtype: np.dtype, where: str
) -> np.ndarray:
    """The next ``rows`` rows of an array being streamed by :func:`open_rows`."""
    size = rows * int(np.prod(row_shape)) * dtype.itemsize
    data = stream.read(size)
    if len(data) != size:
        raise DataError(f"truncated array {where}: needed {size} bytes, found {len(data)}")
    return np.frombuffer(data, dtype).reshape((rows,) + tuple(row_shape))
