"""Subtomograms cut from a user's tomogram at the model's voxel size: lazy reads, Fourier rescaling, edges.

Only the region around each particle is read from the tomogram (a memory-mapped MRC or a lazy zarr array:
anything with ``shape`` and basic slicing), rescaled by :mod:`cryoengine.physics.fourier_rescale`, and
cropped to the target box.

Geometry
--------
Particle centres are in Å from the centre of the tomogram's voxel 0, ``(z, y, x)``, so a centre ``c_A``
is at voxel ``c_A / voxel_size_A`` of the tomogram and at ``c_A / v`` of the same field sampled at the
output voxel ``v`` (the plan's effective voxel). As in :mod:`cryoengine.physics.extraction`, each box is
centred (index ``box // 2``) on the output-grid voxel nearest the centre and the sub-voxel remainder, in
``[−0.5, 0.5)`` output voxels, is returned as ``shift`` (``particle = R · reference + shift``); the
source-grid remainder of that box centre is applied as a Fourier phase shift, never by moving the box.

Edges
-----
A particle whose output box reaches beyond the tomogram is either padded (the missing voxels take the mean
of the box's voxels inside the tomogram, which standardisation maps to 0) and flagged in ``padded``, or
skipped (``edge="skip"``, listed by ``kept``), or an error (``edge="error"``). It is never moved. A centre
outside the tomogram is always an error. The resampling margin around the output box (``margin_vox``) may
reach beyond the tomogram without a flag; it is padded the same way and cropped off.

Contrast and normalisation
--------------------------
CryoEngine's simulated tomograms show protein DARK: a positive projected potential comes out negative at
low frequency through the CTF sign of :mod:`cryoengine.physics.ctf` (``phase_flip`` false, the default), the
same polarity as tomograms reconstructed by IMOD, AreTomo, Warp or RELION from unflipped tilts. Give
``invert_contrast=True`` for a tomogram where protein is bright. Each box is then standardised to zero
mean and unit variance over the box, as ``aptvit.data.views.standardise_volumes`` does to every view the
encoder sees (idempotent, so standardising again at training time changes nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cryoengine.physics.extraction import nearest_voxel_zyx
from cryoengine.physics.fourier_rescale import BoxRescalePlan, fourier_resample_volume, plan_box_rescale

__all__ = ["CutSubtomograms", "ParticleOutsideTomogramError", "cut_subtomograms"]

# Variance below which a standardised box is left at zero mean instead of divided (a flat box).
_FLAT_VARIANCE = 1e-12


class ParticleOutsideTomogramError(ValueError):
    """A particle centre outside the tomogram, or a box beyond its edge with ``edge="error"``."""


@dataclass(frozen=True)
class CutSubtomograms:
    """Subtomograms cut from one tomogram.

    Attributes
    ----------
    volumes
        `(K, D, D, D)` float32 boxes at ``plan.effective_voxel_size_A``.
    shift_zyx_vox
        `(K, 3)` float64 sub-voxel offset of each particle centre from its box centre, in output voxels.
    box_centre_zyx_A
        `(K, 3)` float64 centre of each box (voxel ``D // 2``) in Å from the tomogram's voxel 0.
    padded
        `(K,)` bool: the box reached beyond the tomogram and was padded.
    kept
        `(K,)` int64 index of each box's particle in the input (all of them unless ``edge="skip"``).
    plan
        The box sizes used and the effective voxel size.
    """

    volumes: np.ndarray
    shift_zyx_vox: np.ndarray
    box_centre_zyx_A: np.ndarray
    padded: np.ndarray
    kept: np.ndarray
    plan: BoxRescalePlan


def cut_subtomograms(
    tomogram_zyx: Any,
    tomogram_voxel_size_A: float,
    centres_zyx_A: np.ndarray,
    box: int,
    voxel_size_A: float,
    *,
    edge: Literal["pad", "skip", "error"] = "pad",
    invert_contrast: bool = False,
    standardise: bool = True,
    margin_vox: int = 4,
    tolerance: float = 2e-3,
) -> CutSubtomograms:
    """Cut a `box`³ subtomogram at ``voxel_size_A`` around each particle centre.

    Parameters
    ----------
    tomogram_zyx
        `(nz, ny, nx)` tomogram: a numpy array, a memory map (``mrcfile.mmap(...).data``) or a zarr array;
        only each particle's region is read.
    tomogram_voxel_size_A
        Voxel of the tomogram (Å), ``> 0``.
    centres_zyx_A
        `(N, 3)` particle centres in Å from the centre of voxel 0, ``(z, y, x)``.
    box
        Output box edge in voxels.
    voxel_size_A
        Output voxel wanted (the model's, Å); the one obtained is ``plan.effective_voxel_size_A``.
    edge
        What to do with a box that reaches beyond the tomogram (module docstring).
    invert_contrast
        Multiply by −1 (for tomograms where protein is bright).
    standardise
        Zero mean, unit variance per box.
    margin_vox, tolerance
        Passed to :func:`~cryoengine.physics.fourier_rescale.plan_box_rescale`.

    Returns
    -------
    CutSubtomograms
        The boxes and their geometry.

    Raises
    ------
    ParticleOutsideTomogramError
        A centre outside the tomogram, or (``edge="error"``) a box beyond its edge.
    ValueError
        Invalid arguments, or no box pair rescales within ``tolerance``.
    """
    shape = tuple(int(s) for s in getattr(tomogram_zyx, "shape", ()))
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"tomogram_zyx must be a non-empty 3D array, got shape {shape}")
    centres = np.asarray(centres_zyx_A, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 3 or not np.all(np.isfinite(centres)):
        raise ValueError(f"centres_zyx_A must be finite with shape (N, 3), got shape {centres.shape}")
    if edge not in ("pad", "skip", "error"):
        raise ValueError(f"edge must be 'pad', 'skip' or 'error', got {edge!r}")
    plan = plan_box_rescale(
        tomogram_voxel_size_A, voxel_size_A, box, margin_vox=margin_vox, tolerance=tolerance
    )
    source_A, out_A = plan.source_voxel_size_A, plan.effective_voxel_size_A
    extent = np.array(shape, dtype=np.float64) - 1.0

    centres_source = centres / source_A
    outside = np.any((centres_source < -0.5) | (centres_source > extent + 0.5), axis=1)
    if np.any(outside):
        index = int(np.argmax(outside))
        raise ParticleOutsideTomogramError(
            f"particle {index} (centre_zyx_A {np.round(centres[index], 2).tolist()}) lies outside the "
            f"tomogram of shape {shape} at {source_A} Å ({int(outside.sum())} of {len(centres)} particles)"
        )
    box_voxel, shifts = nearest_voxel_zyx(centres / out_A)
    box_centre_A = box_voxel * out_A
    half_low, half_high = (box // 2) * out_A / source_A, (box - 1 - box // 2) * out_A / source_A
    box_centre_source = box_centre_A / source_A
    beyond = np.any((box_centre_source - half_low < 0) | (box_centre_source + half_high > extent), axis=1)
    if edge == "error" and np.any(beyond):
        index = int(np.argmax(beyond))
        raise ParticleOutsideTomogramError(
            f"the {box}³ box of particle {index} (centre_zyx_A {np.round(centres[index], 2).tolist()}) "
            f"reaches beyond the tomogram of shape {shape}; {int(beyond.sum())} of {len(centres)} particles "
            "are affected (edge='pad' pads and flags them, edge='skip' drops them)"
        )
    kept = np.flatnonzero(~beyond) if edge == "skip" else np.arange(len(centres))

    volumes = np.empty((len(kept), box, box, box), dtype=np.float32)
    n, m = plan.source_box, plan.resampled_box
    start_out = m // 2 - box // 2
    for out, particle in zip(volumes, kept, strict=True):
        source_voxel, residual = nearest_voxel_zyx(box_centre_source[particle])
        region = _read_padded(tomogram_zyx, shape, source_voxel - n // 2, n)
        if n == m and not np.any(residual):
            resampled = region
        else:
            resampled = fourier_resample_volume(region, (m, m, m), fixed="centre", offset_zyx_vox=residual)
        crop = resampled[
            start_out : start_out + box, start_out : start_out + box, start_out : start_out + box
        ]
        out[...] = _normalise(crop, invert_contrast, standardise)
    return CutSubtomograms(
        volumes=volumes,
        shift_zyx_vox=shifts[kept],
        box_centre_zyx_A=box_centre_A[kept],
        padded=beyond[kept],
        kept=kept,
        plan=plan,
    )


def _read_padded(tomogram_zyx: Any, shape: tuple[int, ...], start_zyx: np.ndarray, n: int) -> np.ndarray:
    """Read the `n`³ region at ``start_zyx``; voxels beyond the tomogram take the mean of those inside."""
    low = np.maximum(start_zyx, 0)
    high = np.minimum(start_zyx + n, shape)
    inside = np.asarray(tomogram_zyx[low[0] : high[0], low[1] : high[1], low[2] : high[2]], dtype=np.float64)
    if inside.shape == (n, n, n):
        return inside
    region = np.full((n, n, n), inside.mean() if inside.size else 0.0)
    offset = low - start_zyx
    region[
        offset[0] : offset[0] + inside.shape[0],
        offset[1] : offset[1] + inside.shape[1],
        offset[2] : offset[2] + inside.shape[2],
    ] = inside
    return region


def _normalise(volume: np.ndarray, invert_contrast: bool, standardise: bool) -> np.ndarray:
    """Invert the contrast and standardise one box, in float64."""
    volume = np.asarray(volume, dtype=np.float64)
    if invert_contrast:
        volume = -volume
    if standardise:
        volume = volume - volume.mean()
        variance = float(np.mean(volume**2))
        if variance > _FLAT_VARIANCE:
            volume = volume / math.sqrt(variance)
    return volume
