"""Imperfect acquisition: misalignment lowers the FSC, unit-sum motion blur, defocus error, detector MTF."""

from __future__ import annotations

import numpy as np
import pytest

from cryoengine.physics.acquisition import (
    apply_detector_mtf_to_tilts,
    apply_motion_blur_to_tilts,
    detector_dqe,
    detector_mtf,
    draw_defocus_estimate,
    draw_motion_blur,
    draw_tilt_misalignment,
    misalign_tilts,
    motion_blur_transfer,
)
from cryoengine.physics.ctf import CtfParameters, ctf_of_frequency, rfft2_frequencies_per_A
from cryoengine.physics.projector import TiltGeometry, project_volume_to_tilts
from cryoengine.physics.reconstruction import reconstruct_tilts_to_volume
from cryoengine.physics.tilt import TiltScheme, apply_ctf_and_exposure_to_tilts

ANGLES = np.arange(-60.0, 60.1, 4.0)


def _phantom(shape=(16, 32, 32), seed=0):
    """A few Gaussian blobs in the middle of a slab (smooth, well inside the field)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    volume = np.zeros(shape)
    for _ in range(12):
        centre = rng.uniform([5, 9, 9], [shape[0] - 5, shape[1] - 9, shape[2] - 9])
        volume += np.exp(-0.5 * sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) / 1.5**2)
    return volume.astype(np.float32)


def _mean_fsc(a, b, shells=8):
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*(np.fft.fftfreq(n) for n in a.shape), indexing="ij")))
    edges = np.linspace(0.0, 0.4, shells + 1)
    values = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        shell = (k >= low) & (k < high)
        cross = np.real(np.sum(fa[shell] * np.conj(fb[shell])))
        values.append(cross / np.sqrt(np.sum(np.abs(fa[shell]) ** 2) * np.sum(np.abs(fb[shell]) ** 2)))
    return np.array(values)


def test_misaligned_tilt_series_reconstructs_with_a_lower_fsc():
    phantom = _phantom()
    geometry = TiltGeometry(phantom.shape, tuple(ANGLES))
    tilts = project_volume_to_tilts(phantom, geometry, backend="cpu")
    clean = reconstruct_tilts_to_volume(tilts, geometry, backend="cpu")
    voxel_A = 10.0
    shifts, rotations = draw_tilt_misalignment(
        ANGLES,
        np.random.default_rng(1),
        shift_sigma_min_A=10.0,
        shift_sigma_max_A=20.0,
        rotation_sigma_min_deg=0.5,
        rotation_sigma_max_deg=1.0,
    )
    misaligned = reconstruct_tilts_to_volume(
        misalign_tilts(tilts, shifts, rotations, voxel_A), geometry, backend="cpu"
    )
    fsc_clean, fsc_misaligned = _mean_fsc(clean, phantom), _mean_fsc(misaligned, phantom)
    assert np.all(fsc_misaligned[2:] < fsc_clean[2:] - 0.05)  # beyond the lowest shells
    assert fsc_misaligned.mean() < fsc_clean.mean() - 0.1
    # No error, no change: the transform is the identity up to spline round-off.
    same = misalign_tilts(tilts, np.zeros((len(ANGLES), 2)), np.zeros(len(ANGLES)), voxel_A)
    np.testing.assert_allclose(same, tilts, atol=1e-4 * np.abs(tilts).max())


def test_misalignment_moves_a_point_by_its_shift_and_rotates_from_x_towards_y():
    image = np.zeros((1, 21, 21), np.float32)
    image[0, 10, 15] = 1.0  # 5 pixels along +x from the centre (10, 10)
    rotated = misalign_tilts(image, np.zeros((1, 2)), np.array([90.0]), 2.0)
    assert np.unravel_index(np.argmax(rotated[0]), (21, 21)) == (15, 10)  # now 5 pixels along +y
    shifted = misalign_tilts(image, np.array([[4.0, -6.0]]), np.zeros(1), 2.0)  # (y, x) Å = (2, -3) pixels
    assert np.unravel_index(np.argmax(shifted[0]), (21, 21)) == (12, 12)


def test_misalignment_sigma_grows_with_tilt_as_in_polnet():
    rng = np.random.default_rng(5)
    angles = np.array([0.0, 30.0, -60.0])
    draws = [
        draw_tilt_misalignment(angles, rng, shift_sigma_min_A=1.0, shift_sigma_max_A=3.0) for _ in range(4000)
    ]
    shifts = np.stack([d[0] for d in draws])
    rotations = np.stack([d[1] for d in draws])
    growth = np.abs(np.sin(np.deg2rad(angles))) / np.sin(np.deg2rad(60.0))
    np.testing.assert_allclose(shifts.std(axis=(0, 2)), 1.0 + 2.0 * growth, rtol=0.05)
    np.testing.assert_allclose(rotations.std(axis=0), 0.1 + 0.4 * growth, rtol=0.05)


def test_motion_blur_kernel_has_unit_sum_and_is_the_transform_of_its_track():
    freq_y, freq_x = rfft2_frequencies_per_A((32, 32), 2.0)
    d = np.array([3.0, -5.0])
    transfer = motion_blur_transfer(freq_y, freq_x, d)
    assert transfer[0, 0] == 1.0  # kernel sum
    kernel = np.fft.irfft2(transfer, s=(32, 32))
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    t = (np.arange(2000) + 0.5) / 2000 - 0.5  # the track, sampled finely
    phase = np.exp(-2j * np.pi * t[:, None, None] * (freq_y * d[0] + freq_x * d[1])[None])
    np.testing.assert_allclose(transfer, phase.mean(axis=0).real, atol=1e-5)
    tilts = np.random.default_rng(0).standard_normal((2, 32, 32)).astype(np.float32)
    blurred = apply_motion_blur_to_tilts(tilts, np.array([d, [0.0, 0.0]]), 2.0)
    np.testing.assert_allclose(blurred.sum(axis=(1, 2)), tilts.sum(axis=(1, 2)), atol=1e-3)
    np.testing.assert_allclose(blurred[1], tilts[1], atol=1e-5)


def test_detector_mtf_at_nyquist_equals_the_pixel_aperture_formula():
    p = 1.5
    nyquist = 1.0 / (2.0 * p)
    assert detector_mtf(np.array(0.0), np.array(nyquist), p) == pytest.approx(2.0 / np.pi)
    assert detector_mtf(np.array(nyquist), np.array(0.0), p) == pytest.approx(2.0 / np.pi)
    assert detector_mtf(np.array(nyquist), np.array(nyquist), p) == pytest.approx((2.0 / np.pi) ** 2)
    sigma = 0.7
    assert detector_mtf(np.array(0.0), np.array(nyquist), p, sigma) == pytest.approx(
        2.0 / np.pi * np.exp(-2.0 * np.pi**2 * sigma**2 * nyquist**2)
    )
    assert detector_dqe(np.array(0.0), np.array(nyquist), p, dqe_zero=0.8) == pytest.approx(
        0.8 * 4 / np.pi**2
    )
    assert detector_mtf(np.array(0.0), np.array(0.0), p) == 1.0
    # On a tilt image whose pixel is the detector pixel, a Nyquist cosine along x is scaled by 2/π.
    x = np.arange(16)
    tilt = np.tile(np.cos(np.pi * x), (16, 1))[None].astype(np.float32)
    np.testing.assert_allclose(apply_detector_mtf_to_tilts(tilt, p, p), 2.0 / np.pi * tilt, atol=1e-5)


def test_phase_flipping_with_a_defocus_estimate_flips_by_the_estimates_sign():
    ctf = CtfParameters(defocus_um=3.0, astigmatism_um=0.2, astigmatism_angle_deg=30.0)
    scheme = TiltScheme(-3.0, 3.0, 3.0)
    projections = np.random.default_rng(2).standard_normal((3, 32, 32)).astype(np.float32)
    kwargs = dict(phase_flip=True, exposure_filtering=False)
    exact = apply_ctf_and_exposure_to_tilts(projections, scheme, ctf, 5.0, **kwargs)
    np.testing.assert_array_equal(
        apply_ctf_and_exposure_to_tilts(projections, scheme, ctf, 5.0, assumed_ctf=ctf, **kwargs), exact
    )
    assumed = draw_defocus_estimate(ctf, np.random.default_rng(0), sigma_um=0.5)
    assert assumed.defocus_um != ctf.defocus_um and assumed.astigmatism_um == ctf.astigmatism_um
    wrong = apply_ctf_and_exposure_to_tilts(projections, scheme, ctf, 5.0, assumed_ctf=assumed, **kwargs)
    freq_y, freq_x = rfft2_frequencies_per_A((32, 32), 5.0)
    transfer = ctf_of_frequency(freq_y, freq_x, ctf) * np.sign(ctf_of_frequency(freq_y, freq_x, assumed))
    assert np.any(transfer < 0)  # bands flipped the wrong way
    expected = np.fft.irfft2(np.fft.rfft2(projections) * transfer, s=(32, 32))
    np.testing.assert_allclose(wrong, expected, atol=1e-4)
    assert draw_defocus_estimate(ctf, np.random.default_rng(0), sigma_um=0.0) == ctf


def test_same_seed_gives_the_same_bytes():
    for seed in (0, 1):
        a = draw_tilt_misalignment(ANGLES, np.random.default_rng(seed))
        b = draw_tilt_misalignment(ANGLES, np.random.default_rng(seed))
        assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))
        assert draw_motion_blur(7, np.random.default_rng(seed)).tobytes() == (
            draw_motion_blur(7, np.random.default_rng(seed)).tobytes()
        )
    lengths = np.linalg.norm(draw_motion_blur(1000, np.random.default_rng(0), 4.0), axis=1)
    assert lengths.max() <= 4.0 and lengths.mean() == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize(
    "call",
    [
        lambda: draw_tilt_misalignment(
            ANGLES, np.random.default_rng(0), shift_sigma_min_A=3.0, shift_sigma_max_A=1.0
        ),
        lambda: misalign_tilts(np.zeros((2, 4, 4)), np.zeros((3, 2)), np.zeros(2), 1.0),
        lambda: draw_motion_blur(0, np.random.default_rng(0)),
        lambda: detector_mtf(np.array(0.0), np.array(0.0), 0.0),
        lambda: detector_dqe(np.array(0.0), np.array(0.0), 1.0, dqe_zero=1.5),
        lambda: draw_defocus_estimate(CtfParameters(), np.random.default_rng(0), -0.1),
    ],
)
def test_invalid_inputs_are_refused(call):
    with pytest.raises(ValueError):
        call()
