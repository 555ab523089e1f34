"""Virtual sample: non-overlap, containment, crowding volume fraction, uniform orientations, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from cryoengine.physics.extraction import extract_subtomograms, nearest_voxel_zyx
from cryoengine.physics.placement import Placements, density_to_support_mask, place_particles, render_sample
from cryoengine.physics.resampling import rotate_volume

SLAB_ZYX = (41, 97, 83)  # odd, non-cubic; z is the ice thickness
THRESHOLD = 0.1
TARGET_BOX = 21


def _gaussian(shape_zyx, centre_zyx, sigma_vox):
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape_zyx), indexing="ij")
    return np.exp(-0.5 * sum((g - c) ** 2 for g, c in zip(grids, centre_zyx, strict=True)) / sigma_vox**2)


def _blobs(shape_zyx, blobs):
    centre = np.array(shape_zyx) // 2
    return sum(w * _gaussian(shape_zyx, centre + np.array(o), s) for w, o, s in blobs).astype(np.float32)


@pytest.fixture(scope="module")
def densities():
    """Three asymmetric classes in odd, non-cubic boxes, their centre at shape // 2."""
    return [
        _blobs((15, 17, 13), [(1.0, (0, 0, 0), 2.0), (0.8, (3, 0, 0), 1.2), (0.6, (0, 2, 2), 1.0)]),
        _blobs((11, 11, 13), [(1.0, (0, 0, 0), 1.5), (0.7, (0, 0, 3), 1.0)]),
        _blobs((9, 13, 11), [(1.0, (0, -2, 0), 1.2), (1.0, (0, 2, 0), 1.2)]),
    ]


@pytest.fixture(scope="module")
def masks(densities):
    return [density_to_support_mask(d, THRESHOLD, 1) for d in densities]


@pytest.fixture(scope="module")
def crowded(densities, masks):
    """A slab with 10 targets of class 0 and crowders of classes 1 and 2 filling 10 % of its volume."""
    placements = place_particles(
        SLAB_ZYX, masks, 10, 0, 0.10, np.random.default_rng(2024), target_box=TARGET_BOX
    )
    singles = [
        render_sample(
            SLAB_ZYX,
            densities,
            Placements(p.class_index[i : i + 1], p.centre_zyx_vox[i : i + 1], p.rotation[i : i + 1]),
        )
        for p in [placements]
        for i in range(len(placements))
    ]
    return placements, singles


def test_rendered_particles_never_overlap_at_the_contour(crowded, densities):
    """Each particle rendered alone, thresholded at the mask contour: the indicators sum to at most 1.

    The masks were grown by 1 voxel, so the contours of two particles never share a voxel even after
    cubic-spline resampling of the densities.
    """
    placements, singles = crowded
    inside = sum(
        (single > THRESHOLD * densities[k].max()).astype(np.int32)
        for single, k in zip(singles, placements.class_index, strict=True)
    )
    assert inside.max() == 1
    # Dense enough to mean something: > 4 % of the slab inside a contour (the 10 % budget counts margins).
    assert inside.mean() > 0.04


def test_every_particle_lies_fully_inside_the_slab(crowded, densities):
    """Rotation conserves density; a particle cut by a slab face would lose some. Nothing is lost, and no
    particle's contour touches a face of the slab.
    """
    placements, singles = crowded
    for single, k in zip(singles, placements.class_index, strict=True):
        assert abs(single.sum() / densities[k].sum() - 1) < 2e-3
        contour = single > THRESHOLD * densities[k].max()
        for axis in range(3):
            assert not contour.take(0, axis).any() and not contour.take(-1, axis).any()


def test_rendered_sample_is_the_sum_of_its_particles(crowded, densities):
    placements, singles = crowded
    slab = render_sample(SLAB_ZYX, densities, placements)
    assert slab.dtype == np.float32 and slab.shape == SLAB_ZYX
    np.testing.assert_allclose(slab, np.sum(singles, axis=0), atol=1e-5)


def test_rendered_particles_are_the_reference_spline_rotated_and_shifted(crowded, densities):
    """Each rendered particle is rotate_volume's cubic spline of its reference, R and sub-voxel shift applied,
    put at its nearest voxel: computed here the slow way, on a 51³ box where the spline has died out, to 1e-6
    of the reference peak.
    """
    placements, singles = crowded
    box = 51
    for i in (0, 10, len(placements) - 1):
        density = densities[placements.class_index[i]]
        voxel, shift = nearest_voxel_zyx(placements.centre_zyx_vox[i])
        padded = np.zeros((box,) * 3, np.float32)
        start = box // 2 - np.array(density.shape) // 2
        padded[tuple(slice(s, s + n) for s, n in zip(start, density.shape, strict=True))] = density
        particle = rotate_volume(padded, placements.rotation[i], shift)
        expected = np.zeros(SLAB_ZYX, np.float32)
        corner = voxel - box // 2
        lo, hi = np.maximum(corner, 0), np.minimum(corner + box, SLAB_ZYX)
        expected[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = particle[
            tuple(slice(a, b) for a, b in zip(lo - corner, hi - corner, strict=True))
        ]
        np.testing.assert_allclose(singles[i], expected, rtol=0, atol=1e-6 * np.abs(density).max())


def test_each_particle_is_centred_where_placed(crowded, densities):
    """The centre of mass of a rendered particle is at centre + R (COM of its reference − its box centre)."""
    placements, singles = crowded
    for single, k, centre, rotation in zip(
        singles, placements.class_index, placements.centre_zyx_vox, placements.rotation, strict=True
    ):
        reference_com = np.array(ndimage.center_of_mass(densities[k])) - np.array(densities[k].shape) // 2
        np.testing.assert_allclose(
            ndimage.center_of_mass(single), centre + rotation @ reference_com, atol=0.02
        )


def test_targets_come_first_and_crowding_fills_the_volume_fraction(crowded, masks):
    """Crowders are of other classes; their summed mask volume is ≤ the budget and within one largest
    crowder of it (the draw that would overshoot ends the list).
    """
    placements, _ = crowded
    assert np.array_equal(placements.class_index[:10], np.zeros(10))
    crowders = placements.class_index[10:]
    assert len(crowders) > 20 and set(crowders.tolist()) == {1, 2}
    volume = sum(int(masks[k].sum()) for k in crowders)
    budget = 0.10 * np.prod(SLAB_ZYX)
    assert budget - max(int(m.sum()) for m in masks[1:]) < volume <= budget


def test_targets_can_be_extracted_with_their_box(crowded):
    """Every target's box fits in the slab, and is cut around the target's nearest voxel."""
    placements, _ = crowded
    targets = placements.centre_zyx_vox[placements.class_index == 0]
    slab = np.arange(np.prod(SLAB_ZYX), dtype=np.float32).reshape(SLAB_ZYX)  # each voxel its own value
    subtomograms, _ = extract_subtomograms(slab, targets, TARGET_BOX)
    assert subtomograms.shape == (10, TARGET_BOX, TARGET_BOX, TARGET_BOX)
    half = TARGET_BOX // 2
    for box, voxel in zip(subtomograms, nearest_voxel_zyx(targets)[0], strict=True):
        low = np.asarray(voxel) - half
        np.testing.assert_array_equal(box, slab[tuple(slice(a, a + TARGET_BOX) for a in low)])


def test_orientations_are_uniform_on_so3(masks):
    """Orientations are drawn before positions and never re-drawn, so they stay Haar-uniform.

    KS test of the rotation angle against its Haar CDF (θ − sin θ)/π over ~400 small crowders (fixed
    seed): statistic < 1.95/√n, the 0.1 % critical value.
    """
    placements = place_particles((41, 161, 151), masks, 0, 0, 0.12, np.random.default_rng(5))
    r = placements.rotation
    n = len(r)
    assert n > 300
    theta = np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert stats.kstest(theta, lambda t: (t - np.sin(t)) / np.pi).statistic < 1.95 / np.sqrt(n)


def test_placement_and_render_are_deterministic_for_a_seed(densities, masks):
    def run(seed):
        placements = place_particles((31, 45, 39), masks, 3, 1, 0.05, np.random.default_rng(seed))
        return placements, render_sample((31, 45, 39), densities, placements)

    (p1, s1), (p2, s2), (p3, s3) = run(9), run(9), run(10)
    for name in ("class_index", "centre_zyx_vox", "rotation"):
        assert getattr(p1, name).tobytes() == getattr(p2, name).tobytes()
    assert s1.tobytes() == s2.tobytes()
    assert p1.centre_zyx_vox.tobytes() != p3.centre_zyx_vox.tobytes()
    assert s1.tobytes() != s3.tobytes()


def test_too_many_particles_says_how_many_were_placed(masks):
    with pytest.raises(ValueError, match=r"placed \d+ of 400 target particles"):
        place_particles((25, 41, 37), masks, 400, 0, 0.0, np.random.default_rng(0), max_attempts=200)
    with pytest.raises(ValueError, match=r"placed \d+ of \d+ crowder particles"):
        place_particles((25, 41, 37), masks, 1, 0, 0.6, np.random.default_rng(0), max_attempts=200)


def test_particle_bigger_than_slab_is_rejected(masks):
    with pytest.raises(ValueError, match="class 0 does not fit the slab"):
        place_particles((13, 60, 60), masks, 1, 0, 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="target_box 40"):
        place_particles((31, 60, 60), masks, 1, 0, 0.0, np.random.default_rng(0), target_box=40)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"slab_shape_zyx": (10, 0, 10)}, "slab_shape_zyx"),
        ({"n_target": -1}, "n_target"),
        ({"target_class": 3}, "target_class 3"),
        ({"crowding_fraction": 1.0}, "crowding_fraction"),
        ({"class_masks": [np.ones((3, 3, 3))]}, r"class_masks\[0\]"),
        ({"class_masks": [np.ones((3, 3, 3), bool)], "crowding_fraction": 0.1}, "no class besides"),
        ({"rng": 3}, "rng"),
    ],
)
def test_place_particles_rejects_bad_input(masks, kwargs, match):
    args = {
        "slab_shape_zyx": SLAB_ZYX,
        "class_masks": masks,
        "n_target": 1,
        "target_class": 0,
        "crowding_fraction": 0.0,
        "rng": np.random.default_rng(0),
    } | kwargs
    with pytest.raises(ValueError, match=match):
        place_particles(**args)


def test_support_mask_grows_by_margin_and_keeps_the_centre(densities):
    density = densities[0]
    bare = density_to_support_mask(density, THRESHOLD, 0)
    np.testing.assert_array_equal(bare, density > THRESHOLD * density.max())
    grown = density_to_support_mask(density, THRESHOLD, 2)
    assert grown.shape == tuple(n + 4 for n in density.shape)
    # Every voxel within 2 of the contour, and nothing farther, is in the grown mask.
    distance = ndimage.distance_transform_edt(~np.pad(bare, 2))
    np.testing.assert_array_equal(grown, distance <= 2)
    # Padding keeps the reference centre at shape // 2.
    offset_bare = np.array(ndimage.center_of_mass(bare)) - np.array(bare.shape) // 2
    offset_grown = np.array(ndimage.center_of_mass(np.pad(bare, 2))) - np.array(grown.shape) // 2
    np.testing.assert_allclose(offset_grown, offset_bare)


def test_render_rejects_unknown_class(densities):
    placements = Placements(np.array([3]), np.array([[20.0, 40.0, 40.0]]), np.eye(3)[None])
    with pytest.raises(ValueError, match="class 3"):
        render_sample(SLAB_ZYX, densities, placements)


def test_placements_are_read_only_and_validated():
    placements = Placements(np.array([0, 1]), np.zeros((2, 3)), np.stack([np.eye(3)] * 2))
    assert len(placements) == 2
    with pytest.raises(ValueError, match="read-only"):
        placements.centre_zyx_vox[0, 0] = 1.0
    with pytest.raises(ValueError, match="centre_zyx_vox"):
        Placements(np.array([0, 1]), np.zeros((3, 3)), np.stack([np.eye(3)] * 2))
