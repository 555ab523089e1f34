"""Conformational variety: deformations preserve mass, are band-limited, have the configured RMS; B-factor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoengine.physics.deformation import (
    apply_b_factor,
    deform_density,
    draw_b_factor,
    draw_displacement_field,
)

VOXEL_A = 10.0
SHAPE = (24, 24, 24)


def _gaussian(shape, centre, sigma):
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    return np.exp(-0.5 * sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) / sigma**2)


def _molecule():
    centre = np.array(SHAPE) // 2
    return (
        _gaussian(SHAPE, centre, 2.5)
        + 0.7 * _gaussian(SHAPE, centre + [3, 0, 2], 1.8)
        + 0.5 * _gaussian(SHAPE, centre + [-2, 3, -3], 1.5)
    ).astype(np.float32)


def test_displacement_field_is_band_limited_with_the_configured_weighted_rms():
    density = _molecule()
    field = draw_displacement_field(
        SHAPE, VOXEL_A, np.random.default_rng(0), amplitude_A=3.0, min_wavelength_A=120.0, weight_zyx=density
    )
    assert field.shape == (3, *SHAPE)
    rms = np.sqrt(np.sum(density * np.sum(field**2, axis=0)) / density.sum())
    assert rms == pytest.approx(3.0, rel=1e-6)
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*(np.fft.fftfreq(n, VOXEL_A) for n in SHAPE), indexing="ij")))
    for component in field:
        spectrum = np.abs(np.fft.fftn(component))
        assert spectrum[k > 1 / 120.0 + 1e-9].max() < 1e-10 * spectrum.max()  # nothing finer than 120 Å
        assert spectrum[0, 0, 0] < 1e-10 * spectrum.max()  # no rigid translation
        assert spectrum.max() > 0
    # Smooth: neighbouring voxels differ by a small fraction of the amplitude.
    assert np.abs(np.diff(field, axis=1)).max() < 0.5 * np.abs(field).max()


def test_deformation_preserves_mass_and_moves_it_by_the_field():
    density = _molecule()
    field = draw_displacement_field(
        SHAPE, VOXEL_A, np.random.default_rng(1), amplitude_A=5.0, weight_zyx=density
    )
    deformed = deform_density(density, field, VOXEL_A)
    assert abs(deformed.sum() / density.sum() - 1.0) < 2e-4  # issue: <= 1e-3
    assert np.abs(deformed - density).max() > 0.01 * density.max()  # no particle is the exact template
    # A uniform displacement moves the centre of mass by exactly that displacement (Å → voxels).
    uniform = np.broadcast_to(np.array([4.0, -3.0, 2.5])[:, None, None, None], (3, *SHAPE))
    moved = deform_density(density, uniform, VOXEL_A)
    shift_vox = np.array(ndimage.center_of_mass(moved)) - np.array(ndimage.center_of_mass(density))
    np.testing.assert_allclose(shift_vox, [0.4, -0.3, 0.25], atol=2e-3)
    assert moved.sum() == pytest.approx(density.sum(), rel=1e-4)


def test_b_factor_blurs_a_gaussian_into_the_closed_form_gaussian():
    sigma_vox, b = 1.5, 800.0
    centre = np.array(SHAPE) // 2
    blob = _gaussian(SHAPE, centre, sigma_vox)
    blurred = apply_b_factor(blob, VOXEL_A, b)
    # exp(−B k²/4) is a Gaussian of variance B / (8π²) Å² per axis; variances add.
    sigma_out = np.sqrt(sigma_vox**2 + b / (8 * np.pi**2) / VOXEL_A**2)
    expected = _gaussian(SHAPE, centre, sigma_out) * (sigma_vox / sigma_out) ** 3
    np.testing.assert_allclose(blurred, expected, atol=1e-5)
    # Its spectrum is the original's times the envelope.
    k2 = sum(g**2 for g in np.meshgrid(*(np.fft.fftfreq(n, VOXEL_A) for n in SHAPE), indexing="ij"))
    np.testing.assert_allclose(
        np.fft.fftn(blurred), np.fft.fftn(blob) * np.exp(-b * k2 / 4), atol=1e-4 * blob.sum()
    )
    np.testing.assert_allclose(apply_b_factor(blob, VOXEL_A, 0.0), blob, atol=1e-6)


def test_b_factor_draw_is_uniform_in_its_range():
    rng = np.random.default_rng(4)
    draws = np.array([draw_b_factor(rng, 100.0, 500.0) for _ in range(2000)])
    assert draws.min() >= 100.0 and draws.max() <= 500.0
    assert draws.mean() == pytest.approx(300.0, rel=0.03)


def test_same_seed_gives_the_same_bytes():
    a = draw_displacement_field(SHAPE, VOXEL_A, np.random.default_rng(9))
    b = draw_displacement_field(SHAPE, VOXEL_A, np.random.default_rng(9))
    assert a.tobytes() == b.tobytes()
    assert (
        deform_density(_molecule(), a, VOXEL_A).tobytes() == deform_density(_molecule(), b, VOXEL_A).tobytes()
    )
    assert draw_b_factor(np.random.default_rng(9)) == draw_b_factor(np.random.default_rng(9))


@pytest.mark.parametrize(
    "call",
    [
        lambda: draw_displacement_field(SHAPE, VOXEL_A, np.random.default_rng(0), min_wavelength_A=1000.0),
        lambda: draw_displacement_field(SHAPE, VOXEL_A, np.random.default_rng(0), amplitude_A=-1.0),
        lambda: deform_density(np.zeros(SHAPE), np.zeros((3, 2, 2, 2)), VOXEL_A),
        lambda: apply_b_factor(np.zeros(SHAPE), VOXEL_A, -5.0),
        lambda: draw_b_factor(np.random.default_rng(0), 10.0, 5.0),
    ],
)
def test_invalid_inputs_are_refused(call):
    with pytest.raises(ValueError):
        call()
