"""Save and load named arrays as one ``.npz`` file, written atomically.

The file is a plain NumPy archive: ``numpy.load(path)`` reads it without
minifcn. Writing goes to a temporary file in the same folder, which is then
renamed over the target, so a crash mid-write never leaves a half-written
checkpoint behind (the rename is atomic on POSIX and Windows).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from typing import Any, Mapping

import numpy as np

from .autograd import Tensor
from .backend import to_device


def _host_array(key: str, value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, str):
        return np.asarray(value)  # a 0-d unicode array, e.g. JSON metadata
    if isinstance(value, (int, float, bool, np.generic)):
        return np.asarray(value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        array = to_device(value, "cpu")
        if array.dtype.kind == "O":
            raise TypeError(f"save: entry {key!r} has dtype object, which .npz cannot hold without pickle")
        return array
    raise TypeError(f"save: entry {key!r} is a {type(value).__name__}; expected an array, a Tensor, a number or a str")


def save(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` (name -> array, Tensor, number or str) to ``path`` as .npz, atomically.

    GPU arrays are copied to the host, so the file does not depend on the
    device it was saved from. ``path`` is used as given (no '.npz' appended).
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"save: expected a mapping of names to arrays, got {type(state).__name__}")
    arrays = {}
    for key, value in state.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"save: keys must be non-empty strings, got {key!r}")
        arrays[key] = _host_array(key, value)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)  # mkstemp makes the file private; give it the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save` into a dict of NumPy arrays (host memory)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file {path!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"load: {path!r} is not a readable .npz archive ({e})") from None
