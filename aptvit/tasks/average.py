"""Subtomogram averaging: missing-wedge-compensated averages, gold-standard halves, reference-free refinement.

Each particle is brought to the reference frame (``Rᵀ · (particle − shift)``), and the average is the
Fourier-space sum of those volumes over the sum of their rotated wedge weights plus a Wiener-style
constant, ``Σ_i W_i F_i / (Σ_i W_i + ε)`` with ``W_i(k) = W(R_i k)``: where many particles measured a
frequency it is their mean, where none did it stays zero. Half-sets are fixed at the start and never mixed
(gold standard), so their FSC at 0.143 is an honest resolution (DESIGN §8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from aptvit.rotation import rotate_volumes
from aptvit.tasks.align import PosePredictor, exhaustive_pose_predictor, refine_alignment
from aptvit.tasks.fsc import FscCurve, fourier_shell_correlation
from aptvit.tasks.wedge import MissingWedge

__all__ = [
    "ClusterAverages",
    "GoldStandardAverage",
    "ReferenceFreeAverage",
    "average_clusters",
    "average_with_poses",
    "gold_standard_average",
    "reference_free_average",
]

_BATCH = 64


@dataclass(frozen=True)
class GoldStandardAverage:
    """Two independent half-set averages, their FSC, and the resolution against the number of particles.

    Attributes
    ----------
    average
        `(D, D, D)` average of all particles.
    half_a, half_b
        `(D, D, D)` averages of the two half-sets.
    half
        `(N,)` int, the half-set (0 or 1) of each particle.
    fsc
        FSC of the two half-averages.
    resolution_A
        Resolution at FSC = 0.143 (Å).
    counts
        `(K,)` numbers of particles averaged (both halves together), ascending.
    resolution_vs_count_A
        `(K,)` half-map FSC-0.143 resolution (Å) from the first ``counts[j]`` particles.
    """

    average: Tensor
    half_a: Tensor
    half_b: Tensor
    half: np.ndarray
    fsc: FscCurve
    resolution_A: float
    counts: np.ndarray
    resolution_vs_count_A: np.ndarray


@dataclass(frozen=True)
class ReferenceFreeAverage:
    """Result of :func:`reference_free_average`, in the frame of the anchor particle.

    Attributes
    ----------
    result
        The gold-standard average from the final poses.
    rotation, shift_zyx_vox
        `(N, 3, 3)`, `(N, 3)` final poses, ``particle ≈ R · average + shift``.
    resolution_per_round_A
        Half-map FSC-0.143 resolution (Å) after the initial poses and after each round.
    """

    result: GoldStandardAverage
    rotation: Tensor
    shift_zyx_vox: Tensor
    resolution_per_round_A: list[float]


def average_with_poses(
    particles: Tensor,
    rotation: Tensor,
    shift_zyx_vox: Tensor,
    *,
    wedge: MissingWedge | None,
    wiener_constant: float = 0.1,
) -> Tensor:
    """Missing-wedge-compensated average of particles with known poses (``particle = R · average + shift``).

    Parameters
    ----------
    particles
        `(N, D, D, D)` subtomograms.
    rotation
        `(N, 3, 3)` their orientations.
    shift_zyx_vox
        `(N, 3)` their translations (voxels).
    wedge
        Lab-frame missing wedge of the particles; None: fully sampled (a plain average).
    wiener_constant
        ``ε`` added to the summed weights (in particles), ≥ 0; keeps barely sampled frequencies from being
        amplified.

    Returns
    -------
    Tensor
        `(D, D, D)` the average, in the reference frame.
    """
    numerator, denominator = _weighted_sums(particles, rotation, shift_zyx_vox, wedge)
    return _divide(numerator, denominator, wiener_constant)


def gold_standard_average(
    particles: Tensor,
    rotation: Tensor,
    shift_zyx_vox: Tensor,
    *,
    wedge: MissingWedge | None,
    voxel_size_A: float,
    half: np.ndarray | None = None,
    counts: Sequence[int] | None = None,
    seed: int = 0,
    wiener_constant: float = 0.1,
) -> GoldStandardAverage:
    """Average two half-sets independently; FSC-0.143 resolution overall and against the particle count.

    Parameters
    ----------
    particles, rotation, shift_zyx_vox, wedge, wiener_constant
        As in :func:`average_with_poses`; with the ground-truth poses this is the oracle.
    voxel_size_A
        Voxel size (Å), for the resolution.
    half
        `(N,)` half-set of each particle (0/1); None: a seeded random split into equal halves.
    counts
        Particle counts (both halves together) for the resolution curve; None: 5, 10, 20, 50, 100, 200,
        500, … below `N`, and `N`. Counts are taken in a seeded random order, alternating the halves.
    seed
        Seed of the split and of the order.

    Returns
    -------
    GoldStandardAverage
    """
    particles = torch.as_tensor(particles)
    rotation, shift_zyx_vox = torch.as_tensor(rotation), torch.as_tensor(shift_zyx_vox)
    n = particles.shape[0]
    if n < 2:
        raise ValueError(f"gold-standard averaging needs at least 2 particles, got {n}")
    generator = np.random.default_rng(seed)
    if half is None:
        half = np.zeros(n, dtype=int)
        half[generator.permutation(n)[: n // 2]] = 1
    half = np.asarray(half)
    if half.shape != (n,) or not set(np.unique(half)) <= {0, 1} or len(np.unique(half)) != 2:
        raise ValueError(f"half must be (N,) = ({n},) of 0 and 1 with both present, got {half!r}")
    if counts is None:
        ladder = [m * 10**e for e in range(8) for m in (1, 2, 5)]
        counts = sorted({c for c in ladder if 5 <= c < n} | {n})
    requested = np.asarray(sorted({int(c) for c in counts}), dtype=int)
    if requested.size == 0 or requested[0] < 2 or requested[-1] > n:
        raise ValueError(f"counts must lie in [2, {n}], got {requested.tolist()}")
    # The order interleaves the halves so that every prefix holds them in equal parts.
    members = [generator.permutation(np.flatnonzero(half == h)) for h in (0, 1)]
    order = np.array([m[i] for i in range(max(map(len, members))) for m in members if i < len(m)])
    shape = tuple(particles.shape[1:])
    numerators = [torch.zeros(shape, dtype=torch.complex128, device=particles.device) for _ in (0, 1)]
    denominators = [torch.zeros(shape, dtype=torch.float64, device=particles.device) for _ in (0, 1)]
    filled = [0, 0]
    resolution_vs_count = []
    done = 0
    for count in sorted(set(requested.tolist()) | {n}):  # the maps and their FSC use every particle
        batch = order[done:count]
        for h in (0, 1):
            rows = torch.as_tensor(batch[half[batch] == h])
            if rows.numel():
                numerator, denominator = _weighted_sums(
                    particles[rows], rotation[rows], shift_zyx_vox[rows], wedge
                )
                numerators[h] += numerator
                denominators[h] += denominator
                filled[h] += rows.numel()
        done = count
        if min(filled) == 0:
            raise ValueError(f"count {count} leaves a half-set empty; use counts >= 2")
        if count in requested:
            maps = [_divide(numerators[h], denominators[h], wiener_constant) for h in (0, 1)]
            resolution_vs_count.append(fourier_shell_correlation(*maps).resolution_A(voxel_size_A))
    halves = [_divide(numerators[h], denominators[h], wiener_constant) for h in (0, 1)]
    curve = fourier_shell_correlation(*halves)
    full = _divide(numerators[0] + numerators[1], denominators[0] + denominators[1], wiener_constant)
    return GoldStandardAverage(
        average=full,
        half_a=halves[0],
        half_b=halves[1],
        half=half,
        fsc=curve,
        resolution_A=curve.resolution_A(voxel_size_A),
        counts=requested,
        resolution_vs_count_A=np.asarray(resolution_vs_count),
    )


def reference_free_average(
    particles: Tensor,
    predict_relative_pose: PosePredictor,
    *,
    wedge: MissingWedge | None,
    voxel_size_A: float,
    anchor_index: int = 0,
    n_rounds: int = 3,
    steps_deg: Sequence[float] = (5.0, 2.0),
    max_shift_vox: int | None = None,
    seed: int = 0,
    wiener_constant: float = 0.1,
) -> ReferenceFreeAverage:
    """Average one class without a reference: poses from a predictor, then rounds of align-all → average.

    The predictor gives every particle's pose relative to the anchor particle (e.g. the one nearest the
    class medoid of the embedding), which fixes one frame for both half-sets. Each half is then refined
    alone: :func:`~aptvit.tasks.align.refine_alignment` of its particles against its own current average
    (wedge-compensated, so the reference has no wedge), then a new average.

    Parameters
    ----------
    particles
        `(N, D, D, D)` subtomograms of one class.
    predict_relative_pose
        See :data:`~aptvit.tasks.align.PosePredictor` (the SE(3) head, or the classical
        :func:`~aptvit.tasks.align.exhaustive_pose_predictor`).
    wedge, voxel_size_A, seed, wiener_constant
        As in :func:`gold_standard_average`.
    anchor_index
        Particle whose frame the average is in.
    n_rounds
        Rounds of alignment and averaging (≥ 0).
    steps_deg, max_shift_vox
        Local search of each round (:func:`~aptvit.tasks.align.refine_alignment`).

    Returns
    -------
    ReferenceFreeAverage
    """
    particles = torch.as_tensor(particles)
    n = particles.shape[0]
    if not 0 <= anchor_index < n:
        raise ValueError(f"anchor_index must lie in [0, {n}), got {anchor_index}")
    if n_rounds < 0:
        raise ValueError(f"n_rounds must be >= 0, got {n_rounds}")
    rotation, shift = predict_relative_pose(particles[anchor_index], particles)
    if rotation.shape != (n, 3, 3) or shift.shape != (n, 3):
        raise ValueError(
            f"predict_relative_pose must return ({n}, 3, 3) and ({n}, 3), "
            f"got {tuple(rotation.shape)} and {tuple(shift.shape)}"
        )
    rotation, shift = rotation.to(particles).clone(), shift.to(particles).clone()
    initial = gold_standard_average(
        particles,
        rotation,
        shift,
        wedge=wedge,
        voxel_size_A=voxel_size_A,
        counts=[n],
        seed=seed,
        wiener_constant=wiener_constant,
    )
    half = initial.half
    references = [initial.half_a, initial.half_b]
    resolution_per_round = [initial.resolution_A]
    result = initial
    for _ in range(n_rounds):
        for h in (0, 1):
            rows = torch.as_tensor(np.flatnonzero(half == h))
            aligned = refine_alignment(
                particles[rows],
                references[h],
                rotation[rows],
                particle_wedge=wedge,
                steps_deg=steps_deg,
                max_shift_vox=max_shift_vox,
            )
            rotation[rows], shift[rows] = aligned.rotation, aligned.shift_zyx_vox
        result = gold_standard_average(
            particles,
            rotation,
            shift,
            wedge=wedge,
            voxel_size_A=voxel_size_A,
            half=half,
            counts=[n],
            seed=seed,
            wiener_constant=wiener_constant,
        )
        references = [result.half_a, result.half_b]
        resolution_per_round.append(result.resolution_A)
    result = gold_standard_average(
        particles,
        rotation,
        shift,
        wedge=wedge,
        voxel_size_A=voxel_size_A,
        half=half,
        seed=seed,
        wiener_constant=wiener_constant,
    )
    return ReferenceFreeAverage(result, rotation, shift, resolution_per_round)


def _weighted_sums(
    particles: Tensor, rotation: Tensor, shift_zyx_vox: Tensor, wedge: MissingWedge | None
) -> tuple[Tensor, Tensor]:
    """``Σ W_i F_i`` (complex) and ``Σ W_i``, both `(D, D, D)`, of particles in the reference frame."""
    particles = torch.as_tensor(particles)
    if not particles.is_floating_point():
        particles = particles.float()
    if particles.ndim != 4 or len(set(particles.shape[1:])) != 1 or particles.shape[0] == 0:
        raise ValueError(f"particles must be (N, D, D, D) with N >= 1, got {tuple(particles.shape)}")
    n = particles.shape[0]
    shape = (particles.shape[1], particles.shape[2], particles.shape[3])
    rotation = torch.as_tensor(rotation).to(particles)
    shift_zyx_vox = torch.as_tensor(shift_zyx_vox).to(particles)
    if rotation.shape != (n, 3, 3) or shift_zyx_vox.shape != (n, 3):
        raise ValueError(
            f"poses must be ({n}, 3, 3) and ({n}, 3), "
            f"got {tuple(rotation.shape)} and {tuple(shift_zyx_vox.shape)}"
        )
    numerator = torch.zeros(shape, dtype=torch.complex128, device=particles.device)
    denominator = torch.zeros(shape, dtype=torch.float64, device=particles.device)
    for first in range(0, n, _BATCH):
        r, s = rotation[first : first + _BATCH], shift_zyx_vox[first : first + _BATCH]
        inverse = r.transpose(1, 2)
        # particle = R·ref + s  ⇔  ref = Rᵀ·particle − Rᵀ s
        back = rotate_volumes(
            particles[first : first + _BATCH, None], inverse, -(inverse @ s[..., None])[..., 0]
        )
        spectra = torch.fft.fftn(back[:, 0], dim=(-3, -2, -1))
        if wedge is None:
            weight = torch.ones((r.shape[0], *shape), dtype=particles.dtype, device=particles.device)
        else:
            weight = wedge.weight(shape, inverse, dtype=particles.dtype, device=particles.device)
        numerator += (weight * spectra).sum(0)
        denominator += weight.sum(0)
    return numerator, denominator


def _divide(numerator: Tensor, denominator: Tensor, wiener_constant: float) -> Tensor:
    if not wiener_constant >= 0:
        raise ValueError(f"wiener_constant must be >= 0, got {wiener_constant}")
    spectrum = numerator / (denominator + wiener_constant).clamp_min(1e-12)
    return torch.fft.ifftn(spectrum).real.to(torch.float32)


@dataclass(frozen=True)
class ClusterAverages:
    """Reference-free averages of clusters of particles and each particle's pose against its average.

    Attributes
    ----------
    averages
        `(K, D, D, D)` float32, cluster ``k`` in the frame of its anchor particle.
    rotation, shift_zyx_vox
        `(N, 3, 3)`, `(N, 3)` float64 poses, ``particle ≈ R · averages[cluster] + shift`` (voxels).
    anchor_index
        `(K,)` the particle whose frame each average is in.
    resolution_A
        `(K,)` half-map FSC-0.143 resolution (Å); NaN for a cluster of one particle.
    """

    averages: np.ndarray
    rotation: np.ndarray
    shift_zyx_vox: np.ndarray
    anchor_index: np.ndarray
    resolution_A: np.ndarray


def average_clusters(
    volumes: np.ndarray | Tensor,
    assignment: np.ndarray,
    *,
    voxel_size_A: float,
    anchor_scores: np.ndarray | None = None,
    wedge: MissingWedge | None = None,
    global_step_deg: float = 20.0,
    local_steps_deg: Sequence[float] = (10.0, 5.0),
    n_rounds: int = 1,
    seed: int = 0,
) -> ClusterAverages:
    """Average each cluster without a reference (:func:`reference_free_average`, classical poses).

    The initial poses come from :func:`~aptvit.tasks.align.exhaustive_pose_predictor` against the anchor
    (the cluster's particle with the highest ``anchor_scores``, e.g. its clustering confidence), then
    ``n_rounds`` of local refinement. The defaults are cheap (a 20° global grid, ~1900 rotations;
    10° and 5° local steps; one round): poses to a few degrees, averages to check classes by eye.

    Parameters
    ----------
    volumes
        `(N, D, D, D)` subtomograms.
    assignment
        `(N,)` cluster ``0 … K−1`` of each.
    voxel_size_A
        Voxel (Å), for the resolution.
    anchor_scores
        `(N,)` higher = better anchor; default the first particle of each cluster.
    wedge
        Lab-frame missing wedge; None: not compensated (a user's tilt range is not recorded).
    global_step_deg, local_steps_deg
        Angular steps of the initial search.
    n_rounds, seed
        As in :func:`reference_free_average`.

    Returns
    -------
    ClusterAverages
    """
    particles = torch.as_tensor(np.asarray(volumes, dtype=np.float32))
    assignment = np.asarray(assignment)
    n, d = particles.shape[0], particles.shape[-1]
    if assignment.shape != (n,) or (n and assignment.min() < 0):
        raise ValueError(f"assignment must be (N,) = ({n},) non-negative clusters, got {assignment.shape}")
    scores = np.zeros(n) if anchor_scores is None else np.asarray(anchor_scores, dtype=np.float64)
    k = int(assignment.max()) + 1
    averages = np.zeros((k, d, d, d), np.float32)
    rotation = np.tile(np.eye(3), (n, 1, 1))
    shift = np.zeros((n, 3))
    anchors = np.zeros(k, int)
    resolution = np.full(k, np.nan)
    predictor = exhaustive_pose_predictor(
        wedge, global_step_deg=global_step_deg, local_steps_deg=local_steps_deg
    )
    for cluster in range(k):
        rows = np.flatnonzero(assignment == cluster)
        if len(rows) == 0:
            continue
        anchor = int(np.argmax(scores[rows]))
        anchors[cluster] = rows[anchor]
        if len(rows) == 1:
            averages[cluster] = particles[rows[0]].numpy()
            continue
        result = reference_free_average(
            particles[torch.as_tensor(rows)],
            predictor,
            wedge=wedge,
            voxel_size_A=voxel_size_A,
            anchor_index=anchor,
            n_rounds=n_rounds,
            steps_deg=local_steps_deg,
            seed=seed,
        )
        averages[cluster] = result.result.average.float().numpy()
        rotation[rows] = result.rotation.double().numpy()
        shift[rows] = result.shift_zyx_vox.double().numpy()
        resolution[cluster] = result.result.resolution_A
    return ClusterAverages(averages, rotation, shift, anchors, resolution)
