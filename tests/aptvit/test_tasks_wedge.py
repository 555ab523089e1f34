import numpy as np
import pytest
import torch

from aptvit.rotation import random_rotations, rotate_volumes
from aptvit.tasks.wedge import MissingWedge, fourier_frequencies_zyx
from cryoengine.physics.projector import TiltGeometry, backproject_tilts_to_volume, project_volume_to_tilts


def test_measured_fraction_of_a_shell_is_the_tilt_range_over_180_degrees():
    box = 32
    weight = MissingWedge(-60.0, 60.0).weight((box,) * 3)
    k = fourier_frequencies_zyx((box,) * 3).norm(dim=-1)
    shell = (k > 0.25) & (k < 0.45)
    # Area fraction on a sphere of the set |atan(k_z / k_x)| ≤ 60° is not 2/3 (k_y tilts it), so compare
    # with a Monte-Carlo estimate over uniform directions.
    directions = torch.randn(200000, 3, generator=torch.Generator().manual_seed(0))
    angle = torch.rad2deg(torch.atan(directions[:, 0] / directions[:, 2]))
    expected = (angle.abs() <= 60).double().mean().item()
    assert weight[shell].mean().item() == pytest.approx(expected, abs=0.01)
    # The missing part is around k_z: the k_z axis is missing, k_x and k_y are measured.
    assert weight[5, 0, 0] == 0 and weight[0, 5, 0] == 1 and weight[0, 0, 5] == 1 and weight[0, 0, 0] == 1


def test_asymmetric_range_follows_the_projector_convention():
    # u = x cos θ + z sin θ: a tilt at +θ measures (k_z, k_x) ∝ (sin θ, cos θ).
    weight = MissingWedge(-10.0, 50.0).weight((32, 32, 32))
    k_z, k_x = 8, 8  # 45°
    assert weight[k_z, 0, k_x] == 1 and weight[-k_z, 0, k_x] == 0


def test_rotated_weight_holds_the_power_of_a_rotated_wedge_filtered_volume():
    box = 24
    wedge = MissingWedge(-45.0, 45.0)
    noise = torch.randn(box, box, box, generator=torch.Generator().manual_seed(1))
    offset = torch.arange(box) - box // 2
    radius2 = offset[:, None, None] ** 2 + offset[None, :, None] ** 2 + offset[None, None, :] ** 2
    noise = noise * torch.exp(-radius2 / (2 * 4.0**2))  # compact, so the rotation keeps it in the box
    window = torch.exp(-(fourier_frequencies_zyx((box,) * 3).norm(dim=-1) ** 2) / (2 * 0.2**2))
    filtered = torch.fft.ifftn(torch.fft.fftn(noise) * wedge.weight((box,) * 3) * window).real
    rotation = random_rotations(1, torch.Generator().manual_seed(2))
    rotated = rotate_volumes(filtered[None, None], rotation)[0, 0]
    power = torch.fft.fftn(rotated).abs().square()
    inside = wedge.weight((box,) * 3, rotation)[0]
    # Trilinear resampling and the box edge leak some power; the other convention, W(R k), or the
    # unrotated wedge hold far less.
    assert (power * inside).sum() / power.sum() > 0.85
    for other in (wedge.weight((box,) * 3, rotation.transpose(1, 2))[0], wedge.weight((box,) * 3)):
        assert (power * other).sum() / power.sum() < 0.7


def test_tilt_range_is_read_from_the_dataset_attrs_and_checked():
    attrs = {"tilt_scheme": {"min_angle_deg": -54.0, "max_angle_deg": 60.0, "step_deg": 3.0}}
    assert MissingWedge.from_dataset_attrs(attrs) == MissingWedge(-54.0, 60.0)
    with pytest.raises(ValueError, match="tilt_scheme"):
        MissingWedge.from_dataset_attrs({})
    with pytest.raises(ValueError, match="tilt range"):
        MissingWedge(30.0, -30.0)
    with pytest.raises(ValueError, match="rotation"):
        MissingWedge().weight((8, 8, 8), torch.eye(3))
    assert np.isclose(MissingWedge(-60, 60).missing_fraction, 1 / 3)


def test_weight_matches_the_tilt_geometry_of_cryoengines_projector():
    # Back-projected projections of an asymmetric tilt range hold power only on the measured planes.
    box = 24
    offset = np.arange(box) - box // 2
    radius2 = offset[:, None, None] ** 2 + offset[None, :, None] ** 2 + offset[None, None, :] ** 2
    volume = np.random.default_rng(0).standard_normal((box,) * 3) * np.exp(-radius2 / (2 * 5.0**2))
    geometry = TiltGeometry((box,) * 3, tuple(np.arange(-30.0, 61.0, 3.0)))
    back = backproject_tilts_to_volume(project_volume_to_tilts(volume, geometry, "cpu"), geometry, "cpu")
    power = np.abs(np.fft.fftn(back)) ** 2
    k = fourier_frequencies_zyx((box,) * 3).norm(dim=-1).numpy()
    band = (k > 0.05) & (k < 0.4)
    ours = MissingWedge(-30.0, 60.0).weight((box,) * 3).numpy().astype(bool)
    mirrored = MissingWedge(-60.0, 30.0).weight((box,) * 3).numpy().astype(bool)
    assert power[band & ours].sum() / power[band].sum() > 0.95
    # Where the two conventions disagree (tilts 30°…60° against −60°…−30°), the data side with ours.
    assert power[band & ours & ~mirrored].sum() > 10 * power[band & mirrored & ~ours].sum()
