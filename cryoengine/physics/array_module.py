"""Array-module seam: NumPy everywhere, CuPy when it is installed and sees a GPU.

The only module that imports CuPy; everything else asks for ``xp`` by device name.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any, Literal

import numpy as np

__all__ = ["Device", "cupy_available", "get_array_module", "to_numpy"]

Device = Literal["auto", "cpu", "cuda"]


@functools.cache
def _cupy() -> ModuleType | None:
    """CuPy if it imports and sees at least one device, else None."""
    try:
        cupy = importlib.import_module("cupy")
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # not installed, no driver, no device: CuPy raises its own runtime errors
        return None
    return cupy


def cupy_available() -> bool:
    """Whether CuPy is installed and sees a GPU.

    Returns
    -------
    bool
        True when ``get_array_module("cuda")`` will succeed.
    """
    return _cupy() is not None


def get_array_module(device: Device = "auto") -> ModuleType:
    """Return the array module of a device: ``numpy`` for ``"cpu"``, ``cupy`` for ``"cuda"``.

    Parameters
    ----------
    device
        ``"auto"`` (CuPy when available, else NumPy), ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    module
        ``numpy`` or ``cupy``.
    """
    if device == "cpu":
        return np
    if device not in ("auto", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    cupy = _cupy()
    if cupy is not None:
        return cupy
    if device == "cuda":
        raise ValueError("device 'cuda' was requested but CuPy is not installed or sees no GPU")
    return np


def to_numpy(array: Any) -> np.ndarray:
    """Copy a CuPy array to the host; return NumPy arrays (and array-likes) as NumPy arrays.

    Parameters
    ----------
    array
        A NumPy or CuPy array, or anything ``numpy.asarray`` accepts.

    Returns
    -------
    np.ndarray
        The same values in host memory.
    """
    if isinstance(array, np.ndarray):
        return array
    cupy = _cupy()
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy.asnumpy(array)
    return np.asarray(array)
