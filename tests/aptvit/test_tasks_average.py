import math

import numpy as np
import pytest
import torch
from task_phantoms import degrees, phantom, posed_particles

from aptvit.rotation import random_rotations, relative_pose, rotate_volumes
from aptvit.tasks.align import exhaustive_pose_predictor
from aptvit.tasks.average import average_with_poses, gold_standard_average, reference_free_average
from aptvit.tasks.wedge import MissingWedge, fourier_frequencies_zyx
from cryoengine.physics.correlation import pearson_correlation

BOX = 16
WEDGE = MissingWedge(-60.0, 60.0)


def _poses(n, seed, shift_scale=1.0):
    rotation = random_rotations(n, torch.Generator().manual_seed(seed))
    shift = shift_scale * torch.randn(n, 3, generator=torch.Generator().manual_seed(seed + 1))
    return rotation, shift


def _noisy(clean, snr, seed):
    """Add noise that carries the particles' wedge, scaled to var(signal) / var(noise) = snr."""
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    noise = torch.fft.ifftn(
        torch.fft.fftn(noise, dim=(-3, -2, -1)) * WEDGE.weight((BOX,) * 3), dim=(-3, -2, -1)
    ).real
    scale = torch.sqrt(clean.var(dim=(1, 2, 3), keepdim=True) / snr) / noise.std(dim=(1, 2, 3), keepdim=True)
    return clean + noise * scale


def test_ground_truth_poses_without_noise_reproduce_the_reference_and_fill_the_wedge():
    reference = phantom(BOX)
    rotation, shift = _poses(30, 0)
    particles = posed_particles(reference, rotation, shift, WEDGE)
    average = average_with_poses(particles, rotation, shift, wedge=WEDGE)
    assert pearson_correlation(average.numpy(), reference.numpy()) >= 0.95

    def power(volume, region):
        return (torch.fft.fftn(volume).abs().square() * region).sum()

    k = fourier_frequencies_zyx((BOX,) * 3).norm(dim=-1)
    band = ((k > 0) & (k < 0.35)).float()
    missing, measured = (1 - WEDGE.weight((BOX,) * 3)) * band, WEDGE.weight((BOX,) * 3) * band
    assert power(particles[0], missing) / power(reference, missing) < 1e-6  # one particle: nothing there
    # The average has as much of the reference's power inside the lab wedge as outside it (resampling
    # damps both alike).
    inside = power(average, missing) / power(reference, missing)
    outside = power(average, measured) / power(reference, measured)
    assert inside / outside > 0.9
    plain = average_with_poses(particles, rotation, shift, wedge=None)
    assert power(plain, missing) / power(reference, missing) < 0.8 * inside


def test_half_map_resolution_improves_as_particles_are_added():
    reference = phantom(BOX)
    rotation, shift = _poses(80, 2, shift_scale=0.0)
    particles = _noisy(posed_particles(reference, rotation, shift, WEDGE), snr=0.2, seed=3)
    result = gold_standard_average(
        particles, rotation, shift, wedge=WEDGE, voxel_size_A=10.0, counts=[4, 16, 80]
    )
    assert result.counts.tolist() == [4, 16, 80]
    resolution = result.resolution_vs_count_A
    assert resolution[0] > resolution[1] > resolution[2] >= 2 * 10.0  # Å, never past Nyquist
    assert result.resolution_A == pytest.approx(resolution[-1])
    assert sorted(np.bincount(result.half).tolist()) == [40, 40]
    partial = gold_standard_average(
        particles, rotation, shift, wedge=WEDGE, voxel_size_A=10.0, counts=[4, 16]
    )
    assert partial.resolution_vs_count_A.tolist() == resolution[:2].tolist()
    assert partial.resolution_A == pytest.approx(resolution[-1])  # the maps still use every particle
    default = gold_standard_average(particles[:23], rotation[:23], shift[:23], wedge=WEDGE, voxel_size_A=10.0)
    assert default.counts.tolist() == [5, 10, 20, 23]


def test_reference_free_rounds_improve_poses_from_a_rough_predictor():
    reference = phantom(BOX)
    n = 24
    rotation, shift = _poses(n, 4, shift_scale=0.7)
    particles = _noisy(posed_particles(reference, rotation, shift, WEDGE), snr=0.5, seed=5)
    true_rotation, true_shift = relative_pose(
        rotation[0].expand(n, 3, 3), shift[0].expand(n, 3), rotation, shift
    )
    generator = torch.Generator().manual_seed(6)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=1)
    skew = torch.zeros(n, 3, 3)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    rough_rotation = (
        torch.linalg.matrix_exp(math.radians(12.0) * (skew - skew.transpose(1, 2))) @ true_rotation
    )
    rough_shift = true_shift + 0.7 * torch.randn(n, 3, generator=generator)

    def predictor(anchor, volumes):  # stands in for the SE(3) head
        assert torch.equal(anchor, particles[0]) and volumes.shape == particles.shape
        return rough_rotation, rough_shift

    result = reference_free_average(particles, predictor, wedge=WEDGE, voxel_size_A=10.0, n_rounds=2)
    assert (
        degrees(result.rotation, true_rotation).median()
        < 0.8 * degrees(rough_rotation, true_rotation).median()
    )
    assert result.resolution_per_round_A[-1] < result.resolution_per_round_A[0]
    in_anchor_frame = rotate_volumes(reference[None, None], rotation[:1], shift[:1])[0, 0]
    assert pearson_correlation(result.result.average.numpy(), in_anchor_frame.numpy()) > 0.9


def test_bad_inputs_are_rejected():
    reference = phantom(BOX)
    rotation, shift = _poses(4, 7)
    particles = posed_particles(reference, rotation, shift, WEDGE)
    with pytest.raises(ValueError, match="poses"):
        average_with_poses(particles, rotation[:3], shift, wedge=WEDGE)
    with pytest.raises(ValueError, match="counts"):
        gold_standard_average(particles, rotation, shift, wedge=WEDGE, voxel_size_A=10.0, counts=[1, 4])
    with pytest.raises(ValueError, match="at least 2"):
        gold_standard_average(particles[:1], rotation[:1], shift[:1], wedge=WEDGE, voxel_size_A=10.0)
    with pytest.raises(ValueError, match="predict_relative_pose"):
        reference_free_average(particles, lambda a, v: (rotation[:2], shift), wedge=WEDGE, voxel_size_A=10.0)


def test_reference_free_average_with_the_classical_predictor_recovers_the_relative_poses():
    reference = phantom(BOX)
    n = 6
    rotation, shift = _poses(n, 8, shift_scale=0.5)
    particles = posed_particles(reference, rotation, shift, WEDGE)
    anchor_rotation, anchor_shift = rotation[2].expand(n, 3, 3), shift[2].expand(n, 3)
    true_rotation, true_shift = relative_pose(anchor_rotation, anchor_shift, rotation, shift)
    predictor = exhaustive_pose_predictor(WEDGE, global_step_deg=20.0, local_steps_deg=(10.0, 5.0, 2.0))
    result = reference_free_average(
        particles, predictor, wedge=WEDGE, voxel_size_A=10.0, anchor_index=2, n_rounds=0
    )
    error = degrees(result.rotation, true_rotation)
    assert error[2] < 2.0  # the anchor against itself
    # Subtomogram against subtomogram in a 16³ box: the common region of two ±60° wedges leaves little
    # signal, and the score itself peaks 5–10° off (it is higher there than at the truth), not the search.
    assert error.median() < 12.0
    assert (result.shift_zyx_vox - true_shift).norm(dim=1).max() < 0.5
