"""Structural background: a band-limited random field of protein standing for the crowded cytoplasm.

Beside the crowders (whole particles of other classes), the cytoplasm is full of smaller molecules that no
template describes. They are modelled as a random binary "protein" mask with features of a configured size
(a Gaussian random field low-passed at ``1 / correlation_length_A`` and thresholded at the quantile that
gives the configured volume fraction), filled with protein potential and low-passed again, so the
background is band-limited at ``1 / correlation_length_A`` and holds exactly the configured amount of
protein. Macromolecules occupy 20-30 % of the cytoplasm's volume (Ellis, Trends Biochem. Sci. 26:597,
2001; Zimmerman & Trach, J. Mol. Biol. 222:599, 1991): the background takes the part that the crowders do
not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoengine.physics.density import lowpass_filter
from cryoengine.physics.ice import PROTEIN_POTENTIAL_PER_A2

__all__ = ["draw_structural_background"]


def draw_structural_background(
    shape_zyx: Sequence[int],
    voxel_size_A: float,
    rng: np.random.Generator,
    *,
    volume_fraction: float = 0.1,
    correlation_length_A: float = 40.0,
    excluded_zyx: np.ndarray | None = None,
) -> np.ndarray:
    """Draw a band-limited field of protein potential filling `volume_fraction` of the volume.

    Parameters
    ----------
    shape_zyx
        `(nz, ny, nx)` shape (the slab).
    voxel_size_A
        Voxel size in Å (> 0).
    rng
        Random generator (the tomogram's seed).
    volume_fraction
        Fraction of the whole volume filled with background protein, in [0, 1); default 0.1, the part of
        the 20-30 % macromolecular volume fraction of cytoplasm (module docstring) left by crowders
        at 10-20 %.
    correlation_length_A
        Size of the background's features in Å, ≥ 2 voxels: the field is band-limited at
        ``1 / correlation_length_A`` (raised cosine of :func:`cryoengine.physics.density.lowpass_filter`);
        default 40 Å, the diameter of a 30-50 kDa protein.
    excluded_zyx
        `(nz, ny, nx)` bool mask where no background is put before the final low-pass (the particles'
        supports); None = none.

    Returns
    -------
    np.ndarray
        `(nz, ny, nx)` float32 potential in map units (Å⁻², as :mod:`cryoengine.physics.density`), mean
        ``volume_fraction × PROTEIN_POTENTIAL_PER_A2``.
    """
    shape = tuple(int(n) for n in shape_zyx)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape_zyx must be three positive integers, got {shape_zyx!r}")
    if not voxel_size_A > 0:
        raise ValueError(f"voxel_size_A must be > 0, got {voxel_size_A}")
    if not 0 <= volume_fraction < 1:
        raise ValueError(f"volume_fraction must be in [0, 1), got {volume_fraction}")
    if not correlation_length_A >= 2 * voxel_size_A:
        raise ValueError(
            f"correlation_length_A must be >= 2 voxels ({2 * voxel_size_A:g} Å), got {correlation_length_A}"
        )
    free = np.ones(shape, dtype=bool) if excluded_zyx is None else ~np.asarray(excluded_zyx, dtype=bool)
    if free.shape != shape:
        raise ValueError(f"excluded_zyx must have shape {shape}, got {free.shape}")
    n_protein = int(round(volume_fraction * free.size))
    if n_protein > np.count_nonzero(free):
        raise ValueError(
            f"volume_fraction {volume_fraction} needs {n_protein} voxels, "
            f"only {np.count_nonzero(free)} are free"
        )
    band = lowpass_filter(shape, voxel_size_A, correlation_length_A)  # type: ignore[arg-type]
    field = np.fft.ifftn(np.fft.fftn(rng.standard_normal(shape)) * band).real
    candidates = np.flatnonzero(free)
    order = np.argsort(field.ravel()[candidates], kind="stable")
    mask = np.zeros(field.size)
    mask[candidates[order[candidates.size - n_protein :]]] = 1.0
    background = np.fft.ifftn(np.fft.fftn(mask.reshape(shape)) * band).real * PROTEIN_POTENTIAL_PER_A2
    return background.astype(np.float32)
