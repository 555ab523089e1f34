"""Shared fixtures and the one place that defines hardware capability flags for the test suite."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest_plugins = ["tests.aptvit.pretrain_factory"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _astra_has_cuda() -> bool:
    try:
        import astra
    except ImportError:
        return False
    return bool(astra.use_cuda())


def _cupy_has_gpu() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device: CuPy raises its own runtime errors
        return False


def _torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


HAS_ASTRA_CUDA = _astra_has_cuda()
HAS_CUPY = _cupy_has_gpu()
HAS_TORCH_CUDA = _torch_has_cuda()
HAS_ANY_GPU = HAS_ASTRA_CUDA or HAS_CUPY or HAS_TORCH_CUDA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` on machines without a GPU (their CPU twins still run)."""
    if HAS_ANY_GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline structure collection beside the checkout (``../shared/data``); skip if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA
