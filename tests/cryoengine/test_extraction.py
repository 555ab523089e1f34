"""Subtomogram extraction: box centring, sub-voxel shifts, and the ground-truth round trip through a slab."""

from __future__ import annotations

import numpy as np
import pytest

from cryoengine.physics.extraction import extract_subtomograms, nearest_voxel_zyx
from cryoengine.physics.placement import Placements, render_sample
from cryoengine.physics.resampling import rotate_volume
from cryoengine.physics.rotation import octahedral_rotations, random_rotations

SLAB_ZYX = (37, 45, 41)
BOX = 21


def _gaussian(shape_zyx, centre_zyx, sigma_vox):
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape_zyx), indexing="ij")
    return np.exp(-0.5 * sum((g - c) ** 2 for g, c in zip(grids, centre_zyx, strict=True)) / sigma_vox**2)


def _reference(shape_zyx):
    """Asymmetric density (no rotation maps it onto itself) within radius 6 of the centre shape // 2."""
    c = np.array(shape_zyx) // 2
    density = (
        _gaussian(shape_zyx, c, 1.8)
        + 0.9 * _gaussian(shape_zyx, c + (4, 0, 0), 1.2)
        + 0.7 * _gaussian(shape_zyx, c + (0, -3, 1), 1.0)
        + 0.5 * _gaussian(shape_zyx, c + (1, 1, 4), 1.3)
    )
    return density.astype(np.float32)


def _correlation(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize(
    ("rotation", "centre_zyx_vox"),
    [
        (random_rotations(1, np.random.default_rng(31))[0], (18.3, 21.7, 19.45)),
        (octahedral_rotations()[13], (17.5, 22.25, 20.9)),  # .5 rounds up: shift −0.5
    ],
    ids=["random", "octahedral"],
)
def test_extracted_particle_matches_ground_truth_rotation_and_shift(rotation, centre_zyx_vox):
    """Render one particle into a slab (reference in a non-cubic box), extract it, and compare with the
    reference in the extraction box resampled by the stored R and shift: correlation > 0.9999, and every
    other octahedral variant R·O (O ≠ I) and the transpose Rᵀ correlate worse.
    """
    reference_native = _reference((15, 19, 17))  # the density as simulated, any box
    reference_boxed = _reference((BOX, BOX, BOX))  # the same density in the extraction box
    placements = Placements(np.array([0]), np.array([centre_zyx_vox]), rotation[None])
    slab = render_sample(SLAB_ZYX, [reference_native], placements)

    subtomograms, shifts = extract_subtomograms(slab, placements.centre_zyx_vox, BOX)
    truth = rotate_volume(reference_boxed, rotation, shifts[0])
    correct = _correlation(subtomograms[0], truth)
    assert correct > 0.9999  # measured 0.9999995: both sides are the same cubic spline of the same density
    for other in octahedral_rotations()[1:]:
        assert (
            _correlation(subtomograms[0], rotate_volume(reference_boxed, rotation @ other, shifts[0]))
            < correct
        )
    assert _correlation(subtomograms[0], rotate_volume(reference_boxed, rotation.T, shifts[0])) < correct
    # Without the sub-voxel shift the match is worse: the shift carries real information.
    assert _correlation(subtomograms[0], rotate_volume(reference_boxed, rotation)) < correct


def test_box_centre_lands_on_nearest_voxel_and_shift_is_the_remainder():
    """Crop of a tomogram whose voxel values encode their own index: box index box // 2 holds the voxel
    nearest the centre (half rounds up), for odd and even boxes; shift = centre − that voxel ∈ [−0.5, 0.5).
    """
    shape = (23, 29, 27)
    tomogram = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    centres = np.array([[11.0, 14.0, 13.0], [10.5, 13.49, 12.51], [9.2, 15.5, 14.8], [12.7, 12.3, 11.5]])
    expected_voxels = np.array([[11, 14, 13], [11, 13, 13], [9, 16, 15], [13, 12, 12]])
    for box in (9, 10):
        subtomograms, shifts = extract_subtomograms(tomogram, centres, box)
        assert subtomograms.shape == (4, box, box, box) and subtomograms.dtype == np.float32
        for sub, voxel in zip(subtomograms, expected_voxels, strict=True):
            assert sub[box // 2, box // 2, box // 2] == tomogram[tuple(voxel)]
            # One step along +x in the box is one step along +x in the tomogram.
            assert sub[box // 2, box // 2, box // 2 + 1] == tomogram[tuple(voxel + (0, 0, 1))]
        np.testing.assert_allclose(shifts, centres - expected_voxels, atol=1e-12)
        assert np.all((shifts >= -0.5) & (shifts < 0.5))


def test_nearest_voxel_rounds_half_up():
    voxels, shifts = nearest_voxel_zyx(np.array([[-0.5, 0.5, 1.5], [2.49, -1.51, 0.0]]))
    np.testing.assert_array_equal(voxels, [[0, 1, 2], [2, -2, 0]])
    np.testing.assert_allclose(shifts, [[-0.5, -0.5, -0.5], [0.49, 0.49, 0.0]], atol=1e-12)


def test_box_outside_tomogram_names_the_particle():
    tomogram = np.zeros((23, 29, 27), np.float32)
    centres = np.array([[11.0, 14.0, 13.0], [11.0, 3.4, 13.0]])
    with pytest.raises(ValueError, match=r"particle 1 \(centre_zyx_vox \[11.0, 3.4, 13.0\]\)"):
        extract_subtomograms(tomogram, centres, 9)
    # Touching the edge exactly is fine: voxel 4 with box 9 starts at index 0.
    extract_subtomograms(tomogram, np.array([[4.0, 4.0, 22.0]]), 9)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros((5, 5)), np.zeros((1, 3)), 3), "tomogram_zyx"),
        ((np.zeros((5, 5, 5)), np.zeros((1, 2)), 3), "centres_zyx_vox"),
        ((np.zeros((5, 5, 5)), np.full((1, 3), np.nan), 3), "finite"),
        ((np.zeros((5, 5, 5)), np.zeros((1, 3)), 0), "box"),
    ],
)
def test_extract_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        extract_subtomograms(*args)
