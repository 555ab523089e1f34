"""Results on an observed dataset back to the user's files: RELION 5 STAR, copick picks, average maps.

The particles are located from what the import kept (:mod:`cryoengine.store.reader`, Observed datasets):
each one's centre in its source tomogram (``source_centre_A``), the tomogram's name and extent, and the
pixel size of the coordinates, so the STAR refers to the user's own tomograms at their pixel size.

Poses
    ``rotation`` and ``shift_zyx_vox`` are poses against a class average, ``particle ≈ R · average +
    shift`` in the particle's box (shift in dataset voxels from the box centre, voxel ``D // 2``). The
    written centre is that box centre plus the shift, i.e. where the average's centre lies in the
    tomogram; ``rlnAngleRot/Tilt/Psi`` are ``R`` (:mod:`cryoengine.physics.rotation`), ``rlnOrigin*`` 0.
Averages
    Written at the dataset's (effective) voxel, and Fourier-resampled
    (:mod:`cryoengine.physics.fourier_rescale`) to the source tomograms' pixel size over the same field of
    view (a box of ``⌈D · voxel / pixel⌉`` voxels, through the box pair of
    :func:`~cryoengine.physics.fourier_rescale.plan_box_rescale`, so within 0.2 % of the source pixel); each
    header holds the voxel of that file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryoengine.formats.copick_layout import CopickProject, write_copick_picks
from cryoengine.formats.mrc import write_volume
from cryoengine.formats.particle_tables import TABLE_COLUMNS, ParticleTable, write_relion5_particles
from cryoengine.physics.fourier_rescale import fourier_resample_volume, plan_box_rescale
from cryoengine.store.reader import Dataset

__all__ = [
    "observed_particle_table",
    "refined_centres_zyx_A",
    "write_average_maps",
    "write_copick_results",
    "write_star_results",
]


def observed_particle_table(dataset: Dataset) -> ParticleTable:
    """Return the particles of an observed dataset, in dataset index order, as a :class:`ParticleTable`.

    Parameters
    ----------
    dataset
        An observed dataset (``dataset.observed``).

    Returns
    -------
    ParticleTable
        Centres, tomogram names and sizes, source files and rows; ``rotation`` the imported orientations
        where every particle had one, else None; ``original`` empty (no columns).
    """
    if not dataset.observed:
        raise ValueError(f"{dataset.path} holds simulated particles, not a user's: nothing to write back")
    tomograms = dataset.attrs["tomograms"]
    files = dataset.attrs["particle_files"]
    arrays = [dataset.per_particle_arrays(class_id) for class_id in dataset.classes]
    joined = {name: np.concatenate([a[name] for a in arrays]) for name in arrays[0]}
    sizes = np.array([tomograms[t]["size_zyx_A"] for t in joined["tomogram"]], dtype=np.float64)
    frame = pd.DataFrame(
        {
            "tomogram": [tomograms[t]["name"] for t in joined["tomogram"]],
            "source_file": [files[f] for f in joined["source_file"]],
            "source_row": joined["source_row"],
            **{f"centre_{a}_A": joined["source_centre_A"][:, k] for k, a in enumerate("zyx")},
            "coordinate_pixel_size_A": [tomograms[t]["coordinate_pixel_size_A"] for t in joined["tomogram"]],
            **{f"tomogram_size_{a}_A": sizes[:, k] for k, a in enumerate("zyx")},
        }
    )[list(TABLE_COLUMNS)]
    rotation = joined["rotation"] if joined["orientation_given"].all() else None
    return ParticleTable(frame, rotation, pd.DataFrame(index=frame.index))


def refined_centres_zyx_A(dataset: Dataset, shift_zyx_vox: np.ndarray) -> np.ndarray:
    """`(N, 3)` centres in Å from voxel 0 of the source tomograms: box centres + the aligned shifts.

    Parameters
    ----------
    dataset
        An observed dataset.
    shift_zyx_vox
        `(N, 3)` pose shifts in dataset voxels (module docstring, Poses), in dataset index order.
    """
    arrays = [dataset.per_particle_arrays(class_id) for class_id in dataset.classes]
    centre = np.concatenate([a["source_centre_A"] for a in arrays])
    box_shift = np.concatenate([a["shift"] for a in arrays]).astype(np.float64)
    shift = np.asarray(shift_zyx_vox, dtype=np.float64)
    if shift.shape != centre.shape:
        raise ValueError(f"shift_zyx_vox must have shape {centre.shape}, got {shift.shape}")
    return centre + (shift - box_shift) * dataset.voxel_size_A


def write_star_results(
    dataset: Dataset,
    path: str | os.PathLike[str],
    *,
    class_number: Sequence[int] | np.ndarray,
    confidence: Sequence[float] | np.ndarray,
    rotation: np.ndarray,
    shift_zyx_vox: np.ndarray,
) -> Path:
    """Write per-particle classes, confidences and poses as a RELION 5 particle STAR.

    Parameters
    ----------
    dataset
        The observed dataset the results are of.
    path
        Output STAR.
    class_number
        `(N,)` 1-based class of each particle (``rlnClassNumber``), dataset index order.
    confidence
        `(N,)` in ``[0, 1]`` (``rlnMaxValueProbDistribution``).
    rotation, shift_zyx_vox
        `(N, 3, 3)` and `(N, 3)` poses against the class average (module docstring, Poses).

    Returns
    -------
    Path
        ``path``; coordinates in pixels of the first tomogram's coordinate pixel size.
    """
    table = observed_particle_table(dataset)
    centres = refined_centres_zyx_A(dataset, shift_zyx_vox)
    pixel = float(dataset.attrs["tomograms"][0]["coordinate_pixel_size_A"])
    return write_relion5_particles(
        path,
        table,
        tilt_series_pixel_size_A=pixel,
        rotation=rotation,
        class_number=class_number,
        confidence=confidence,
        shift_zyx_A=centres - table.centres_zyx_A(),
    )


def write_copick_results(
    dataset: Dataset,
    *,
    class_number: Sequence[int] | np.ndarray,
    confidence: Sequence[float] | np.ndarray,
    rotation: np.ndarray,
    shift_zyx_vox: np.ndarray,
    user_id: str = "aptvit",
) -> list[Path]:
    """Write one copick picks set per class into the project the dataset was imported from.

    Each class ``k`` becomes session ``class<k>`` of ``user_id`` for the imported object, per run, with the
    poses as ``transformation_`` and the confidences as scores.

    Returns
    -------
    list of Path
        The picks files written.
    """
    settings = dataset.attrs["import"]
    if settings.get("input_format") != "copick":
        raise ValueError(f"{dataset.path} was not imported from a copick project")
    project = CopickProject(settings["copick_config"])
    table = observed_particle_table(dataset)
    centres = refined_centres_zyx_A(dataset, shift_zyx_vox)
    classes = np.asarray(class_number)
    scores = np.asarray(confidence, dtype=np.float64)
    runs = table.particles["tomogram"].to_numpy()
    written = []
    for k in np.unique(classes):
        for run in np.unique(runs[classes == k]):
            rows = (classes == k) & (runs == run)
            written.append(
                write_copick_picks(
                    project.roots[0],
                    str(run),
                    settings["copick_object"],
                    centres[rows],
                    rotation=np.asarray(rotation)[rows],
                    user_id=user_id,
                    session_id=f"class{int(k)}",
                    voxel_size_A=settings.get("copick_voxel_spacing_A"),
                    scores=scores[rows],
                )
            )
    return written


def write_average_maps(
    average_zyx: np.ndarray,
    voxel_size_A: float,
    source_pixel_size_A: float,
    stem: str | os.PathLike[str],
    *,
    invert_contrast: bool = False,
) -> tuple[Path, Path]:
    """Write a class average at the dataset's voxel and at the source pixel size (module docstring).

    Parameters
    ----------
    average_zyx
        `(D, D, D)` average at ``voxel_size_A``.
    voxel_size_A
        Its voxel (Å).
    source_pixel_size_A
        The user's tomogram voxel (Å).
    stem
        Output path without suffix: ``<stem>_<voxel>A.mrc`` for each.
    invert_contrast
        Multiply by −1 (protein-dark averages of the boxes written protein bright, as maps are shared).

    Returns
    -------
    tuple of Path
        At the dataset's voxel, at the source pixel size.
    """
    average = np.asarray(average_zyx, dtype=np.float32) * (-1 if invert_contrast else 1)
    if average.ndim != 3 or len(set(average.shape)) != 1:
        raise ValueError(f"average_zyx must be a cube (D, D, D), got shape {average.shape}")
    d = average.shape[0]
    # A box of the same field of view at the source pixel, through a pair of box sizes that rescales
    # within the import's tolerance: the average is zero-padded (or cropped) about its centre to
    # plan.source_box, Fourier-resampled to plan.resampled_box and cropped to the target box.
    target_box = math.ceil(d * voxel_size_A / source_pixel_size_A)
    plan = plan_box_rescale(voxel_size_A, source_pixel_size_A, target_box, margin_vox=0)
    n = plan.source_box
    padded = np.zeros((n, n, n), np.float32)
    inner = min(n, d)
    low_out, low_in = n // 2 - inner // 2, d // 2 - inner // 2
    padded[low_out : low_out + inner, low_out : low_out + inner, low_out : low_out + inner] = average[
        low_in : low_in + inner, low_in : low_in + inner, low_in : low_in + inner
    ]
    m = plan.resampled_box
    resampled = fourier_resample_volume(padded, (m, m, m), fixed="centre")
    start = m // 2 - target_box // 2
    resampled = resampled[start : start + target_box, start : start + target_box, start : start + target_box]
    source_voxel = plan.effective_voxel_size_A
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    model_path = write_volume(f"{stem}_{voxel_size_A:.3f}A.mrc", average, voxel_size_A)
    source_path = write_volume(f"{stem}_{source_voxel:.3f}A.mrc", resampled, source_voxel)
    return model_path, source_path
