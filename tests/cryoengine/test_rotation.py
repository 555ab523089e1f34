"""Rotation conventions: uniform SO(3) sampling, resampling about the box centre, the RELION Euler link."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats
from scipy.spatial.transform import Rotation

from cryoengine.physics.resampling import SplineVolume, rotate_volume
from cryoengine.physics.rotation import (
    octahedral_rotations,
    random_rotations,
    relion_euler_deg_to_rotation,
    rotation_to_relion_euler_deg,
)

SHAPE_ZYX = (23, 27, 25)  # odd, non-cubic: a swapped axis or a wrong centre cannot hide


def _gaussian(shape_zyx, centre_zyx, sigma_vox):
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape_zyx), indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre_zyx, strict=True))
    return np.exp(-0.5 * r2 / sigma_vox**2)


def _asymmetric_volume(shape_zyx=SHAPE_ZYX):
    """Three blobs of different sizes at offsets along +z, +y and +x: no rotation maps it onto itself."""
    c = np.array(shape_zyx) // 2
    volume = (
        _gaussian(shape_zyx, c, 2.0)
        + 0.8 * _gaussian(shape_zyx, c + (5, 0, 0), 1.2)
        + 0.6 * _gaussian(shape_zyx, c + (0, 3, 0), 1.0)
        + 0.4 * _gaussian(shape_zyx, c + (0, 0, 7), 1.5)
    )
    return volume.astype(np.float32)


def _centre_of_mass_offset(volume_zyx):
    return np.array(ndimage.center_of_mass(volume_zyx)) - np.array(volume_zyx.shape) // 2


# --- random rotations -------------------------------------------------------------------------------


def test_random_rotations_are_proper_rotations_and_seeded():
    r = random_rotations(500, np.random.default_rng(1))
    assert r.shape == (500, 3, 3)
    np.testing.assert_allclose(np.swapaxes(r, 1, 2) @ r, np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    assert np.array_equal(r, random_rotations(500, np.random.default_rng(1)))
    assert not np.array_equal(r, random_rotations(500, np.random.default_rng(2)))


def test_random_rotations_angle_follows_haar_distribution():
    """Under the Haar measure the rotation angle θ has density (1 − cos θ)/π, CDF (θ − sin θ)/π.

    θ comes from the trace, tr R = 1 + 2 cos θ. Kolmogorov–Smirnov at n = 20000 with a fixed seed: the
    statistic must stay below 1.95/√n, the 0.1 % critical value (a uniform-angle sampler gives ≈ 0.2).
    """
    n = 20000
    r = random_rotations(n, np.random.default_rng(7))
    theta = np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0))
    ks = stats.kstest(theta, lambda t: (t - np.sin(t)) / np.pi)
    assert ks.statistic < 1.95 / np.sqrt(n)


def test_random_rotations_send_each_axis_uniformly_over_the_sphere():
    """Each column R e_j is uniform on S²; by Archimedes every coordinate of it is uniform on [−1, 1].

    So each of the 9 matrix entries is U(−1, 1) (mean 0, variance 1/3). Bounds at n = 20000, fixed seed:
    KS statistic < 1.95/√n (0.1 % level) per entry, |mean| < 4 √(1/(3n)).
    """
    n = 20000
    r = random_rotations(n, np.random.default_rng(11)).reshape(n, 9)
    for entry in r.T:
        assert stats.kstest(entry, stats.uniform(loc=-1, scale=2).cdf).statistic < 1.95 / np.sqrt(n)
        assert abs(entry.mean()) < 4 * np.sqrt(1 / (3 * n))


# --- octahedral group -------------------------------------------------------------------------------


def test_octahedral_rotations_form_the_group_of_the_cube():
    o = octahedral_rotations()
    assert o.shape == (24, 3, 3)
    assert np.array_equal(o[0], np.eye(3))
    assert set(np.unique(o)) == {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(np.linalg.det(o).round(), 1.0)
    keys = {m.tobytes() for m in o}
    assert len(keys) == 24
    assert all((a @ b).tobytes() in keys for a in o for b in o)  # closed under composition


# --- rotate_volume ----------------------------------------------------------------------------------


def _exact_integer_rotation(volume_zyx, rotation):
    """P[q] = V[Rᵀ (q − c) + c] by integer indexing, zero where the source lies outside the box."""
    shape = np.array(volume_zyx.shape)
    c = shape // 2
    q = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    src = (q - c) @ rotation.astype(np.int64) + c  # row vectors: (Rᵀ v)ᵀ = vᵀ R
    inside = np.all((src >= 0) & (src < shape), axis=-1)
    out = np.zeros(volume_zyx.shape, np.float32)
    out[inside] = volume_zyx[tuple(src[inside].T)]
    return out


@pytest.mark.parametrize("index", range(24))
def test_rotate_volume_by_octahedral_rotation_is_exact_permutation(index):
    """An integer rotation about the centre moves voxels onto voxels: the cubic spline is exact there."""
    rotation = octahedral_rotations()[index]
    volume = _asymmetric_volume()
    np.testing.assert_allclose(
        rotate_volume(volume, rotation), _exact_integer_rotation(volume, rotation), rtol=0, atol=2e-5
    )


def test_rotate_volume_quarter_turn_about_z_matches_rot90():
    """R maps +x to +y and +y to −x (a right-handed quarter turn about z): P(z, y, x) = V(z, −x, y).

    numpy's rot90(m, 1, axes=(1, 2)) turns axis 1 towards axis 2 (+y onto +x), so ours is k = −1, which
    gives out[:, i, j] = m[:, n − 1 − j, i]; with an odd box the centre n // 2 = (n − 1)/2 is its pivot.
    The box is (17, 21, 21): non-cubic, square in the rotated plane.
    """
    volume = _asymmetric_volume((17, 21, 21))
    rotation = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # (z, y, x): e_x → e_y, e_y → −e_x
    expected = np.rot90(volume, -1, axes=(1, 2))
    np.testing.assert_allclose(rotate_volume(volume, rotation), expected, rtol=0, atol=2e-5)
    # The +x blob now sits at +y.
    x_blob_only = _gaussian((17, 21, 21), np.array((17, 21, 21)) // 2 + (0, 0, 5), 1.2)
    np.testing.assert_allclose(
        _centre_of_mass_offset(rotate_volume(x_blob_only, rotation)), [0, 5, 0], atol=1e-3
    )


def test_rotate_volume_shift_moves_centre_of_mass_by_shift():
    """COM(P) − c = R (COM(V) − c) + shift, for a random rotation and a sub-voxel, non-axial shift."""
    volume = _asymmetric_volume((31, 35, 33))  # room for the shifted blobs: no density leaves the box
    rotation = random_rotations(1, np.random.default_rng(3))[0]
    shift = np.array([1.3, -0.7, 2.45])
    expected = rotation @ _centre_of_mass_offset(volume) + shift
    np.testing.assert_allclose(
        _centre_of_mass_offset(rotate_volume(volume, rotation, shift)), expected, atol=0.02
    )
    np.testing.assert_allclose(
        _centre_of_mass_offset(rotate_volume(volume, np.eye(3), shift)),
        _centre_of_mass_offset(volume) + shift,
        atol=0.01,
    )


def test_rotate_volume_preserves_total_density_and_is_float32():
    volume = _asymmetric_volume()
    rotated = rotate_volume(volume, random_rotations(1, np.random.default_rng(5))[0], (0.3, -0.4, 0.1))
    assert rotated.dtype == np.float32 and rotated.shape == volume.shape
    assert abs(rotated.sum() / volume.sum() - 1) < 1e-3


def test_rotate_volume_rejects_bad_input():
    volume = _asymmetric_volume()
    with pytest.raises(ValueError, match="reflection"):
        rotate_volume(volume, np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="orthonormal"):
        rotate_volume(volume, 2 * np.eye(3))
    with pytest.raises(ValueError, match="shift_zyx_vox"):
        rotate_volume(volume, np.eye(3), (1.0, 2.0))
    with pytest.raises(ValueError, match="order"):
        rotate_volume(volume, np.eye(3), order=7)
    with pytest.raises(ValueError, match="volume_zyx"):
        rotate_volume(volume[0], np.eye(3))


# --- SplineVolume -----------------------------------------------------------------------------------

SMALL_ZYX = (11, 14, 12)  # an even axis too: the centre is shape // 2 either way


def _ringing_volume():
    """Asymmetric blobs that stay non-zero at the box edge, so the spline rings out beyond the box."""
    c = np.array(SMALL_ZYX) // 2
    volume = (
        _gaussian(SMALL_ZYX, c, 2.0)
        + 0.8 * _gaussian(SMALL_ZYX, c + (3, 0, 0), 1.2)
        + 0.6 * _gaussian(SMALL_ZYX, c + (0, -4, 0), 1.5)
        + 0.4 * _gaussian(SMALL_ZYX, c + (0, 2, 4), 1.3)
    )
    return volume.astype(np.float32)


def _rotate_volume_in_box(volume_zyx, rotation, shift_zyx_vox, box):
    """rotate_volume on the volume zero-padded into a box³ with the centres aligned."""
    padded = np.zeros((box,) * 3, np.float32)
    start = box // 2 - np.array(volume_zyx.shape) // 2
    padded[tuple(slice(s, s + n) for s, n in zip(start, volume_zyx.shape, strict=True))] = volume_zyx
    return rotate_volume(padded, rotation, shift_zyx_vox)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spline_volume_matches_rotate_volume_with_room_for_the_ringing(seed):
    """add_rotated is rotate_volume's spline: on a 51³ box (the spline has decayed below 1e-9 at its faces)
    they agree to float32 rounding, 1e-6 of the peak, tails beyond the volume's box included.
    """
    volume = _ringing_volume()
    rng = np.random.default_rng(seed)
    rotation = random_rotations(1, rng)[0]
    shift = rng.uniform(-0.5, 0.5, 3)
    box = 51
    expected = _rotate_volume_in_box(volume, rotation, shift, box)
    out = np.zeros((box,) * 3, np.float32)
    SplineVolume(volume).add_rotated(out, box // 2 + shift, rotation)
    peak = np.abs(volume).max()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6 * peak)
    # The ringing beyond the volume's box is there and reproduced (not just zeros on both sides).
    assert np.abs(expected[np.abs(out) == 0]).max() < 1e-7 * peak
    assert np.count_nonzero(np.abs(expected) > 1e-5 * peak) > 2 * volume.size


@pytest.mark.parametrize("index", [1, 7, 13, 22])
def test_spline_volume_octahedral_rotation_is_exact_permutation(index):
    """At an integer centre an integer rotation samples the interpolating spline at grid points: the data."""
    rotation = octahedral_rotations()[index]
    volume = _asymmetric_volume()
    out = np.zeros(volume.shape, np.float32)
    SplineVolume(volume).add_rotated(out, np.array(volume.shape) // 2, rotation)
    np.testing.assert_allclose(out, _exact_integer_rotation(volume, rotation), rtol=0, atol=1e-6)


def test_spline_volume_skips_only_values_below_the_negligible_fraction():
    volume = _ringing_volume()
    rotation = random_rotations(1, np.random.default_rng(4))[0]
    centre = np.array([25.3, 24.8, 25.1])
    full, coarse = np.zeros((51,) * 3, np.float32), np.zeros((51,) * 3, np.float32)
    SplineVolume(volume).add_rotated(full, centre, rotation)
    SplineVolume(volume, negligible_fraction=1e-3).add_rotated(coarse, centre, rotation)
    peak = np.abs(volume).max()
    assert np.count_nonzero(coarse) < 0.6 * np.count_nonzero(full)
    np.testing.assert_allclose(coarse, full, rtol=0, atol=1e-3 * peak)
    computed = coarse != 0
    np.testing.assert_allclose(coarse[computed], full[computed], rtol=0, atol=1e-6 * peak)


def test_spline_volume_adds_in_place_and_clips_to_the_output():
    """A particle across the corner of a small array is the matching crop of it in a large one, added to
    what is there; a particle entirely outside adds nothing.
    """
    spline = SplineVolume(_ringing_volume())
    rotation = random_rotations(1, np.random.default_rng(6))[0]
    centre = np.array([25.2, 24.6, 25.4])
    large = np.zeros((51,) * 3, np.float32)
    spline.add_rotated(large, centre, rotation)
    corner = np.array([22, 27, 20])
    small = np.ones((9, 30, 13), np.float32)
    spline.add_rotated(small, centre - corner, rotation)
    crop = large[22:31, 27:51, 20:33]
    np.testing.assert_allclose(small[:, :24] - 1, crop, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(small[:, 24:], 1)
    spline.add_rotated(small, (-60.0, 10.0, 5.0), rotation)
    np.testing.assert_allclose(small[:, :24] - 1, crop, rtol=0, atol=1e-6)


def test_spline_volume_of_zeros_adds_nothing():
    out = np.zeros((7, 8, 9), np.float32)
    SplineVolume(np.zeros((5, 5, 5))).add_rotated(out, (3.0, 4.0, 4.0), np.eye(3))
    assert not out.any()


def test_spline_volume_rejects_bad_input():
    volume = _ringing_volume()
    with pytest.raises(ValueError, match="non-finite"):
        SplineVolume(np.full((3, 3, 3), np.nan))
    with pytest.raises(ValueError, match="volume_zyx"):
        SplineVolume(volume[0])
    with pytest.raises(ValueError, match="negligible_fraction"):
        SplineVolume(volume, negligible_fraction=0.0)
    spline = SplineVolume(volume)
    with pytest.raises(ValueError, match="float32"):
        spline.add_rotated(np.zeros((20, 20, 20)), (10.0, 10.0, 10.0), np.eye(3))
    with pytest.raises(ValueError, match="centre_zyx_vox"):
        spline.add_rotated(np.zeros((20, 20, 20), np.float32), (10.0, 10.0), np.eye(3))
    with pytest.raises(ValueError, match="reflection"):
        spline.add_rotated(np.zeros((20, 20, 20), np.float32), (10.0, 10.0, 10.0), -np.eye(3))


# --- RELION Euler angles ----------------------------------------------------------------------------


def _relion_euler_angles2matrix_xyz(rot, tilt, psi):
    """RELION src/euler.cpp Euler_angles2matrix, re-typed term by term; acts on (x, y, z)."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ]
    )


def test_relion_euler_to_rotation_matches_relion_matrix_with_axes_reversed():
    for rot, tilt, psi in [(30, 40, 50), (-100, 170, 20), (0, 0, 0), (12.5, 90, -170)]:
        expected = _relion_euler_angles2matrix_xyz(rot, tilt, psi)[::-1, ::-1]
        np.testing.assert_allclose(relion_euler_deg_to_rotation(rot, tilt, psi), expected, atol=1e-15)


def test_relion_euler_is_zyz_intrinsic_rotating_particle_onto_reference():
    """eulerangles files RELION as ZYZ intrinsic, 'rotate_particle': Rz(rot) Ry(tilt) Rz(psi) = Aᵀ.

    scipy's 'ZYZ' (upper case = intrinsic) builds that product; transposing it gives reference → particle.
    """
    angles = np.array([[30, 40, 50], [-100, 170, 20], [150, 5, -60], [-45, 95, 135]], dtype=float)
    particle_to_reference_xyz = Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix()
    expected_zyx = np.swapaxes(particle_to_reference_xyz, 1, 2)[:, ::-1, ::-1]
    np.testing.assert_allclose(relion_euler_deg_to_rotation(*angles.T), expected_zyx, atol=1e-14)


def test_relion_known_cases():
    """rot = 90 alone is a −90° turn about z of the reference: +x goes to −y, +y to +x (RELION's A).

    tilt = 90 alone is a −90° turn about y: +z goes to −x, +x to +z.
    """
    e_z, e_y, e_x = np.eye(3)  # (z, y, x) unit vectors
    rot90 = relion_euler_deg_to_rotation(90, 0, 0)
    np.testing.assert_allclose(rot90, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-15)
    np.testing.assert_allclose(rot90 @ e_x, -e_y, atol=1e-15)
    np.testing.assert_allclose(rot90 @ e_y, e_x, atol=1e-15)
    tilt90 = relion_euler_deg_to_rotation(0, 90, 0)
    np.testing.assert_allclose(tilt90 @ e_z, -e_x, atol=1e-15)
    np.testing.assert_allclose(tilt90 @ e_x, e_z, atol=1e-15)
    # psi alone acts like rot alone (both about z when tilt = 0); the inverse reports it as psi.
    np.testing.assert_allclose(relion_euler_deg_to_rotation(0, 0, 90), rot90, atol=1e-15)
    np.testing.assert_allclose(
        [float(x) for x in rotation_to_relion_euler_deg(rot90)], [0, 0, 90], atol=1e-12
    )
    np.testing.assert_allclose(
        [float(x) for x in rotation_to_relion_euler_deg(relion_euler_deg_to_rotation(30, 180, 10))],
        [0, 180, -20],  # at tilt 180 only rot − psi matters: (30, 180, 10) ≡ (0, 180, −20)
        atol=1e-12,
    )


def test_relion_euler_round_trip_on_random_angles():
    rng = np.random.default_rng(17)
    n = 2000
    rot = rng.uniform(-180, 180, n)
    tilt = np.degrees(np.arccos(rng.uniform(-1, 1, n)))
    psi = rng.uniform(-180, 180, n)
    back = rotation_to_relion_euler_deg(relion_euler_deg_to_rotation(rot, tilt, psi))
    for original, recovered in zip((rot, tilt, psi), back, strict=True):
        np.testing.assert_allclose(recovered, original, atol=1e-9)


@pytest.mark.parametrize("source", ["random", "octahedral", "near_lock"])
def test_relion_matrix_round_trip(source):
    """rotation → Eulers → rotation to rounding error, including exact and near gimbal lock."""
    if source == "random":
        rotations = random_rotations(5000, np.random.default_rng(19))
    elif source == "octahedral":
        rotations = octahedral_rotations()
    else:
        tilts = np.array([0, 1e-12, 1e-9, 1e-7, 1e-5, 1e-3, 180 - 1e-3, 180 - 1e-7, 180 - 1e-12, 180])
        rotations = relion_euler_deg_to_rotation(37.0, tilts, -112.0)
    rot, tilt, psi = rotation_to_relion_euler_deg(rotations)
    assert np.all((tilt >= 0) & (tilt <= 180))
    assert np.all((rot > -180) & (rot <= 180) & (psi > -180) & (psi <= 180))
    np.testing.assert_allclose(relion_euler_deg_to_rotation(rot, tilt, psi), rotations, atol=1e-9)


def test_relion_conversion_at_gimbal_lock_puts_in_plane_angle_in_psi():
    rot, tilt, psi = rotation_to_relion_euler_deg(octahedral_rotations())
    locked = (tilt == 0) | (tilt == 180)
    assert locked.sum() == 8  # the 4 turns about z, and the 4 that flip z
    assert np.all(rot[locked] == 0)


def test_image_space_rotation_matches_relion_projector_definition():
    """Rotating a volume by R equals rotating it the way RELION's Projector::rotate3D does.

    Independent derivation: RELION's rotate3D (src/projector.cpp) takes Ainv = Aᵀ and fills output
    voxel x (logical (x, y, z) offsets from the centre) from the reference at Aᵀ x, with A from
    Euler_angles2matrix (re-typed here from euler.cpp). So in (x, y, z) index space with centre c,
    out[x] = ref[Aᵀ (x − c) + c]. We evaluate that with map_coordinates on the x-major transpose of the
    volume, never touching our conversion or our offset arithmetic, and compare with rotate_volume on
    the (z, y, x) volume with relion_euler_deg_to_rotation. Same spline, so they agree to float32
    rounding. Our shift (not RELION's rlnOrigin, which is another convention) rides along by the same
    route: out[x] = ref[Aᵀ (x − c − s) + c].
    """
    volume_zyx = _asymmetric_volume()
    volume_xyz = volume_zyx.transpose(2, 1, 0)
    c_xyz = np.array(volume_xyz.shape) // 2
    grid_xyz = np.stack(np.meshgrid(*(np.arange(n) for n in volume_xyz.shape), indexing="ij"), axis=0)
    shift_xyz = np.array([0.4, -1.2, 0.7])
    for rot, tilt, psi in [(90, 0, 0), (20, 70, -130), (-150, 120, 35)]:
        a = _relion_euler_angles2matrix_xyz(rot, tilt, psi)
        offsets = grid_xyz.reshape(3, -1) - c_xyz[:, None] - shift_xyz[:, None]
        source = a.T @ offsets + c_xyz[:, None]
        relion_xyz = ndimage.map_coordinates(volume_xyz, source, order=3, mode="grid-constant")
        relion_zyx = relion_xyz.reshape(volume_xyz.shape).transpose(2, 1, 0)
        ours = rotate_volume(volume_zyx, relion_euler_deg_to_rotation(rot, tilt, psi), shift_xyz[::-1])
        np.testing.assert_allclose(ours, relion_zyx, rtol=0, atol=1e-5)


def test_relion_rot_90_moves_x_feature_to_minus_y():
    """Physical spot check: the +x blob of the reference sits at −y in the particle for rot = 90."""
    shape = (21, 25, 23)
    x_blob = _gaussian(shape, np.array(shape) // 2 + (0, 0, 6), 1.5).astype(np.float32)
    particle = rotate_volume(x_blob, relion_euler_deg_to_rotation(90, 0, 0))
    np.testing.assert_allclose(_centre_of_mass_offset(particle), [0, -6, 0], atol=1e-3)


def test_relion_conversion_rejects_non_rotations():
    with pytest.raises(ValueError, match="reflection"):
        rotation_to_relion_euler_deg(-np.eye(3))
    with pytest.raises(ValueError, match="shape"):
        rotation_to_relion_euler_deg(np.eye(4))
    with pytest.raises(ValueError, match="tilt_deg"):
        relion_euler_deg_to_rotation(0, np.nan, 0)
