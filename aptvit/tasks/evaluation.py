"""One evaluation run over a dataset: every task, every method and baseline, on the same particles and folds.

Classification (linear probe, kNN, few-shot, clustering) of each encoder's frozen embeddings and of the
raw-voxel PCA baseline at every SNR level, the supervised 3D CNN at the headline SNR; alignment of particle
pairs of each class (SE(3) head, head + local refinement, classical exhaustive search); reference-free
averaging of one class against the oracle (ground-truth poses). The result is the nested dict that
:func:`aptvit.tasks.report.write_report` draws.

The ground-truth map of a class is the wedge-compensated average of its *clean* subtomograms at their
ground-truth poses: the same CTF, dose filter and voxel size as the data, so that FSC against it measures
alignment and noise, not the imaging model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from aptvit.models.vit import APTViT
from aptvit.rotation import (
    geodesic_angle_rad,
    point_group_rotations,
    relative_pose,
    rotate_volumes,
)
from aptvit.tasks.align import (
    PosePredictor,
    alignment_errors,
    exhaustive_pose_predictor,
    learned_pose_predictor,
)
from aptvit.tasks.average import GoldStandardAverage, gold_standard_average, reference_free_average
from aptvit.tasks.classify import (
    cluster_features,
    few_shot_classify,
    knn_classify,
    linear_probe,
    raw_voxel_pca_features,
)
from aptvit.tasks.embed import embed_volumes
from aptvit.tasks.fsc import fourier_shell_correlation
from aptvit.tasks.supervised_cnn import supervised_cnn_classify
from aptvit.tasks.wedge import MissingWedge
from cryoengine.store import Dataset

__all__ = ["EvaluationSettings", "evaluate_dataset"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSettings:
    """What an evaluation run measures, and how much of it.

    Attributes
    ----------
    snr_levels
        Stored SNR levels to classify at (``math.inf``: the clean volumes); None: every stored level.
    headline_snr
        The level of the supervised CNN, alignment, averaging and the embedding map.
    knn_k, shots, n_splits
        kNN neighbours, few-shot labelled particles per class, tomogram folds (None: as many as the
        classes' tomograms allow).
    pca_components
        Components of the raw-voxel PCA baseline.
    cnn_epochs
        Training budget of the supervised CNN (passes over each training fold); 0 skips it.
    align_pairs_per_class
        Particle pairs aligned per class; 0 skips alignment.
    exhaustive_step_deg, refine_steps_deg
        Global grid of the classical search, and local steps of both refinements.
    average_class, average_particles, average_rounds
        Class averaged reference-free (None: the first class evaluated), at most this many of its
        particles, rounds of align-all → average; ``average_particles`` 0 skips averaging.
    seed
        Seed of the folds, the pairs and the half-sets.
    batch_size
        Subtomograms embedded at once.
    """

    snr_levels: tuple[float, ...] | None = None
    headline_snr: float = 0.05
    knn_k: int = 20
    shots: tuple[int, ...] = (1, 5, 10)
    n_splits: int | None = None
    pca_components: int = 32
    cnn_epochs: int = 20
    align_pairs_per_class: int = 4
    exhaustive_step_deg: float = 10.0
    refine_steps_deg: tuple[float, ...] = (5.0, 2.0)
    average_class: str | None = None
    average_particles: int = 64
    average_rounds: int = 2
    seed: int = 0
    batch_size: int = 64
    symmetry: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Particles:
    """The evaluated particles of a dataset at one SNR level, with their ground truth."""

    volumes: np.ndarray  # (N, D, D, D)
    labels: np.ndarray  # (N,)
    tomograms: np.ndarray  # (N,)
    rotation: np.ndarray  # (N, 3, 3)
    shift: np.ndarray  # (N, 3)


def evaluate_dataset(
    dataset: Dataset,
    encoders: Mapping[str, APTViT],
    settings: EvaluationSettings,
    *,
    classes: Sequence[str] | None = None,
    pose_encoder: str | None = None,
    pose_head: nn.Module | None = None,
) -> dict[str, Any]:
    """Run every task on one dataset (or the given classes of it).

    Parameters
    ----------
    dataset
        An open ``dataset.zarr``.
    encoders
        Method name → frozen encoder (the pre-trained one, its untrained twin, a plain-ViT checkpoint...).
    settings
        What to measure.
    classes
        Class ids to evaluate (e.g. the classes held out of pre-training); all when None.
    pose_encoder, pose_head
        The encoder (a key of ``encoders``) whose tokens the SE(3) head reads, and the head; alignment and
        averaging by the head are skipped without them.

    Returns
    -------
    dict
        ``dataset_results`` of :mod:`aptvit.tasks.report`.
    """
    class_ids = list(dataset.classes if classes is None else classes)
    for class_id in class_ids:
        dataset.class_index(class_id)  # ClassNotFoundError naming the dataset and the classes it has
    labels = [dataset.class_index(class_id) for class_id in class_ids]
    levels = list(dataset.snr_levels if settings.snr_levels is None else settings.snr_levels)
    if settings.headline_snr not in levels:
        levels.append(settings.headline_snr)
    results: dict[str, Any] = {
        "class_names": _label_names(dataset, labels),
        "classification": {},
        "clustering": {},
    }
    headline: _Particles | None = None
    for level in sorted(levels, reverse=True):
        particles = _read_particles(dataset, class_ids, level)
        key = "inf" if math.isinf(level) else f"{level:g}"
        log.info(
            "%s, SNR %s: %d particles of %d classes", dataset.path, key, len(particles.labels), len(class_ids)
        )
        features = {
            name: embed_volumes(encoder, particles.volumes, batch_size=settings.batch_size, progress=True)
            for name, encoder in encoders.items()
        }
        features["PCA"] = raw_voxel_pca_features(
            particles.volumes, settings.pca_components, seed=settings.seed
        )
        results["classification"][key] = _classification(features, particles, settings)
        results["clustering"][key] = {
            name: _clustering(values, particles.labels, settings.seed) for name, values in features.items()
        }
        if level == settings.headline_snr:
            headline = particles
            if settings.cnn_epochs:
                name = f"3D CNN (supervised, {settings.cnn_epochs} epochs)"
                log.info(
                    "training the supervised 3D CNN baseline on each fold (%d epochs)", settings.cnn_epochs
                )
                results["classification"][key][name] = supervised_cnn_classify(
                    particles.volumes,
                    particles.labels,
                    particles.tomograms,
                    epochs=settings.cnn_epochs,
                    n_splits=settings.n_splits,
                    seed=settings.seed,
                ).as_dict()
            first = next(iter(features))
            results["embedding"] = {"features": features[first], "labels": particles.labels, "method": first}
    assert headline is not None
    wedge = MissingWedge.from_dataset_attrs(dataset.attrs)
    predictors = _pose_predictors(encoders, pose_encoder, pose_head, wedge, settings)
    if settings.align_pairs_per_class and predictors:
        results["alignment"] = _alignment(headline, dataset, class_ids, predictors, settings)
    if settings.average_particles:
        results["averaging"] = _averaging(dataset, class_ids, headline, predictors, wedge, settings)
    return results


def _label_names(dataset: Dataset, labels: Sequence[int]) -> list[str]:
    """Names of the labels 0 … max(labels), so a confusion matrix's rows can be named."""
    names = {dataset.class_index(class_id): class_id for class_id in dataset.classes}
    return [names.get(label, "") for label in range(max(labels) + 1)]


def _read_particles(dataset: Dataset, class_ids: Sequence[str], level: float) -> _Particles:
    """Every particle of the given classes at one stored SNR level (``inf``: clean), shard by shard."""
    stored = list(dataset.snr_levels)
    if not math.isinf(level) and not any(math.isclose(level, s, rel_tol=1e-6) for s in stored):
        raise ValueError(
            f"SNR {level:g} is not a stored level of {dataset.path} (stored: {stored}; inf = clean)"
        )
    column = (
        None
        if math.isinf(level)
        else next(i for i, s in enumerate(stored) if math.isclose(level, s, rel_tol=1e-6))
    )
    parts: dict[str, list[np.ndarray]] = {
        "volumes": [],
        "labels": [],
        "tomograms": [],
        "rotation": [],
        "shift": [],
    }
    for class_id in class_ids:
        for block in dataset.iter_shards(class_id):
            parts["volumes"].append(block.volumes_at(column))
            parts["labels"].append(np.full(len(block), block.class_index))
            parts["tomograms"].append(np.asarray(block.tomogram))
            parts["rotation"].append(np.asarray(block.rotation))
            parts["shift"].append(np.asarray(block.shift))
    return _Particles(**{name: np.concatenate(values) for name, values in parts.items()})


def _classification(
    features: Mapping[str, np.ndarray], particles: _Particles, settings: EvaluationSettings
) -> dict[str, Any]:
    scores: dict[str, Any] = {}
    common: dict[str, Any] = {"n_splits": settings.n_splits, "seed": settings.seed}
    for name, values in features.items():
        args = (values, particles.labels, particles.tomograms)
        scores[f"{name} linear"] = linear_probe(*args, **common).as_dict()
        if name == "PCA":
            continue  # the raw-voxel baseline is PCA + logistic regression
        scores[f"{name} kNN"] = knn_classify(*args, k=settings.knn_k, **common).as_dict()
        for shots, shot_scores in few_shot_classify(*args, shots=settings.shots, **common).items():
            scores[f"{name} {shots}-shot"] = shot_scores.as_dict()
    return scores


def _clustering(features: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float | None]:
    result = cluster_features(features, len(np.unique(labels)), labels=labels, seed=seed)
    return {
        "adjusted_rand_index": result.adjusted_rand_index,
        "normalized_mutual_information": result.normalized_mutual_information,
    }


def _pose_predictors(
    encoders: Mapping[str, APTViT],
    pose_encoder: str | None,
    pose_head: nn.Module | None,
    wedge: MissingWedge,
    settings: EvaluationSettings,
) -> dict[str, PosePredictor]:
    predictors: dict[str, PosePredictor] = {}
    if pose_head is not None and pose_encoder is not None:
        encoder = encoders[pose_encoder]
        predictors["SE(3) head"] = learned_pose_predictor(encoder, pose_head)
        predictors["SE(3) head + refine"] = learned_pose_predictor(
            encoder, pose_head, refine_wedge=wedge, refine_steps_deg=settings.refine_steps_deg
        )
    predictors["exhaustive (classical)"] = exhaustive_pose_predictor(
        wedge, global_step_deg=settings.exhaustive_step_deg, local_steps_deg=settings.refine_steps_deg
    )
    return predictors


def _alignment(
    particles: _Particles,
    dataset: Dataset,
    class_ids: Sequence[str],
    predictors: Mapping[str, PosePredictor],
    settings: EvaluationSettings,
) -> dict[str, Any]:
    """Relative pose of random same-class pairs, each method on the same pairs; errors modulo symmetry."""
    generator = np.random.default_rng(settings.seed)
    pairs = []
    for class_id in class_ids:
        rows = np.flatnonzero(particles.labels == dataset.class_index(class_id))
        if len(rows) < 2:
            continue
        for _ in range(settings.align_pairs_per_class):
            anchor, other = generator.choice(rows, size=2, replace=False)
            pairs.append((class_id, int(anchor), int(other)))
    volumes = torch.as_tensor(particles.volumes)
    rotation = torch.as_tensor(particles.rotation, dtype=torch.float64)
    shift = torch.as_tensor(particles.shift, dtype=torch.float64)
    results: dict[str, Any] = {}
    for name, predict in predictors.items():
        log.info("alignment: %s on %d pairs", name, len(pairs))
        predicted_rotation, predicted_shift, true_rotation, true_shift = [], [], [], []
        started = time.perf_counter()
        for class_id, anchor, other in pairs:
            r, t = predict(volumes[anchor], volumes[other : other + 1])
            r_true, t_true = relative_pose(rotation[anchor], shift[anchor], rotation[other], shift[other])
            group = point_group_rotations(settings.symmetry.get(class_id, "C1"))
            predicted_rotation.append(r[0].double())
            predicted_shift.append(t[0].double())
            true_rotation.append(_nearest_equivalent(r[0].double(), r_true, group, rotation[anchor]))
            true_shift.append(t_true)
        seconds = (time.perf_counter() - started) / max(len(pairs), 1)
        predicted, nearest = torch.stack(predicted_rotation), torch.stack(true_rotation)
        errors: dict[str, Any] = alignment_errors(
            predicted, nearest, torch.stack(predicted_shift), torch.stack(true_shift)
        )
        errors["rotation_error_deg"] = torch.rad2deg(geodesic_angle_rad(predicted, nearest)).numpy()
        errors["seconds_per_particle"] = seconds
        results[name] = errors
    return results


def _nearest_equivalent(
    rotation_pred: torch.Tensor, rotation_true: torch.Tensor, group: torch.Tensor, frame: torch.Tensor
) -> torch.Tensor:
    """Return the symmetry equivalent ``R_true · (R_a g R_aᵀ)`` closest to the prediction (DESIGN §8)."""
    conjugated = frame @ group.to(frame) @ frame.T
    equivalents = rotation_true @ conjugated  # (G, 3, 3)
    index = int(torch.argmin(geodesic_angle_rad(rotation_pred[None], equivalents)))
    return equivalents[index]


def _averaging(
    dataset: Dataset,
    class_ids: Sequence[str],
    particles: _Particles,
    predictors: Mapping[str, PosePredictor],
    wedge: MissingWedge,
    settings: EvaluationSettings,
) -> dict[str, Any]:
    """Reference-free averages of one class against the oracle; FSC of halves and against the truth."""
    class_id = settings.average_class or class_ids[0]
    rows = np.flatnonzero(particles.labels == dataset.class_index(class_id))[: settings.average_particles]
    if len(rows) < 4:
        raise ValueError(
            f"averaging class {class_id!r} needs at least 4 particles, {dataset.path} has {len(rows)}"
        )
    noisy = torch.as_tensor(particles.volumes[rows])
    rotation = torch.as_tensor(particles.rotation[rows], dtype=torch.float64)
    shift = torch.as_tensor(particles.shift[rows], dtype=torch.float64)
    clean = torch.as_tensor(_read_particles(dataset, [class_id], math.inf).volumes[: len(rows)])
    voxel = dataset.voxel_size_A
    common: dict[str, Any] = {"wedge": wedge, "voxel_size_A": voxel, "seed": settings.seed}
    truth = gold_standard_average(clean, rotation, shift, **common).average
    methods = {
        "oracle (ground-truth poses)": _average_record(
            gold_standard_average(noisy, rotation, shift, **common), truth, voxel
        )
    }
    # Reference-free averages live in the anchor's frame: the truth seen from there is R_a · truth + s_a.
    anchor_truth = rotate_volumes(truth[None, None].double(), rotation[:1], shift[:1])[0, 0].to(truth)
    for name, predict in predictors.items():
        if name == "SE(3) head":
            continue  # averaging refines anyway: the head's rounds are "SE(3) head + refine"
        log.info("reference-free averaging of %s (%d particles): %s", class_id, len(rows), name)
        result = reference_free_average(
            noisy, predict, n_rounds=settings.average_rounds, steps_deg=settings.refine_steps_deg, **common
        )
        methods[f"reference-free: {name}"] = _average_record(result.result, anchor_truth, voxel)
    return {"class_id": class_id, "ground_truth": truth.numpy(), "methods": methods}


def _average_record(average: GoldStandardAverage, truth: torch.Tensor, voxel_size_A: float) -> dict[str, Any]:
    against_truth = fourier_shell_correlation(average.average, truth)
    return {
        "average": average.average.numpy(),
        "fsc_frequency": average.fsc.frequency,
        "fsc": average.fsc.fsc,
        "resolution_A": average.resolution_A,
        "counts": average.counts,
        "resolution_vs_count_A": average.resolution_vs_count_A,
        "resolution_vs_ground_truth_A": against_truth.resolution_A(voxel_size_A, threshold=0.5),
    }
