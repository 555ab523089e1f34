"""Array-module seam: NumPy always works, CuPy only when present; bad device names are refused."""

import numpy as np
import pytest
from conftest import HAS_CUPY

from cryoengine.physics.array_module import cupy_available, get_array_module, to_numpy


def test_cpu_is_numpy_and_auto_falls_back_to_it():
    assert get_array_module("cpu") is np
    assert cupy_available() == HAS_CUPY
    if not HAS_CUPY:
        assert get_array_module("auto") is np
        with pytest.raises(ValueError, match="'cuda' was requested"):
            get_array_module("cuda")


def test_to_numpy_passes_host_arrays_through():
    array = np.arange(6.0).reshape(2, 3)
    assert to_numpy(array) is array
    np.testing.assert_array_equal(to_numpy([[1, 2], [3, 4]]), np.array([[1, 2], [3, 4]]))


def test_bad_device_is_refused():
    with pytest.raises(ValueError, match="'gpu'"):
        get_array_module("gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUPY, reason="CuPy with a GPU is not available")
def test_cuda_round_trip():
    cupy = get_array_module("cuda")
    assert get_array_module("auto") is cupy
    host = np.arange(5.0, dtype=np.float32)
    np.testing.assert_array_equal(to_numpy(cupy.asarray(host)), host)
