"""Reconstruction physics: intensity scale, phantom recovery, missing wedge, linearity, CPU↔CUDA parity."""

import numpy as np
import pytest
from conftest import HAS_ASTRA_CUDA

from cryoengine.physics.projector import TiltGeometry, project_volume_to_tilts
from cryoengine.physics.reconstruction import (
    angular_weights_rad,
    ramp_filter_rfft,
    reconstruct_tilts_to_volume,
    sirt_reconstruct_tilts_to_volume,
    weighted_backproject_tilts_to_volume,
)

SHAPE_ZYX = (23, 17, 31)
CENTRE_ZYX = (13.0, 9.0, 17.5)  # off the volume centre (11, 8, 15) on every axis
FULL_RANGE_DEG = tuple(np.arange(-88.5, 88.6, 3.0))  # 60 tilts covering the half-circle
LIMITED_RANGE_DEG = tuple(np.arange(-60.0, 60.1, 3.0))  # the default ±60°/3° scheme
WEDGE_SHAPE_ZYX = (31, 17, 37)


def radius(shape_zyx, centre_zyx):
    z, y, x = np.indices(shape_zyx, dtype=np.float64)
    return np.sqrt((z - centre_zyx[0]) ** 2 + (y - centre_zyx[1]) ** 2 + (x - centre_zyx[2]) ** 2)


@pytest.fixture(scope="module")
def ball():
    return (radius(SHAPE_ZYX, CENTRE_ZYX) <= 5.0).astype(np.float32)


@pytest.fixture(scope="module")
def blob():
    return np.exp(-0.5 * (radius(SHAPE_ZYX, CENTRE_ZYX) / 2.5) ** 2).astype(np.float32)


def correlation(a, b):
    return np.corrcoef(a.ravel(), b.ravel())[0, 1]


def test_full_range_wbp_gives_the_phantom_intensity(ball):
    """Tilts over 180°: the mean inside the ball (r ≤ 3, away from the edge) within 3 % of 1."""
    geometry = TiltGeometry(SHAPE_ZYX, FULL_RANGE_DEG)
    volume = weighted_backproject_tilts_to_volume(project_volume_to_tilts(ball, geometry, "cpu"), geometry)
    inner = radius(SHAPE_ZYX, CENTRE_ZYX) <= 3.0
    assert volume[inner].mean() == pytest.approx(1.0, rel=0.03)
    assert correlation(volume, ball) > 0.95


@pytest.mark.parametrize(("angles", "covered_deg"), [(FULL_RANGE_DEG, 180.0), (LIMITED_RANGE_DEG, 123.0)])
def test_wbp_keeps_the_covered_fraction_of_the_low_frequencies(blob, angles, covered_deg):
    """The integral around the blob (r ≤ 6 vox, its low frequencies) is scaled by the covered angle / 180°.

    ±60°/3° = 41 tilts standing for 3° each: 123° of the half-circle, the rest is the missing wedge.
    """
    geometry = TiltGeometry(SHAPE_ZYX, angles)
    volume = weighted_backproject_tilts_to_volume(project_volume_to_tilts(blob, geometry, "cpu"), geometry)
    near = radius(SHAPE_ZYX, CENTRE_ZYX) <= 6.0
    assert volume[near].sum() / blob[near].sum() == pytest.approx(covered_deg / 180.0, rel=0.03)


@pytest.mark.parametrize(
    ("angles", "method", "floor"),
    [(FULL_RANGE_DEG, "wbp", 0.99), (LIMITED_RANGE_DEG, "wbp", 0.80), (LIMITED_RANGE_DEG, "sirt", 0.85)],
)
def test_phantom_reconstructs_in_place(blob, angles, method, floor):
    """Correlation with the off-centre phantom; the missing wedge elongates it along z, hence the floors."""
    geometry = TiltGeometry(SHAPE_ZYX, angles)
    tilts = project_volume_to_tilts(blob, geometry, "cpu")
    volume = reconstruct_tilts_to_volume(tilts, geometry, method)
    assert correlation(volume, blob) > floor
    peak_zyx = np.unravel_index(np.argmax(volume), SHAPE_ZYX)
    assert np.linalg.norm(np.subtract(peak_zyx, CENTRE_ZYX)) <= 1.0


def wedge_power_ratio(volume_zyx, tilt_max_deg, margin_deg=10.0, k_min=0.05):
    """Mean Fourier power inside the missing wedge over that outside (Hann-windowed, |k| in (k_min, ½])."""
    window = np.ones(volume_zyx.shape)
    for axis, n in enumerate(volume_zyx.shape):
        shape = [1, 1, 1]
        shape[axis] = n
        window = window * np.hanning(n).reshape(shape)
    power = np.abs(np.fft.fftn(volume_zyx * window)) ** 2
    kz = np.fft.fftfreq(volume_zyx.shape[0])[:, None, None]
    kx = np.fft.fftfreq(volume_zyx.shape[2])[None, None, :]
    elevation_deg = np.broadcast_to(np.degrees(np.arctan2(np.abs(kz), np.abs(kx))), power.shape)
    k_zx = np.broadcast_to(np.hypot(kz, kx), power.shape)
    ring = (k_zx > k_min) & (k_zx <= 0.5)
    inside = ring & (elevation_deg > tilt_max_deg + margin_deg)
    outside = ring & (elevation_deg < tilt_max_deg - margin_deg)
    return power[inside].mean() / power[outside].mean()


@pytest.mark.parametrize("method", ["wbp", "sirt"])
def test_reconstruction_is_empty_in_the_missing_wedge(method):
    """White-noise volume, projected over ±60° and reconstructed: < 2 % of the sampled power in the wedge."""
    geometry = TiltGeometry(WEDGE_SHAPE_ZYX, LIMITED_RANGE_DEG)
    white = np.random.default_rng(3).standard_normal(WEDGE_SHAPE_ZYX).astype(np.float32)
    volume = reconstruct_tilts_to_volume(project_volume_to_tilts(white, geometry, "cpu"), geometry, method)
    assert wedge_power_ratio(volume, 60.0) < 0.02
    assert wedge_power_ratio(white, 60.0) == pytest.approx(1.0, rel=0.1)  # the measure itself is fair


@pytest.mark.parametrize("method", ["wbp", "sirt"])
def test_reconstruction_is_linear(blob, method):
    """The premise of the SNR mixing: rec(s + α·n) = rec(s) + α·rec(n)."""
    geometry = TiltGeometry(SHAPE_ZYX, LIMITED_RANGE_DEG)
    signal = project_volume_to_tilts(blob, geometry, "cpu")
    noise = np.random.default_rng(4).standard_normal(geometry.tilts_shape).astype(np.float32)
    mixed = reconstruct_tilts_to_volume(signal + 0.7 * noise, geometry, method, n_iterations=10)
    parts = reconstruct_tilts_to_volume(signal, geometry, method, n_iterations=10) + 0.7 * (
        reconstruct_tilts_to_volume(noise, geometry, method, n_iterations=10)
    )
    assert np.linalg.norm(mixed - parts) / np.linalg.norm(parts) < 1e-5


def test_ramp_filter_is_the_ramp_up_to_the_taper():
    n_padded, plain = ramp_filter_rfft(31, rolloff_start_nyquist=1.0)
    freq = np.fft.rfftfreq(n_padded)
    assert n_padded >= 62
    middle = (freq > 0.02) & (freq < 0.48)
    np.testing.assert_allclose(plain[middle], freq[middle], atol=1e-3)
    assert plain[0] > 0  # the exact Ram-Lak keeps a little of the zero frequency
    _, tapered = ramp_filter_rfft(31, rolloff_start_nyquist=0.8)
    np.testing.assert_array_equal(tapered[freq <= 0.4], plain[freq <= 0.4])
    assert tapered[-1] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(tapered[freq >= 0.4]) <= 0)


def test_angular_weights():
    np.testing.assert_allclose(angular_weights_rad([0.0, -3.0, 3.0, 6.0]), np.deg2rad([3.0] * 4))
    np.testing.assert_allclose(angular_weights_rad([-10.0, 0.0, 2.0]), np.deg2rad([10.0, 6.0, 2.0]))
    assert angular_weights_rad([5.0]) == pytest.approx([np.pi])


def test_bad_input_is_refused(blob):
    geometry = TiltGeometry(SHAPE_ZYX, LIMITED_RANGE_DEG)
    tilts = np.zeros(geometry.tilts_shape, np.float32)
    with pytest.raises(ValueError, match="'fbp'"):
        reconstruct_tilts_to_volume(tilts, geometry, "fbp")
    with pytest.raises(ValueError, match="n_iterations must be >= 1, got 0"):
        sirt_reconstruct_tilts_to_volume(tilts, geometry, n_iterations=0)
    with pytest.raises(ValueError, match="tilts must have shape"):
        weighted_backproject_tilts_to_volume(tilts[:-1], geometry)
    with pytest.raises(ValueError, match="rolloff_start_nyquist"):
        weighted_backproject_tilts_to_volume(tilts, geometry, rolloff_start_nyquist=0.0)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_ASTRA_CUDA, reason="ASTRA without CUDA")
@pytest.mark.parametrize("method", ["wbp", "sirt"])
def test_cuda_reconstruction_matches_cpu(blob, method):
    """Smooth phantom; the back-projectors interpolate differently (see test_projector), so ≤ 5 %."""
    geometry = TiltGeometry(SHAPE_ZYX, LIMITED_RANGE_DEG)
    tilts = project_volume_to_tilts(blob, geometry, "cpu")
    cpu = reconstruct_tilts_to_volume(tilts, geometry, method, backend="cpu")
    cuda = reconstruct_tilts_to_volume(tilts, geometry, method, backend="cuda")
    assert np.linalg.norm(cuda - cpu) / np.linalg.norm(cpu) < 0.05
