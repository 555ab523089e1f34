"""Subtomogram extraction: crop cubic boxes from a tomogram around particle centres.

Each box is centred (index ``box // 2``) on the voxel nearest the particle centre; the sub-voxel remainder
is returned as the shift of the ground truth ``particle = R · reference + shift``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["extract_subtomograms", "nearest_voxel_zyx"]


def nearest_voxel_zyx(centres_zyx_vox: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split continuous centres into the nearest voxel and the sub-voxel remainder.

    Rounds half up (``floor(c + 0.5)``), so the remainder lies in ``[−0.5, 0.5)`` on every axis.

    Parameters
    ----------
    centres_zyx_vox
        `(..., 3)` centres in voxels, ``(z, y, x)``.

    Returns
    -------
    voxel_zyx : np.ndarray
        `(..., 3)` int64 nearest voxels.
    shift_zyx_vox : np.ndarray
        `(..., 3)` float64 ``centre − voxel``.
    """
    centres = np.asarray(centres_zyx_vox, dtype=np.float64)
    if centres.ndim < 1 or centres.shape[-1] != 3 or not np.all(np.isfinite(centres)):
        raise ValueError(f"centres_zyx_vox must be finite with shape (..., 3), got {centres.shape}")
    voxel = np.floor(centres + 0.5).astype(np.int64)
    return voxel, centres - voxel


def extract_subtomograms(
    tomogram_zyx: np.ndarray, centres_zyx_vox: np.ndarray, box: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a `box`³ subtomogram around each particle centre.

    Box index ``box // 2`` lands on the voxel nearest the centre, so the particle sits at
    ``box // 2 + shift`` in its box: a particle rendered as ``R · reference`` at that centre is, in the
    crop, ``rotate_volume(reference_boxed, R, shift)`` with ``reference_boxed`` the reference in a
    `box`³ box with the same centre convention.

    Parameters
    ----------
    tomogram_zyx
        `(nz, ny, nx)` tomogram.
    centres_zyx_vox
        `(N, 3)` particle centres in voxels of the tomogram, ``(z, y, x)``.
    box
        Edge of the cubic box in voxels.

    Returns
    -------
    subtomograms : np.ndarray
        `(N, box, box, box)` float32 crops (copies).
    shift_zyx_vox : np.ndarray
        `(N, 3)` float64 sub-voxel offsets of each centre from its box centre, in ``[−0.5, 0.5)``.
    """
    tomogram_zyx = np.asarray(tomogram_zyx)
    if tomogram_zyx.ndim != 3:
        raise ValueError(f"tomogram_zyx must be 3D, got shape {tomogram_zyx.shape}")
    centres = np.asarray(centres_zyx_vox, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 3:
        raise ValueError(f"centres_zyx_vox must have shape (N, 3), got {centres.shape}")
    if isinstance(box, bool) or not isinstance(box, int | np.integer) or box < 1:
        raise ValueError(f"box must be a positive integer, got {box!r}")

    voxels, shifts = nearest_voxel_zyx(centres)
    starts = voxels - box // 2
    shape = np.array(tomogram_zyx.shape)
    outside = np.any((starts < 0) | (starts + box > shape), axis=1)
    if np.any(outside):
        index = int(np.argmax(outside))
        raise ValueError(
            f"the {box}³ box of particle {index} (centre_zyx_vox {centres[index].tolist()}) reaches outside "
            f"the tomogram of shape {tuple(tomogram_zyx.shape)}; {int(outside.sum())} of {len(centres)} "
            "particles are affected"
        )
    subtomograms = np.empty((len(centres), box, box, box), dtype=np.float32)
    for out, (z, y, x) in zip(subtomograms, starts, strict=True):
        out[...] = tomogram_zyx[z : z + box, y : y + box, x : x + box]
    return subtomograms, shifts
