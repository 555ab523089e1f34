import math

import pytest
import torch
from task_phantoms import degrees, phantom, posed_particles, wedge_filtered

from aptvit.rotation import geodesic_angle_rad, point_group_rotations, random_rotations
from aptvit.tasks.align import (
    align_exhaustive,
    alignment_errors,
    constrained_correlation,
    frobenius_rotation_error,
    refine_alignment,
    rotation_grid,
)
from aptvit.tasks.wedge import MissingWedge

BOX = 16


def test_geodesic_and_frobenius_errors_of_known_rotation_pairs_are_exact():
    identity = torch.eye(3, dtype=torch.float64)
    about_z = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)  # 90° about z
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))  # 180° about z
    random = random_rotations(50, torch.Generator().manual_seed(0), dtype=torch.float64)
    truth = random_rotations(50, torch.Generator().manual_seed(1), dtype=torch.float64)
    pred = torch.cat([identity[None], about_z[None], flip[None], random])
    true = torch.cat([identity[None], identity[None], identity[None], truth])
    angle = geodesic_angle_rad(pred, true)
    assert torch.allclose(
        torch.rad2deg(angle[:3]), torch.tensor([0.0, 90.0, 180.0], dtype=torch.float64), atol=1e-4
    )
    expected = 2 * math.sqrt(2) * torch.sin(angle / 2).abs()
    assert torch.allclose(frobenius_rotation_error(pred, true), expected, atol=1e-5)
    errors = alignment_errors(
        pred[:3], true[:3], torch.zeros(3, 3), torch.tensor([[0.0, 3, 4], [0, 0, 0], [0, 0, 0]])
    )
    assert errors["rotation_error_median_deg"] == pytest.approx(90.0, abs=1e-3)
    assert errors["rotation_error_mean_deg"] == pytest.approx(90.0, abs=1e-3)
    assert errors["fraction_below_10deg"] == pytest.approx(1 / 3)
    assert errors["frobenius_median"] == pytest.approx(2.0, abs=1e-4)  # 2√2 sin 45°
    assert errors["translation_error_mean_vox"] == pytest.approx(5 / 3)


def test_symmetric_classes_are_scored_modulo_their_point_group():
    truth = random_rotations(10, torch.Generator().manual_seed(2), dtype=torch.float64)
    group = point_group_rotations("D4")
    equivalent = truth @ group[torch.arange(10) % len(group)]
    assert alignment_errors(equivalent, truth, symmetry="D4")["rotation_error_median_deg"] < 1e-3
    assert alignment_errors(equivalent, truth)["rotation_error_median_deg"] > 45


def test_rotation_grid_covers_so3_within_its_step():
    grid = rotation_grid(20.0, dtype=torch.float64)
    assert torch.allclose(
        grid @ grid.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand_as(grid), atol=1e-9
    )
    assert torch.allclose(torch.linalg.det(grid), torch.ones(len(grid), dtype=torch.float64))
    probes = random_rotations(1000, torch.Generator().manual_seed(3), dtype=torch.float64)
    nearest = torch.rad2deg(geodesic_angle_rad(probes[:, None], grid[None]).amin(dim=1))
    assert nearest.max() < 20.0
    assert len(rotation_grid(10.0)) == math.ceil(8 * math.pi**2 / math.radians(10.0) ** 3)


def test_exhaustive_alignment_recovers_rotation_and_shift_of_a_wedge_filtered_particle():
    wedge = MissingWedge(-60.0, 60.0)
    reference = phantom()
    rotation = random_rotations(3, torch.Generator().manual_seed(5))
    shift = torch.tensor([[1.0, -1.5, 2.0], [0.0, 0.0, 0.0], [-2.0, 1.0, 0.5]])
    particles = posed_particles(reference, rotation, shift, wedge)
    result = align_exhaustive(
        particles, reference, particle_wedge=wedge, global_step_deg=20.0, local_steps_deg=(10, 5, 2)
    )
    assert degrees(result.rotation, rotation).max() < 2.0 + 1.0  # the finest step, plus resampling
    assert (result.shift_zyx_vox - shift).norm(dim=1).max() < 0.3
    assert result.score.min() > 0.95 and result.seconds_per_particle > 0


def test_ignoring_the_wedge_aligns_the_wedges_instead_of_the_particles():
    # Two subtomograms of one particle: plain correlation prefers rotations that superpose the two
    # wedges (the identity, or 180° about a lab axis), the constrained correlation finds the particle.
    wedge = MissingWedge(-60.0, 60.0)
    reference_particle = wedge_filtered(phantom(), wedge)
    rotation = random_rotations(4, torch.Generator().manual_seed(11))
    particles = posed_particles(phantom(), rotation, torch.zeros(4, 3), wedge)
    search = {"global_step_deg": 20.0, "local_steps_deg": (10, 5), "n_candidates": 2}
    aware = align_exhaustive(
        particles, reference_particle, particle_wedge=wedge, reference_wedge=wedge, **search
    )
    naive = align_exhaustive(particles, reference_particle, **search)
    assert degrees(aware.rotation, rotation).median() < 10.0
    assert degrees(naive.rotation, rotation).median() > 30.0
    # The naive answers keep the wedge where it was: the k_z axis maps (almost) onto ±k_z.
    assert (naive.rotation[:, 0, 0].abs() > 0.9).float().mean() >= 0.75


def test_refinement_from_a_perturbed_start_returns_to_the_true_pose():
    wedge = MissingWedge(-60.0, 60.0)
    reference = phantom()
    rotation = random_rotations(4, torch.Generator().manual_seed(7))
    particles = posed_particles(reference, rotation, torch.tensor([[0.5, 0.0, -1.0]] * 4), wedge)
    axis = torch.nn.functional.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(8)), dim=1)
    angle = math.radians(8.0)
    cross = torch.zeros(4, 3, 3)
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    cross = cross - cross.transpose(1, 2)
    start = torch.linalg.matrix_exp(angle * cross) @ rotation
    assert degrees(start, rotation).min() > 7.9
    result = refine_alignment(particles, reference, start, particle_wedge=wedge, steps_deg=(5.0, 2.0))
    assert degrees(result.rotation, rotation).max() < 3.0
    score, shift = constrained_correlation(particles, reference, rotation, particle_wedge=wedge)
    assert score.shape == (4, 4) and shift.shape == (4, 4, 3)
    assert torch.allclose(score.diagonal(), torch.ones(4), atol=0.02)


def test_bad_inputs_are_rejected_with_the_value():
    reference = phantom()
    with pytest.raises(ValueError, match="particles"):
        align_exhaustive(reference, reference)
    with pytest.raises(ValueError, match="reference"):
        align_exhaustive(reference[None], reference[:8])
    with pytest.raises(ValueError, match="max_shift_vox"):
        refine_alignment(reference[None], reference, torch.eye(3)[None], max_shift_vox=BOX)
    with pytest.raises(ValueError, match="step_deg"):
        rotation_grid(0.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with CUDA")
def test_cuda_scores_match_the_cpu_twin():
    wedge = MissingWedge(-60.0, 60.0)
    reference = phantom()
    rotation = random_rotations(3, torch.Generator().manual_seed(12))
    particles = posed_particles(reference, rotation, torch.zeros(3, 3), wedge)
    grid = rotation_grid(30.0)
    kwargs = {"particle_wedge": wedge, "reference_wedge": wedge}
    score_cpu, shift_cpu = constrained_correlation(particles, reference, grid, **kwargs)
    score_gpu, shift_gpu = constrained_correlation(particles.cuda(), reference.cuda(), grid.cuda(), **kwargs)
    assert torch.allclose(score_gpu.cpu(), score_cpu, atol=1e-4)
    assert torch.allclose(shift_gpu.cpu(), shift_cpu, atol=1e-3)


def test_exhaustive_search_keeps_its_candidates_when_a_chunk_holds_fewer_rotations(monkeypatch):
    import aptvit.tasks.align as align

    particle = torch.rand(1, 12, 12, 12, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(align, "_batch_elements", lambda device: 12**3)  # one rotation per chunk
    result = align.align_exhaustive(
        particle, particle[0], global_step_deg=60.0, local_steps_deg=(), n_candidates=3
    )
    assert result.rotation.shape == (1, 3, 3)
