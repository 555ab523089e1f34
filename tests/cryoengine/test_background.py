"""Structural background: configured volume fraction and band limit; crowding to 25 % with touching cores."""

from __future__ import annotations

import numpy as np
import pytest

from cryoengine.physics.background import draw_structural_background
from cryoengine.physics.density import MASS_CONTOUR_FRACTION
from cryoengine.physics.ice import PROTEIN_POTENTIAL_PER_A2
from cryoengine.physics.placement import Placements, density_to_support_mask, place_particles, render_sample

VOXEL_A = 10.0
SHAPE = (16, 40, 40)


def _frequency(shape):
    grids = np.meshgrid(*(np.fft.fftfreq(n, VOXEL_A) for n in shape), indexing="ij")
    return np.sqrt(sum(g**2 for g in grids))


@pytest.mark.parametrize(("fraction", "length_A"), [(0.1, 40.0), (0.25, 30.0)])
def test_background_holds_the_configured_protein_fraction_and_is_band_limited(fraction, length_A):
    background = draw_structural_background(
        SHAPE, VOXEL_A, np.random.default_rng(0), volume_fraction=fraction, correlation_length_A=length_A
    )
    assert background.shape == SHAPE and background.dtype == np.float32
    # The volume fraction of protein = mean potential / potential of pure protein.
    assert background.mean(dtype=np.float64) / PROTEIN_POTENTIAL_PER_A2 == pytest.approx(fraction, rel=1e-4)
    spectrum = np.abs(np.fft.fftn(background.astype(np.float64)))
    assert spectrum[_frequency(SHAPE) > 1.0 / length_A].max() < 1e-5 * spectrum.max()
    # Features of the configured size: structure passes well below the cutoff.
    k = _frequency(SHAPE)
    assert spectrum[(k > 0) & (k < 0.5 / length_A)].mean() > 10 * spectrum[k > 1.0 / length_A].max()


def test_excluded_voxels_take_no_background_and_the_fraction_is_kept():
    excluded = np.zeros(SHAPE, bool)
    excluded[:, :20] = True
    background = draw_structural_background(
        SHAPE, VOXEL_A, np.random.default_rng(1), volume_fraction=0.2, excluded_zyx=excluded
    )
    assert background.mean(dtype=np.float64) / PROTEIN_POTENTIAL_PER_A2 == pytest.approx(0.2, rel=1e-4)
    inside = background[:, 4:16].mean() / PROTEIN_POTENTIAL_PER_A2  # away from the edge of the exclusion
    assert inside < 0.01
    with pytest.raises(ValueError, match="free"):
        draw_structural_background(
            SHAPE, VOXEL_A, np.random.default_rng(1), volume_fraction=0.6, excluded_zyx=excluded
        )


def test_same_seed_gives_the_same_bytes():
    a = draw_structural_background(SHAPE, VOXEL_A, np.random.default_rng(7))
    b = draw_structural_background(SHAPE, VOXEL_A, np.random.default_rng(7))
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != draw_structural_background(SHAPE, VOXEL_A, np.random.default_rng(8)).tobytes()


def _blobs(shape, blobs):
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    centre = np.array(shape) // 2
    return sum(
        w * np.exp(-0.5 * sum((g - c) ** 2 for g, c in zip(grids, centre + np.array(o), strict=True)) / s**2)
        for w, o, s in blobs
    ).astype(np.float32)


def test_crowding_to_25_percent_places_touching_particles_whose_cores_do_not_overlap():
    densities = [
        _blobs((15, 15, 15), [(1.0, (0, 0, 0), 2.0), (0.8, (3, 0, 0), 1.5)]),
        _blobs((13, 13, 13), [(1.0, (0, 0, 0), 2.0), (0.7, (0, 0, 3), 1.2)]),
        _blobs((11, 11, 11), [(1.0, (0, -2, 0), 1.3), (1.0, (0, 2, 0), 1.3)]),
    ]
    cores = [density_to_support_mask(d, MASS_CONTOUR_FRACTION, 0) for d in densities]
    slab = (24, 48, 48)
    placements = place_particles(slab, cores, 4, 0, 0.25, np.random.default_rng(1), rotated_support_level=0.5)
    is_crowder = placements.class_index != 0
    core_volume = sum(int(cores[k].sum()) for k in placements.class_index[is_crowder])
    assert core_volume / np.prod(slab) == pytest.approx(0.25, abs=0.01)
    # Rendered at their poses, the particles' densities above the mass contour (the tested cores) overlap
    # on at most a sub-voxel rim (< 0.2 % of their voxels: binary mask vs spline contour), their inner
    # cores (above half the peak) never, while their outer supports (above 10 % of the peak) touch.
    core, inner, outer = (np.zeros(slab, np.int32) for _ in range(3))
    for i in range(len(placements)):
        one = Placements(
            placements.class_index[i : i + 1],
            placements.centre_zyx_vox[i : i + 1],
            placements.rotation[i : i + 1],
        )
        rendered = render_sample(slab, densities, one)
        peak = densities[placements.class_index[i]].max()
        core += rendered > MASS_CONTOUR_FRACTION * peak
        inner += rendered > 0.5 * peak
        outer += rendered > 0.1 * peak
    assert np.count_nonzero(core > 1) < 2e-3 * np.count_nonzero(core)
    assert inner.max() == 1
    assert np.count_nonzero(outer > 1) > 0
    # The default level is unchanged: the same call without it gives the bytes it always gave.
    a = place_particles(slab, cores, 2, 0, 0.05, np.random.default_rng(3))
    b = place_particles(slab, cores, 2, 0, 0.05, np.random.default_rng(3), rotated_support_level=0.01)
    assert a.centre_zyx_vox.tobytes() == b.centre_zyx_vox.tobytes()
