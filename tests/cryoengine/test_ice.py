"""Ice: its potential, protein contrast against it (the ratio of potentials), inelastic loss per tilt."""

from __future__ import annotations

import numpy as np
import pytest

from cryoengine.physics.ice import (
    INELASTIC_MEAN_FREE_PATH_300KV_A,
    PROTEIN_POTENTIAL_PER_A2,
    VOLT_A2_PER_POTENTIAL,
    apply_thickness_to_tilts,
    contrast_against_ice,
    ice_potential_per_A2,
    zero_loss_fraction,
)
from cryoengine.physics.projector import TiltGeometry, project_volume_to_tilts


def test_ice_potential_in_volts_matches_the_measured_mean_inner_potential_of_water():
    volts = ice_potential_per_A2() * VOLT_A2_PER_POTENTIAL
    assert 4.0 < volts < 5.0  # liquid water: 4.48 ± 0.19 V (Yesibolati et al. 2020)
    assert 6.0 < PROTEIN_POTENTIAL_PER_A2 * VOLT_A2_PER_POTENTIAL < 7.0
    assert ice_potential_per_A2(0.91) / ice_potential_per_A2(0.94) == pytest.approx(0.91 / 0.94, rel=1e-12)


def _particle(shape=(24, 32, 32), sigma=2.5):
    grids = np.meshgrid(*(np.arange(n) - n // 2 for n in shape), indexing="ij")
    blob = np.exp(-0.5 * sum(g**2 for g in grids) / sigma**2)
    return (0.8 * PROTEIN_POTENTIAL_PER_A2 * blob).astype(np.float32)  # peak below pure protein


def test_protein_replacing_ice_lowers_its_contrast_by_the_ratio_of_potentials():
    protein = _particle()
    ice = ice_potential_per_A2()
    # The explicit specimen: ice everywhere except the volume the protein takes (fraction ρ / V_protein).
    specimen = ice * (1.0 - protein / PROTEIN_POTENTIAL_PER_A2) + protein
    geometry = TiltGeometry(protein.shape, (-45.0, 0.0, 30.0))
    flat = project_volume_to_tilts(np.full(protein.shape, ice, np.float32), geometry, backend="cpu")
    contrast_in_ice = project_volume_to_tilts(specimen.astype(np.float32), geometry, backend="cpu") - flat
    contrast_in_vacuum = project_volume_to_tilts(protein, geometry, backend="cpu")
    expected = 1.0 - ice / PROTEIN_POTENTIAL_PER_A2
    ratio = contrast_in_ice.sum(axis=(1, 2)) / contrast_in_vacuum.sum(axis=(1, 2))
    np.testing.assert_allclose(ratio, expected, rtol=1e-4)
    # ... and contrast_against_ice is that specimen minus its flat ice, voxel by voxel.
    np.testing.assert_allclose(contrast_against_ice(protein, ice), specimen - ice, atol=1e-7)
    assert 0.25 < expected < 0.35


def test_zero_loss_fraction_follows_beer_lambert_along_the_tilted_path():
    angles = np.array([-60.0, -30.0, 0.0, 20.0, 60.0])
    t_A = 2000.0
    fraction = zero_loss_fraction(angles, t_A)
    np.testing.assert_allclose(
        -np.log(fraction) * np.cos(np.deg2rad(angles)), t_A / INELASTIC_MEAN_FREE_PATH_300KV_A, rtol=1e-12
    )
    assert fraction[2] == pytest.approx(np.exp(-t_A / INELASTIC_MEAN_FREE_PATH_300KV_A))
    assert fraction[0] == pytest.approx(fraction[2] ** 2)  # cos 60° = 1/2: twice the path
    np.testing.assert_array_equal(zero_loss_fraction(angles, 0.0), 1.0)


def test_thickness_weights_each_tilts_signal_power_by_its_zero_loss_fraction():
    angles = np.array([-60.0, 0.0, 45.0])
    rng = np.random.default_rng(3)
    tilts = rng.standard_normal((3, 8, 8)).astype(np.float32)
    fraction = zero_loss_fraction(angles, 3000.0)
    weighted = apply_thickness_to_tilts(tilts, fraction)
    power = (weighted.astype(np.float64) ** 2).sum(axis=(1, 2)) / (tilts.astype(np.float64) ** 2).sum(
        axis=(1, 2)
    )
    np.testing.assert_allclose(power, fraction, rtol=1e-5)  # SNR against unit noise ∝ zero-loss electrons


@pytest.mark.parametrize(
    "call",
    [
        lambda: ice_potential_per_A2(0.0),
        lambda: contrast_against_ice(np.zeros((2, 2, 2)), PROTEIN_POTENTIAL_PER_A2),
        lambda: zero_loss_fraction(np.array([90.0]), 100.0),
        lambda: zero_loss_fraction(np.array([0.0]), -1.0),
        lambda: apply_thickness_to_tilts(np.zeros((2, 3, 3)), np.array([1.0])),
    ],
)
def test_invalid_inputs_are_refused(call):
    with pytest.raises(ValueError):
        call()
