import math

import numpy as np
import pytest
import torch

from aptvit.rotation import (
    geodesic_angle_rad,
    point_group_rotations,
    random_rotations,
    relative_pose,
    rotate_volumes,
    symmetric_geodesic_angle_rad,
)
from cryoengine.physics.resampling import rotate_volume
from cryoengine.physics.rotation import octahedral_rotations


def _blob(shape=(20, 24, 22), centre=(11.0, 9.0, 13.0)):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    blob = np.exp(-((grid - np.array(centre)) ** 2 / np.array([4.0, 9.0, 2.0])).sum(-1) / 2)
    return blob.astype(np.float32)


def test_random_rotations_are_proper_and_uniform():
    rotations = random_rotations(20000, torch.Generator().manual_seed(0), dtype=torch.float64)
    identity = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(rotations @ rotations.transpose(1, 2), identity.expand(20000, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(20000, dtype=torch.float64))
    # Haar measure: the mean of every matrix entry is 0 and the angle density is (1 - cos θ)/π.
    assert rotations.mean(0).abs().max() < 0.02
    angle = geodesic_angle_rad(rotations, identity)
    assert abs(angle.mean().item() - (math.pi / 2 + 2 / math.pi)) < 0.02


def test_rotate_volumes_matches_cryoengine_convention_on_a_non_cubic_off_centre_volume():
    volume = _blob()
    rotation = random_rotations(1, torch.Generator().manual_seed(3), dtype=torch.float64)[0].numpy()
    shift = np.array([1.5, -2.0, 0.75])
    expected = rotate_volume(volume, rotation, shift, order=1)
    ours = rotate_volumes(
        torch.from_numpy(volume)[None, None].double(),
        torch.from_numpy(rotation)[None],
        torch.from_numpy(shift)[None],
    )[0, 0].numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_quarter_turn_is_an_exact_permutation():
    volume = torch.rand(1, 1, 9, 9, 9, dtype=torch.float64)
    quarter = torch.tensor([[[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]], dtype=torch.float64)  # about z
    rotated = rotate_volumes(volume, quarter)
    assert torch.allclose(rotated, torch.rot90(volume, k=1, dims=(3, 4)), atol=1e-12) or torch.allclose(
        rotated, torch.rot90(volume, k=-1, dims=(3, 4)), atol=1e-12
    )


@pytest.mark.parametrize("degrees", [0.0, 90.0, 180.0, 37.5])
def test_geodesic_angle_of_known_rotations_is_exact(degrees):
    theta = math.radians(degrees)
    about_y = torch.tensor(
        [[math.cos(theta), 0, -math.sin(theta)], [0, 1, 0], [math.sin(theta), 0, math.cos(theta)]],
        dtype=torch.float64,
    )
    base = random_rotations(1, torch.Generator().manual_seed(1), dtype=torch.float64)[0]
    angle = geodesic_angle_rad(about_y @ base, base)
    assert angle.item() == pytest.approx(theta, abs=1e-6)


def test_relative_pose_maps_a_onto_b():
    generator = torch.Generator().manual_seed(2)
    rotation_a, rotation_b = random_rotations(2, generator, dtype=torch.float64)
    shift_a, shift_b = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    rotation_ab, shift_ab = relative_pose(rotation_a, shift_a, rotation_b, shift_b)
    point = torch.randn(3, dtype=torch.float64)  # a reference feature, seen in both particles
    in_a, in_b = rotation_a @ point + shift_a, rotation_b @ point + shift_b
    assert torch.allclose(rotation_ab @ in_a + shift_ab, in_b, atol=1e-12)


@pytest.mark.parametrize(
    ("symbol", "order"), [("C1", 1), ("C4", 4), ("D2", 4), ("D7", 14), ("T", 12), ("O", 24)]
)
def test_point_groups_have_their_order_and_are_closed(symbol, order):
    group = point_group_rotations(symbol)
    assert group.shape == (order, 3, 3)
    assert torch.allclose(group[0], torch.eye(3, dtype=torch.float64))
    products = (group[:, None] @ group[None]).reshape(-1, 1, 3, 3)
    assert (products - group[None]).abs().amax(dim=(-1, -2)).min(dim=1).values.max() < 1e-9


def test_octahedral_group_equals_cryoengines():
    ours = point_group_rotations("O")
    theirs = torch.from_numpy(octahedral_rotations()).double()
    distance = (ours[:, None] - theirs[None]).abs().amax(dim=(-1, -2))
    assert distance.min(dim=1).values.max() < 1e-9


def test_unknown_point_group_is_an_error():
    with pytest.raises(ValueError, match="I2"):
        point_group_rotations("I2")


def test_symmetric_angle_is_zero_for_an_equivalent_relative_pose():
    generator = torch.Generator().manual_seed(4)
    rotation_a, rotation_b = random_rotations(2, generator, dtype=torch.float64)
    group = point_group_rotations("C3")
    # Particle b seen through a symmetry-equivalent reference orientation R_b g.
    true_ab, _ = relative_pose(
        rotation_a, torch.zeros(3, dtype=torch.float64), rotation_b, torch.zeros(3, dtype=torch.float64)
    )
    equivalent_ab = rotation_b @ group[1] @ rotation_a.T
    plain = geodesic_angle_rad(equivalent_ab, true_ab)
    symmetric = symmetric_geodesic_angle_rad(
        equivalent_ab[None], true_ab[None], group, frame=rotation_a[None]
    )
    assert plain.item() > 1.0
    assert symmetric.item() < 1e-5
