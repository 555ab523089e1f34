"""Projector contract: adjointness, the tilt-direction convention, bad input, CPU↔CUDA parity."""

import numpy as np
import pytest
from conftest import HAS_ASTRA_CUDA

from cryoengine.physics.projector import (
    TiltGeometry,
    _cuda_geometries,
    backproject_tilts_to_volume,
    project_volume_to_tilts,
    resolve_backend,
)

SHAPE_ZYX = (23, 17, 31)  # odd, non-cubic: an axis mix-up changes shapes or positions
ANGLES_DEG = tuple(np.arange(-57.0, 61.5, 3.0))  # asymmetric range, 40 tilts
CUDA = pytest.param(
    "cuda",
    marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_ASTRA_CUDA, reason="ASTRA without CUDA")],
)
BACKENDS = ["cpu", CUDA]


def gaussian_blob(shape_zyx, centre_zyx, sigma_vox):
    z, y, x = np.indices(shape_zyx, dtype=np.float64)
    r2 = (z - centre_zyx[0]) ** 2 + (y - centre_zyx[1]) ** 2 + (x - centre_zyx[2]) ** 2
    return np.exp(-0.5 * r2 / sigma_vox**2).astype(np.float32)


@pytest.fixture(scope="module")
def geometry():
    return TiltGeometry(SHAPE_ZYX, ANGLES_DEG)


def test_shapes_and_dtype(geometry):
    tilts = project_volume_to_tilts(np.ones(SHAPE_ZYX), geometry, "cpu")
    assert tilts.shape == (len(ANGLES_DEG), 17, 31) and tilts.dtype == np.float32
    volume = backproject_tilts_to_volume(tilts, geometry, "cpu")
    assert volume.shape == SHAPE_ZYX and volume.dtype == np.float32


def test_cpu_projector_and_backprojector_are_exact_adjoints(geometry):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE_ZYX).astype(np.float32)
    y = rng.standard_normal(geometry.tilts_shape).astype(np.float32)
    lhs = np.vdot(project_volume_to_tilts(x, geometry, "cpu").astype(np.float64), y)
    rhs = np.vdot(x.astype(np.float64), backproject_tilts_to_volume(y, geometry, "cpu"))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)  # float32 accumulation only


@pytest.mark.parametrize("backend", BACKENDS)
def test_projector_and_backprojector_are_adjoint(geometry, backend):
    """CUDA's back-projector interpolates on the detector, so it is the adjoint up to interpolation."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(SHAPE_ZYX).astype(np.float32)
    y = rng.standard_normal(geometry.tilts_shape).astype(np.float32)
    ax = project_volume_to_tilts(x, geometry, backend).astype(np.float64)
    lhs = np.vdot(ax, y)
    rhs = np.vdot(x.astype(np.float64), backproject_tilts_to_volume(y, geometry, backend))
    assert abs(lhs - rhs) / (np.linalg.norm(ax) * np.linalg.norm(y)) < 1e-2


@pytest.mark.parametrize("backend", BACKENDS)
def test_blob_lands_where_the_convention_says(geometry, backend):
    """Positive tilt: column u = x·cos θ + z·sin θ about the volume centre; row = y."""
    centre = np.array([15.3, 5.0, 20.6])  # off-centre on every axis, sub-voxel
    tilts = project_volume_to_tilts(gaussian_blob(SHAPE_ZYX, centre, 1.5), geometry, backend)
    z, y, x = centre - (np.array(SHAPE_ZYX) - 1) / 2
    for tilt, angle_deg in zip(tilts, ANGLES_DEG, strict=True):
        theta = np.deg2rad(angle_deg)
        rows, cols = np.indices(tilt.shape)
        mass = tilt.sum()
        u = (tilt * cols).sum() / mass - (SHAPE_ZYX[2] - 1) / 2
        v = (tilt * rows).sum() / mass - (SHAPE_ZYX[1] - 1) / 2
        assert u == pytest.approx(x * np.cos(theta) + z * np.sin(theta), abs=0.05)
        assert v == pytest.approx(y, abs=0.05)


def test_cuda_geometry_follows_the_convention_on_paper(geometry):
    """No GPU needed: ASTRA's documented parallel3d_vec semantics applied to our vectors by hand.

    ASTRA 3D: numpy axes (z, y, x) are its (Z, Y, X), voxel i at coordinate i + ½ − n/2; detector pixel
    (row, col) centre at d + (col + ½ − ncols/2)·u + (row + ½ − nrows/2)·v; rays run along ``ray``.
    """
    vol_geom, proj_geom = _cuda_geometries(geometry)
    assert (vol_geom["GridSliceCount"], vol_geom["GridRowCount"], vol_geom["GridColCount"]) == SHAPE_ZYX
    assert (proj_geom["DetectorRowCount"], proj_geom["DetectorColCount"]) == (17, 31)
    index_zyx = np.array([15.3, 5.0, 20.6])
    x, y, z = (index_zyx + 0.5 - np.array(SHAPE_ZYX) / 2)[::-1]
    for vector, angle_deg in zip(proj_geom["Vectors"], ANGLES_DEG, strict=True):
        ray, d, u, v = vector[0:3], vector[3:6], vector[6:9], vector[9:12]
        # p + t·ray = d + a·u + b·v  →  a·u + b·v − t·ray = p − d
        _, a, b = np.linalg.solve(np.stack([-ray, u, v], axis=1), np.array([x, y, z]) - d)
        col, row = a - 0.5 + 31 / 2, b - 0.5 + 17 / 2
        theta = np.deg2rad(angle_deg)
        assert col - 15 == pytest.approx(x * np.cos(theta) + z * np.sin(theta), abs=1e-9)
        assert row == pytest.approx(index_zyx[1], abs=1e-9)


def test_zero_tilt_is_the_sum_along_z():
    geometry = TiltGeometry(SHAPE_ZYX, (0.0,))
    volume = np.random.default_rng(2).random(SHAPE_ZYX, dtype=np.float32)
    np.testing.assert_allclose(project_volume_to_tilts(volume, geometry, "cpu")[0], volume.sum(0), rtol=1e-5)


@pytest.mark.parametrize(
    ("shape", "angles", "match"),
    [
        (SHAPE_ZYX, (-90.0, 0.0), "-90"),
        (SHAPE_ZYX, (0.0, 95.0), "95"),
        (SHAPE_ZYX, (0.0, float("nan")), "nan"),
        (SHAPE_ZYX, (), "non-empty"),
        ((23, 17), (0.0,), "three positive integers"),
        ((23, 0, 31), (0.0,), "three positive integers"),
        ((23.5, 17, 31), (0.0,), "three positive integers"),
    ],
)
def test_geometry_rejects_bad_input(shape, angles, match):
    with pytest.raises(ValueError, match=match):
        TiltGeometry(shape, angles)


def test_projector_rejects_wrong_shapes_and_backends(geometry):
    with pytest.raises(ValueError, match=r"\(23, 17, 31\)"):
        project_volume_to_tilts(np.zeros((23, 31, 17)), geometry, "cpu")
    with pytest.raises(ValueError, match="tilts must have shape"):
        backproject_tilts_to_volume(np.zeros((3, 17, 31)), geometry, "cpu")
    with pytest.raises(ValueError, match="'gpu'"):
        resolve_backend("gpu")
    if not HAS_ASTRA_CUDA:
        with pytest.raises(ValueError, match="no usable CUDA"):
            resolve_backend("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_ASTRA_CUDA, reason="ASTRA without CUDA")
def test_cuda_matches_cpu(geometry):
    """Same Joseph projector (CUDA: 8-bit texture weights); BP differs by its detector interpolation."""
    phantom = gaussian_blob(SHAPE_ZYX, (13.0, 9.0, 17.5), 2.5)
    tilts_cpu = project_volume_to_tilts(phantom, geometry, "cpu")
    tilts_cuda = project_volume_to_tilts(phantom, geometry, "cuda")
    assert np.linalg.norm(tilts_cuda - tilts_cpu) / np.linalg.norm(tilts_cpu) < 0.01
    volume_cpu = backproject_tilts_to_volume(tilts_cpu, geometry, "cpu")
    volume_cuda = backproject_tilts_to_volume(tilts_cpu, geometry, "cuda")
    assert np.linalg.norm(volume_cuda - volume_cpu) / np.linalg.norm(volume_cpu) < 0.05
