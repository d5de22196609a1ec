"""Load the pickled batches of the CIFAR datasets without running arbitrary code.

A pickle may name any importable callable; a malicious one runs it at load
time. :class:`ArrayUnpickler` resolves only the few names that dicts, lists,
strings and numpy arrays need, so anything else is refused before it runs.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from raysys.errors import DataError

# (module, name) pairs a pickle of numpy arrays may reference. numpy 1.x
# writes ``numpy.core``, numpy 2.x ``numpy._core``; Python 3 protocol-2
# pickles encode bytes through ``_codecs.encode``.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }
)


class UnsafePickleError(DataError):
    """A pickle that references a callable outside :data:`ALLOWED_GLOBALS`."""


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds only builtin containers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(f"{module}.{name}")
        return super().find_class(module, name)


def load_array_pickle(path: Path) -> Any:
    """Unpickle ``path`` (Python 2 pickles too: byte strings stay bytes)."""
    try:
        with open(path, "rb") as stream:
            return ArrayUnpickler(stream, encoding="bytes").load()
    except UnsafePickleError as err:
        raise DataError(
            f"refusing to load {path}: the pickle references {err}, which a dataset "
            "batch never needs (the file is corrupt or malicious)"
        ) from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    except Exception as err:  # any other failure while unpickling means a damaged file
        raise DataError(f"corrupt pickle {path}: {type(err).__name__}: {err}") from None
