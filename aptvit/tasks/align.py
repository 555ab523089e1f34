"""Subtomogram alignment by wedge-aware constrained cross-correlation, and the error metrics of a pose.

The score of a rotation ``R`` is the constrained cross-correlation (Förster et al., 2008; Xu et al., 2012)
of a particle with the reference resampled as ``R · reference``, both restricted to the Fourier region
that both measured (the particle's lab-frame wedge times the rotated wedge of the reference, if it has
one), over every translation at once by FFT. Searches: :func:`align_exhaustive` (a global rotation grid,
then local refinement, the classical baseline) and :func:`refine_alignment` (local refinement from given
rotations, e.g. the SE(3) head's prediction). Poses follow DESIGN §3: ``particle = R · reference + shift``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from aptvit.data.views import standardise_volumes
from aptvit.models.vit import APTViT
from aptvit.rotation import point_group_rotations, rotate_volumes, symmetric_geodesic_angle_rad
from aptvit.tasks.wedge import MissingWedge, fourier_frequencies_zyx

__all__ = [
    "Alignment",
    "align_exhaustive",
    "PosePredictor",
    "alignment_errors",
    "constrained_correlation",
    "exhaustive_pose_predictor",
    "frobenius_rotation_error",
    "learned_pose_predictor",
    "refine_alignment",
    "rotation_grid",
]

# Complex elements per correlation batch (rows × rotations × D³). On CPU small batches stay in cache
# (2²⁰: 1.5× less CPU time than 2²⁵ for a 32³ global search, benchmarks/evaluate.py); a GPU wants large
# ones (2²⁵ ≈ 256 MB per complex64 work array).
_BATCH_ELEMENTS = {"cpu": 2**20, "cuda": 2**25}

# Moves of the local search per step (each a rotation by one step about one axis).
_MAX_MOVES = 12


def _batch_elements(device: torch.device) -> int:
    return _BATCH_ELEMENTS.get(device.type, _BATCH_ELEMENTS["cpu"])


PosePredictor = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``(anchor (D, D, D), particles (N, D, D, D)) -> (R (N, 3, 3), t (N, 3))`` with
``particle_i = R_i · anchor + t_i`` (the relative pose of DESIGN §8): the SE(3) head, or
:func:`exhaustive_pose_predictor`."""


@dataclass(frozen=True)
class Alignment:
    """Best pose of each particle against a reference: ``particle ≈ R · reference + shift``.

    Attributes
    ----------
    rotation
        `(N, 3, 3)` rotations acting on ``(z, y, x)``.
    shift_zyx_vox
        `(N, 3)` translations (voxels), sub-voxel by a parabola through the correlation peak.
    score
        `(N,)` constrained cross-correlation at the optimum (1 = identical in the common region).
    seconds_per_particle
        Wall time of the search divided by `N`.
    """

    rotation: Tensor
    shift_zyx_vox: Tensor
    score: Tensor
    seconds_per_particle: float


def rotation_grid(
    step_deg: float, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """Near-uniform rotations of SO(3) at an angular step, from a super-Fibonacci spiral (Alexa, CVPR 2022).

    The grid holds ``⌈8π² / step³⌉`` rotations (``step`` in radians), as many as an Euler-angle grid of
    that increment with uniformly spaced directions (8π² is the volume of SO(3) in Euler measure).

    Parameters
    ----------
    step_deg
        Angular step (°), in (0, 180].

    Returns
    -------
    Tensor
        `(n, 3, 3)` rotations acting on ``(z, y, x)``.
    """
    if not 0.0 < step_deg <= 180.0:
        raise ValueError(f"step_deg must lie in (0, 180], got {step_deg}")
    n = math.ceil(8 * math.pi**2 / math.radians(step_deg) ** 3)
    s = torch.arange(n, dtype=torch.float64) + 0.5
    radius_a, radius_b = torch.sqrt(s / n), torch.sqrt(1 - s / n)
    alpha = 2 * math.pi * s / math.sqrt(2.0)
    beta = 2 * math.pi * s / 1.533751168755204288118041  # the root of ψ⁴ = ψ + 4 of the paper
    quaternion = torch.stack(
        [
            radius_a * torch.sin(alpha),
            radius_a * torch.cos(alpha),
            radius_b * torch.sin(beta),
            radius_b * torch.cos(beta),
        ],
        dim=1,
    )  # (w, v) unit quaternions
    vector_norm = quaternion[:, 1:].norm(dim=1, keepdim=True)
    angle = 2 * torch.atan2(vector_norm, quaternion[:, :1])
    axis_angle = quaternion[:, 1:] / vector_norm.clamp_min(1e-12) * angle
    return _rotation_from_axis_angle(axis_angle).to(dtype=dtype, device=device)


def constrained_correlation(
    particles: Tensor,
    reference: Tensor,
    rotations: Tensor,
    *,
    particle_wedge: MissingWedge | None = None,
    reference_wedge: MissingWedge | None = None,
    max_shift_vox: int | None = None,
    max_frequency: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """Constrained cross-correlation of each particle with the rotated reference, at the best translation.

    Parameters
    ----------
    particles
        `(N, D, D, D)` subtomograms.
    reference
        `(D, D, D)` reference map or subtomogram.
    rotations
        `(R, 3, 3)` candidate rotations (``particle = R · reference + shift``), shared by all particles, or
        `(N, R, 3, 3)` one set per particle.
    particle_wedge
        Lab-frame missing wedge of the particles; None: fully sampled (ignore the wedge).
    reference_wedge
        Lab-frame missing wedge of the reference (a subtomogram); None for an average or a map.
    max_shift_vox
        Largest translation searched along each axis (voxels); ``D // 4`` when None.
    max_frequency
        Frequencies above this (cycles/voxel) are left out of the score, e.g. to search at low resolution.

    Returns
    -------
    score : Tensor
        `(N, R)` correlation at the best translation.
    shift_zyx_vox : Tensor
        `(N, R, 3)` that translation (voxels).
    """
    particles, reference = _check_volumes(particles, reference)
    if rotations.ndim == 3:
        rotations = rotations.expand(particles.shape[0], *rotations.shape)
    if rotations.ndim != 4 or rotations.shape[0] != particles.shape[0] or rotations.shape[2:] != (3, 3):
        raise ValueError(
            f"rotations must be (R, 3, 3) or ({particles.shape[0]}, R, 3, 3), got {tuple(rotations.shape)}"
        )
    scorer = _Scorer(particles, reference, particle_wedge, reference_wedge, max_shift_vox, max_frequency)
    return scorer.score(rotations)


def align_exhaustive(
    particles: Tensor,
    reference: Tensor,
    *,
    particle_wedge: MissingWedge | None = None,
    reference_wedge: MissingWedge | None = None,
    global_step_deg: float = 10.0,
    local_steps_deg: Sequence[float] = (5.0, 2.0),
    n_candidates: int = 3,
    max_shift_vox: int | None = None,
    max_frequency: float = 0.5,
) -> Alignment:
    """Classical alignment: constrained correlation over a global rotation grid, then local refinement.

    Parameters
    ----------
    particles
        `(N, D, D, D)` subtomograms.
    reference
        `(D, D, D)` reference.
    particle_wedge, reference_wedge, max_shift_vox, max_frequency
        As in :func:`constrained_correlation`.
    global_step_deg
        Step of the global grid (:func:`rotation_grid`), °.
    local_steps_deg
        Steps of the successive local refinements (:func:`refine_alignment`), °.
    n_candidates
        Best global rotations per particle that are refined; the best refined one wins.

    Returns
    -------
    Alignment
        The best pose of each particle; ``seconds_per_particle`` counts both stages.
    """
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    particles, reference = _check_volumes(particles, reference)
    start = time.perf_counter()
    scorer = _Scorer(particles, reference, particle_wedge, reference_wedge, max_shift_vox, max_frequency)
    grid = rotation_grid(global_step_deg, dtype=particles.dtype, device=particles.device)
    n_particles, box = particles.shape[0], particles.shape[-1]
    chunk = max(1, _batch_elements(particles.device) // (n_particles * box**3))
    best_score = torch.full((n_particles, 0), -torch.inf, dtype=particles.dtype, device=particles.device)
    best_index = torch.zeros((n_particles, 0), dtype=torch.long, device=particles.device)
    for first in range(0, grid.shape[0], chunk):
        score, _ = scorer.score(grid[first : first + chunk])
        index = torch.arange(first, first + score.shape[1], device=particles.device).expand_as(score)
        pooled = torch.cat([best_score, score], 1)  # a chunk may hold fewer rotations than n_candidates
        best_score, order = pooled.topk(min(n_candidates, pooled.shape[1]), dim=1)
        best_index = torch.cat([best_index, index], 1).gather(1, order)
    k = best_index.shape[1]
    candidates = grid[best_index.flatten()]  # (N·k, 3, 3), particle-major
    refined = _refine(
        scorer, candidates, local_steps_deg, particle_of_row=torch.arange(n_particles).repeat_interleave(k)
    )
    winner = refined[2].reshape(n_particles, k).argmax(dim=1)
    rows = torch.arange(n_particles, device=particles.device) * k + winner
    return Alignment(
        rotation=refined[0][rows],
        shift_zyx_vox=refined[1][rows],
        score=refined[2][rows],
        seconds_per_particle=(time.perf_counter() - start) / n_particles,
    )


def refine_alignment(
    particles: Tensor,
    reference: Tensor,
    rotation: Tensor,
    *,
    particle_wedge: MissingWedge | None = None,
    reference_wedge: MissingWedge | None = None,
    steps_deg: Sequence[float] = (5.0, 2.0),
    max_shift_vox: int | None = None,
    max_frequency: float = 0.5,
) -> Alignment:
    """Local search from given rotations: at each step, hill-climb by ±step about each axis.

    Parameters
    ----------
    particles
        `(N, D, D, D)` subtomograms.
    reference
        `(D, D, D)` reference.
    rotation
        `(N, 3, 3)` starting rotations (e.g. predicted by the SE(3) head).
    steps_deg
        Neighbourhood steps (°), coarse to fine; each is climbed until no neighbour is better (at most
        12 moves per step).
    particle_wedge, reference_wedge, max_shift_vox, max_frequency
        As in :func:`constrained_correlation`.

    Returns
    -------
    Alignment
        The refined pose of each particle.
    """
    particles, reference = _check_volumes(particles, reference)
    if rotation.shape != (particles.shape[0], 3, 3):
        raise ValueError(
            f"rotation must have shape ({particles.shape[0]}, 3, 3), got {tuple(rotation.shape)}"
        )
    start = time.perf_counter()
    scorer = _Scorer(particles, reference, particle_wedge, reference_wedge, max_shift_vox, max_frequency)
    best_rotation, best_shift, best_score = _refine(
        scorer, rotation.to(particles), steps_deg, particle_of_row=torch.arange(particles.shape[0])
    )
    return Alignment(
        best_rotation, best_shift, best_score, (time.perf_counter() - start) / particles.shape[0]
    )


def exhaustive_pose_predictor(
    wedge: MissingWedge | None,
    *,
    global_step_deg: float = 10.0,
    local_steps_deg: Sequence[float] = (5.0, 2.0),
    n_candidates: int = 3,
    max_shift_vox: int | None = None,
    max_frequency: float = 0.5,
) -> PosePredictor:
    """Wrap the classical baseline as a :data:`PosePredictor`, for reference-free averaging.

    Each particle is aligned to the anchor subtomogram by :func:`align_exhaustive`, both carrying the
    lab-frame ``wedge``; the keyword arguments are those of :func:`align_exhaustive`.

    Returns
    -------
    PosePredictor
        ``predict(anchor, particles) -> (R, t)``.
    """

    def predict(anchor: Tensor, particles: Tensor) -> tuple[Tensor, Tensor]:
        result = align_exhaustive(
            particles,
            anchor,
            particle_wedge=wedge,
            reference_wedge=wedge,
            global_step_deg=global_step_deg,
            local_steps_deg=local_steps_deg,
            n_candidates=n_candidates,
            max_shift_vox=max_shift_vox,
            max_frequency=max_frequency,
        )
        return result.rotation, result.shift_zyx_vox

    return predict


def learned_pose_predictor(
    encoder: APTViT,
    pose_head: torch.nn.Module,
    *,
    refine_wedge: MissingWedge | None = None,
    refine_steps_deg: Sequence[float] = (),
    max_shift_vox: int | None = None,
    batch_size: int = 64,
) -> PosePredictor:
    """Wrap the pre-trained SE(3) head as a :data:`PosePredictor`, optionally refined by local search.

    The anchor and each particle are standardised, encoded by the frozen encoder (hard phase pick) and
    their token grids given to the pose head, which predicts ``particle = R · anchor + t``. With
    ``refine_steps_deg`` the rotations are then refined by :func:`refine_alignment` (wedge-aware, both
    subtomograms carrying ``refine_wedge``), which also measures the shifts.

    Parameters
    ----------
    encoder
        The frozen encoder (:func:`aptvit.checkpoint.load_encoder`).
    pose_head
        Its pose head (:func:`aptvit.checkpoint.load_pose_head`).
    refine_wedge
        Lab-frame missing wedge of the subtomograms, for the refinement.
    refine_steps_deg
        Steps of the local refinement; none: the head's prediction alone.
    max_shift_vox
        Largest shift the refinement considers.
    batch_size
        Particles encoded at once.

    Returns
    -------
    PosePredictor
        ``predict(anchor, particles) -> (R, t)``.
    """
    parameter = next(encoder.parameters())

    def encode(volumes: Tensor) -> Tensor:
        inputs = standardise_volumes(volumes.to(parameter.device, parameter.dtype)[:, None])
        return encoder.forward_features(inputs, phase_mode="argmax")

    def predict(anchor: Tensor, particles: Tensor) -> tuple[Tensor, Tensor]:
        rotations, shifts = [], []
        with torch.no_grad():
            anchor_tokens = encode(anchor[None])
            for chunk in particles.split(batch_size):
                prediction = pose_head(anchor_tokens.expand(len(chunk), -1, -1), encode(chunk))
                rotations.append(prediction.rotation.double().cpu())
                shifts.append(prediction.translation_vox.double().cpu())
        rotation, shift = torch.cat(rotations), torch.cat(shifts)
        if not refine_steps_deg:
            return rotation, shift
        refined = refine_alignment(
            particles,
            anchor,
            rotation,
            particle_wedge=refine_wedge,
            reference_wedge=refine_wedge,
            steps_deg=refine_steps_deg,
            max_shift_vox=max_shift_vox,
        )
        return refined.rotation, refined.shift_zyx_vox

    return predict


def frobenius_rotation_error(rotation_pred: Tensor, rotation_true: Tensor) -> Tensor:
    """Gum-Net's rotation error ``‖R_pred − R_true‖_F`` (``= 2√2·|sin(θ/2)|`` for a geodesic angle θ).

    Parameters
    ----------
    rotation_pred, rotation_true
        `(..., 3, 3)` rotations (broadcast).

    Returns
    -------
    Tensor
        `(...)` Frobenius norms, in ``[0, 2√2]``.
    """
    return torch.linalg.matrix_norm(rotation_pred - rotation_true)


def alignment_errors(
    rotation_pred: Tensor,
    rotation_true: Tensor,
    shift_pred: Tensor | None = None,
    shift_true: Tensor | None = None,
    *,
    symmetry: str = "C1",
    frame: Tensor | None = None,
) -> dict[str, float]:
    """Summary errors of predicted poses, the rotation scored modulo the class's point group.

    Parameters
    ----------
    rotation_pred, rotation_true
        `(N, 3, 3)` predicted and true rotations.
    shift_pred, shift_true
        `(N, 3)` predicted and true translations (voxels); the translation keys are absent without them.
    symmetry
        Point group of the class (:func:`aptvit.rotation.point_group_rotations`).
    frame
        `(N, 3, 3)` orientation of the first particle of a relative pose (see
        :func:`aptvit.rotation.symmetric_geodesic_angle_rad`); None for poses against the reference.

    Returns
    -------
    dict
        ``rotation_error_median_deg``, ``rotation_error_mean_deg``, ``fraction_below_10deg``,
        ``fraction_below_30deg``, ``frobenius_median``, ``frobenius_mean`` (of the best symmetry
        equivalent: ``2√2·sin(θ/2)``), ``translation_error_median_vox``, ``translation_error_mean_vox``,
        ``n``.
    """
    if (
        rotation_pred.shape != rotation_true.shape
        or rotation_pred.ndim != 3
        or rotation_pred.shape[1:] != (3, 3)
    ):
        raise ValueError(
            "rotations must both be (N, 3, 3), got "
            f"{tuple(rotation_pred.shape)} and {tuple(rotation_true.shape)}"
        )
    group = point_group_rotations(symmetry)
    rotation_true = rotation_true.to(torch.float64)
    angle = symmetric_geodesic_angle_rad(
        rotation_pred.to(torch.float64),
        rotation_true,
        group,
        None if frame is None else frame.to(torch.float64),
    )
    degrees = torch.rad2deg(angle)
    frobenius = 2 * math.sqrt(2) * torch.sin(angle / 2)
    errors = {
        "rotation_error_median_deg": float(degrees.median()),
        "rotation_error_mean_deg": float(degrees.mean()),
        "fraction_below_10deg": float((degrees < 10).double().mean()),
        "fraction_below_30deg": float((degrees < 30).double().mean()),
        "frobenius_median": float(frobenius.median()),
        "frobenius_mean": float(frobenius.mean()),
        "n": int(degrees.numel()),
    }
    if (shift_pred is None) != (shift_true is None):
        raise ValueError("give both shift_pred and shift_true, or neither")
    if shift_pred is not None and shift_true is not None:
        distance = (shift_pred.to(torch.float64) - shift_true.to(torch.float64)).norm(dim=-1)
        errors["translation_error_median_vox"] = float(distance.median())
        errors["translation_error_mean_vox"] = float(distance.mean())
    return errors


class _Scorer:
    """The particles' spectra and wedge, kept across the batches of rotations of one search."""

    def __init__(
        self,
        particles: Tensor,
        reference: Tensor,
        particle_wedge: MissingWedge | None,
        reference_wedge: MissingWedge | None,
        max_shift_vox: int | None,
        max_frequency: float,
    ) -> None:
        box = particles.shape[-1]
        if max_shift_vox is None:
            max_shift_vox = box // 4
        if not 0 <= max_shift_vox < box // 2:
            raise ValueError(f"max_shift_vox must lie in [0, {box // 2}), got {max_shift_vox}")
        if not 0.0 < max_frequency:
            raise ValueError(f"max_frequency must be > 0, got {max_frequency}")
        self.shape = (box,) * 3
        self.reference = reference
        self.reference_wedge = reference_wedge
        frequencies = fourier_frequencies_zyx(self.shape, dtype=particles.dtype, device=particles.device)
        band = (frequencies.norm(dim=-1) <= max_frequency).to(particles.dtype)
        band[0, 0, 0] = 0.0  # the mean does not count: correlation of the zero-mean signals
        if particle_wedge is not None:
            band = band * particle_wedge.weight(self.shape, dtype=particles.dtype, device=particles.device)
        self.band = band
        self.spectra = torch.fft.fftn(particles, dim=(-3, -2, -1))
        signed = torch.fft.fftfreq(box, 1.0 / box, device=particles.device).abs()
        reach = signed <= max_shift_vox
        self.allowed = reach[:, None, None] & reach[None, :, None] & reach[None, None, :]

    def rows(self, particle_of_row: Tensor) -> _Scorer:
        """Return the same search over rows ``particle_of_row`` of the particles (candidates per particle)."""
        selected = copy.copy(self)
        selected.spectra = self.spectra[particle_of_row.to(self.spectra.device)]
        return selected

    def score(self, rotations: Tensor) -> tuple[Tensor, Tensor]:
        """Score `(B, 3, 3)` rotations shared by the rows or `(P, B, 3, 3)` per row: `(P, B)`, `(P, B, 3)`."""
        n_rows, box = self.spectra.shape[0], self.shape[0]
        chunk = max(1, _batch_elements(self.spectra.device) // (n_rows * box**3))
        scores, shifts = [], []
        for first in range(0, rotations.shape[-3], chunk):
            score, shift = self._score_batch(rotations[..., first : first + chunk, :, :])
            scores.append(score)
            shifts.append(shift)
        return torch.cat(scores, 1), torch.cat(shifts, 1)

    def _score_batch(self, rotations: Tensor) -> tuple[Tensor, Tensor]:
        box = self.shape[0]
        flat = rotations.reshape(-1, 3, 3)
        rotated = rotate_volumes(self.reference.expand(flat.shape[0], 1, *self.shape), flat)[:, 0]
        lead = rotations.shape[:-2] if rotations.ndim == 4 else (1, rotations.shape[0])
        reference_spectra = torch.fft.fftn(rotated, dim=(-3, -2, -1)).reshape(*lead, *self.shape)
        weight = self.band
        if self.reference_wedge is not None:
            rotated_wedge = self.reference_wedge.weight(
                self.shape, flat, dtype=weight.dtype, device=weight.device
            )
            weight = weight * rotated_wedge.reshape(*lead, *self.shape)
        weighted_particle = self.spectra[:, None] * weight
        weighted_reference = reference_spectra * weight
        energy = weighted_particle.abs().square().sum((-3, -2, -1)) * weighted_reference.abs().square().sum(
            (-3, -2, -1)
        )
        cross = torch.fft.ifftn(weighted_particle * weighted_reference.conj(), dim=(-3, -2, -1)).real
        cross = cross * (box**3 / energy.clamp_min(1e-30).sqrt())[..., None, None, None]
        _, peak = cross.masked_fill(~self.allowed, -torch.inf).flatten(-3).max(dim=-1)
        return _subvoxel_peak(cross, peak)


def _refine(
    scorer: _Scorer, rotation: Tensor, steps_deg: Sequence[float], particle_of_row: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Coordinate ascent of each row's rotation, ±step about each axis (row ``i`` is ``particle_of_row[i]``).

    The 6 axis neighbours cost a quarter of the 26 of the 3×3×3 cube and reached the same error (0.4–1.0°
    noise-free, 4.3° at SNR 0.05, 32³; benchmarks/evaluate.py) in 2.4–2.8× less time.
    """
    if any(not step > 0 for step in steps_deg):
        raise ValueError(f"steps_deg must all be > 0, got {tuple(steps_deg)}")
    row_scorer = scorer.rows(particle_of_row)
    axes = torch.eye(3, dtype=rotation.dtype, device=rotation.device)
    offsets = torch.cat([torch.zeros_like(axes[:1]), axes, -axes])  # the centre first: ties keep it
    score, shift = row_scorer.score(rotation[:, None])
    score, shift = score[:, 0], shift[:, 0]
    for step_deg in steps_deg:
        neighbours = _rotation_from_axis_angle(offsets * math.radians(step_deg))
        for _ in range(_MAX_MOVES):
            candidates = neighbours[None] @ rotation[:, None]  # (rows, 7, 3, 3)
            candidate_score, candidate_shift = row_scorer.score(candidates)
            best = candidate_score.argmax(dim=1)
            rows = torch.arange(rotation.shape[0], device=rotation.device)
            rotation = candidates[rows, best]
            score, shift = candidate_score[rows, best], candidate_shift[rows, best]
            if bool((best == 0).all()):
                break
    return rotation, shift, score


def _subvoxel_peak(cross: Tensor, peak: Tensor) -> tuple[Tensor, Tensor]:
    """Height `(...)` and signed translation `(..., 3)` at each flat ``peak`` of `(..., D, D, D)` maps.

    Both come from a parabola through the peak and its two neighbours along each axis, so that a particle
    half a voxel off the grid scores as high as one on it (an integer-shift score would prefer a slightly
    wrong rotation that moves density onto the grid).
    """
    box = cross.shape[-1]
    flat = cross.flatten(-3)
    index = torch.stack([peak // box**2, (peak // box) % box, peak % box], dim=-1)  # (..., 3)
    strides = torch.tensor([box**2, box, 1], device=peak.device)
    centre = flat.gather(-1, peak[..., None])[..., 0]
    offset = torch.zeros(index.shape, dtype=cross.dtype, device=cross.device)
    height = centre.clone()
    for axis in range(3):
        neighbour_index = []
        for delta in (-1, 1):
            moved = index.clone()
            moved[..., axis] = (moved[..., axis] + delta) % box
            neighbour_index.append((moved * strides).sum(-1))
        left = flat.gather(-1, neighbour_index[0][..., None])[..., 0]
        right = flat.gather(-1, neighbour_index[1][..., None])[..., 0]
        curvature = left - 2 * centre + right
        concave = curvature < 0
        step = torch.where(concave, 0.5 * (left - right) / curvature.clamp_max(-1e-12), 0.0).clamp(-0.5, 0.5)
        offset[..., axis] = step
        # f(x) = centre + slope·x + curvature/2·x² at the step x.
        height = height + torch.where(concave, 0.5 * (right - left) * step + 0.5 * curvature * step**2, 0.0)
    signed = torch.where(index >= (box + 1) // 2, index - box, index).to(cross.dtype)
    return height, signed + offset


def _rotation_from_axis_angle(axis_angle: Tensor) -> Tensor:
    """`(n, 3)` rotation vectors (radians) → `(n, 3, 3)` matrices by the matrix exponential."""
    a, b, c = axis_angle.unbind(-1)
    zero = torch.zeros_like(a)
    skew = torch.stack([zero, -c, b, c, zero, -a, -b, a, zero], dim=-1).reshape(*axis_angle.shape[:-1], 3, 3)
    return torch.linalg.matrix_exp(skew)


def _check_volumes(particles: Tensor | np.ndarray, reference: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    particles = torch.as_tensor(particles)
    if not particles.is_floating_point():
        particles = particles.float()
    reference = torch.as_tensor(reference, dtype=particles.dtype, device=particles.device)
    if particles.ndim != 4 or len(set(particles.shape[1:])) != 1:
        raise ValueError(f"particles must be (N, D, D, D), got {tuple(particles.shape)}")
    if particles.shape[0] == 0:
        raise ValueError("particles is empty (N = 0)")
    if reference.shape != particles.shape[1:]:
        raise ValueError(f"reference must be {tuple(particles.shape[1:])}, got {tuple(reference.shape)}")
    return particles, reference
