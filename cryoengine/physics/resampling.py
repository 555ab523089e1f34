"""Resampling volumes by a rotation about the box centre (cubic B-splines, zero outside the box).

One volume at a time (:func:`rotate_volume`), or one volume prepared once and added, rotated, many times
(:class:`SplineVolume`, the renderer of the sample slab).

Conventions (centre ``n // 2``, ``particle = R · reference + shift``) are those of
:mod:`cryoengine.physics.rotation`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from cryoengine.physics.rotation import _check_rotations

__all__ = ["SplineVolume", "rotate_volume"]

# Zero padding (voxels) around a volume before its cubic B-spline prefilter. Beyond the box the coefficients
# of the zero-extended volume decay by 2 − √3 ≈ 0.268 per voxel, so those past the padding (< 0.268¹⁶ ≈ 7e-10
# of the edge coefficient) are dropped; scipy's affine_transform pads by 12 for the same reason.
_SPLINE_PAD_VOX = 16
# Largest weight that each of the 4 cubic B-spline taps (floor(p) − 1 … floor(p) + 2) takes over a voxel.
_CUBIC_TAP_WEIGHT_MAX = np.array([1 / 6, 2 / 3, 2 / 3, 1 / 6])
# Points resampled per vectorised batch in SplineVolume.add_rotated: keeps the (batch, 64) arrays in cache.
_SPLINE_BATCH = 4096
# |normal · R[:, 2]| below which a row of the output grid is treated as parallel to a face of the polytope.
_PARALLEL_TOL = 1e-12
# Outward normals of the polytope that bounds a SplineVolume's kept cells, the 26 directions of {−1, 0, 1}³:
# +z, +y, +x, −z, −y, −x first, then the 20 diagonals.
_HULL_NORMALS = np.concatenate(
    [np.eye(3), -np.eye(3), [n for n in itertools.product((-1, 0, 1), repeat=3) if sum(map(abs, n)) > 1]]
)


def rotate_volume(
    volume_zyx: np.ndarray,
    rotation: np.ndarray,
    shift_zyx_vox: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
    order: int = 3,
) -> np.ndarray:
    """Resample ``volume_zyx`` as the particle ``R · volume + shift`` about the box centre.

    Computes ``P(q) = V(Rᵀ (q − c − shift) + c)`` with ``c = shape // 2`` on the same grid, by spline
    interpolation (prefiltered for ``order > 1``). The volume is taken as zero outside its box
    (``mode='grid-constant'``), so density near the box edge fades out instead of being cut or mirrored.

    Parameters
    ----------
    volume_zyx
        `(nz, ny, nx)` real volume; need not be cubic.
    rotation
        `(3, 3)` rotation acting on ``(z, y, x)`` offsets from the centre.
    shift_zyx_vox
        `(3,)` translation after rotation, in voxels.
    order
        Spline order, 0 (nearest) to 5; 3 is cubic.

    Returns
    -------
    np.ndarray
        `(nz, ny, nx)` float32 rotated and shifted volume.
    """
    volume_zyx = np.asarray(volume_zyx)
    if volume_zyx.ndim != 3 or min(volume_zyx.shape) < 1:
        raise ValueError(f"volume_zyx must be a non-empty 3D array, got shape {volume_zyx.shape}")
    if not np.issubdtype(volume_zyx.dtype, np.number) or np.iscomplexobj(volume_zyx):
        raise ValueError(f"volume_zyx must be real-valued, got dtype {volume_zyx.dtype}")
    rotation = _check_rotations(rotation, "rotation")
    if rotation.shape != (3, 3):
        raise ValueError(f"rotation must have shape (3, 3), got {rotation.shape}")
    shift = np.asarray(shift_zyx_vox, dtype=np.float64)
    if shift.shape != (3,) or not np.all(np.isfinite(shift)):
        raise ValueError(f"shift_zyx_vox must be 3 finite numbers, got {shift_zyx_vox!r}")
    if isinstance(order, bool) or order not in range(6):
        raise ValueError(f"order must be an integer from 0 to 5, got {order!r}")

    centre = np.array(volume_zyx.shape) // 2
    inverse = rotation.T
    # affine_transform reads input[matrix @ o + offset] for output index o.
    offset = centre - inverse @ (centre + shift)
    return ndimage.affine_transform(
        volume_zyx.astype(np.float32, copy=False),
        inverse,
        offset=offset,
        order=order,
        mode="grid-constant",
        cval=0.0,
        prefilter=order > 1,
        output=np.float32,
    )


class SplineVolume:
    """A volume prepared once to be added, rotated, into larger arrays many times (particles into a slab).

    The model is :func:`rotate_volume`'s: the cubic B-spline that interpolates the volume extended by zeros
    beyond its box. Its coefficients are computed once here (the prefilter that ``rotate_volume`` repeats on
    every call), and :meth:`add_rotated` only interpolates, at the output voxels where the spline can matter.
    The spline is not confined to the box: its coefficients alternate in sign and decay by 2 − √3 ≈ 0.268 per
    voxel beyond it, so a map that is non-zero at its box edge rings out a few voxels past it. Each output
    value is a weighted sum of 4³ coefficients whose weights never exceed ``w = (1/6, 2/3, 2/3, 1/6)`` per
    axis, so ``Σ w⊗w⊗w · |coefficients|`` bounds it over a whole voxel cell; cells where that bound is below
    ``negligible_fraction × max |volume|`` are skipped, and so is the spline beyond 14 voxels of the box
    (16 voxels of zero padding, less the taps), where it has decayed below 1e-8 of the edge coefficient.

    Memory: 256 bytes per kept cell (its 4³ float32 coefficients side by side), about 15 MB for a 24³ map
    whose edge values are a few percent of its peak.

    Parameters
    ----------
    volume_zyx
        `(nz, ny, nx)` finite real volume, centre at index ``shape // 2``; need not be cubic.
    negligible_fraction
        Output values that are provably below this fraction of ``max |volume_zyx|`` are not computed, in
        ``(0, 1)``. The default 1e-7 is about float32 resolution at the peak.
    """

    def __init__(self, volume_zyx: np.ndarray, negligible_fraction: float = 1e-7) -> None:
        volume = np.asarray(volume_zyx)
        if volume.ndim != 3 or volume.size == 0:
            raise ValueError(f"volume_zyx must be a non-empty 3D array, got shape {volume.shape}")
        if not np.issubdtype(volume.dtype, np.number) or np.iscomplexobj(volume):
            raise ValueError(f"volume_zyx must be real-valued, got dtype {volume.dtype}")
        if not np.all(np.isfinite(volume)):
            raise ValueError("volume_zyx contains non-finite values")
        if not 0 < negligible_fraction < 1:
            raise ValueError(f"negligible_fraction must be in (0, 1), got {negligible_fraction!r}")

        # spline_filter of the zero-padded volume, one axis at a time, padding each axis just before its pass
        # (lines that are all zero stay zero): the same coefficients for about half the work.
        coefficients = volume.astype(np.float64)
        for axis in range(3):
            padding = [(_SPLINE_PAD_VOX, _SPLINE_PAD_VOX) if a == axis else (0, 0) for a in range(3)]
            coefficients = ndimage.spline_filter1d(
                np.pad(coefficients, padding), 3, axis=axis, output=np.float64, mode="grid-constant"
            )
        # bound[i] = Σ_taps w · |coefficients| over the taps i − 1 … i + 2 of the cell floor(p) = i.
        bound = np.abs(coefficients)
        for axis in range(3):
            bound = ndimage.correlate1d(bound, _CUBIC_TAP_WEIGHT_MAX, axis=axis, origin=-1, mode="constant")
        # Cells whose taps stay on the coefficient grid and whose bound is not negligible (none if all zero).
        significant = (bound >= negligible_fraction * float(np.abs(volume).max())) & (bound > 0)
        for axis in range(3):
            significant[(slice(None),) * axis + (slice(0, 1),)] = False
            significant[(slice(None),) * axis + (slice(-2, None),)] = False
        cells = np.argwhere(significant)

        self._grid_shape = coefficients.shape
        self._centre = (np.array(volume.shape) // 2 + _SPLINE_PAD_VOX).astype(np.float64)
        self._cell_index = np.full(coefficients.size, -1, dtype=np.int32)
        self._cell_index[np.ravel_multi_index(tuple(cells.T), coefficients.shape)] = np.arange(len(cells))
        # Taps of cell i: 16 rows of 4 coefficients along x, the rows at z, y = i − 1 … i + 2.
        grid_y, grid_x = coefficients.shape[1:]
        x_rows = np.ascontiguousarray(sliding_window_view(coefficients.astype(np.float32), 4, axis=2))
        first_row = ((cells[:, 0] - 1) * grid_y + cells[:, 1] - 1) * (grid_x - 3) + cells[:, 2] - 1
        row_offsets = (np.arange(4)[:, None] * grid_y + np.arange(4)).ravel() * (grid_x - 3)
        self._taps = np.take(x_rows.reshape(-1, 4), first_row[:, None] + row_offsets, axis=0).reshape(-1, 64)
        # The kept cells lie in the polytope {p : normal · p <= hull_support}, the hull of their unit cubes
        # along the 26 normals; the first and last kept cell of each x row span the same hull.
        rows_z, rows_y = np.nonzero(significant.any(axis=2))
        row_cells = significant[rows_z, rows_y]
        ends_x = (
            np.argmax(row_cells, axis=1),
            significant.shape[2] - 1 - np.argmax(row_cells[:, ::-1], axis=1),
        )
        ends = np.concatenate([np.stack([rows_z, rows_y, x], axis=1) for x in ends_x]).astype(np.float64)
        self._hull_support = (ends @ _HULL_NORMALS.T).max(axis=0, initial=-np.inf) + np.maximum(
            _HULL_NORMALS, 0
        ).sum(axis=1)

    def add_rotated(
        self, out_zyx: np.ndarray, centre_zyx_vox: Sequence[float] | np.ndarray, rotation: np.ndarray
    ) -> None:
        """Add the volume rotated by ``R``, its centre at ``centre_zyx_vox``, into ``out_zyx`` in place.

        ``out[q] += V(Rᵀ (q − centre) + c)`` for every voxel ``q`` of ``out_zyx`` where the spline ``V`` is
        not negligible (class docstring), with ``c = shape // 2`` of the volume; whatever falls outside
        ``out_zyx`` is dropped. So with ``centre = k + shift`` for an integer voxel ``k``, the values added
        around ``k`` are ``rotate_volume(volume, R, shift)`` on a box large enough to hold the particle
        (``particle = R · volume + shift``), up to float32 rounding.

        Parameters
        ----------
        out_zyx
            `(Nz, Ny, Nx)` C-contiguous, writeable float32 array.
        centre_zyx_vox
            `(3,)` position of the volume's centre in ``out_zyx``, in voxels; may lie outside it.
        rotation
            `(3, 3)` rotation acting on ``(z, y, x)`` offsets from the centre.
        """
        if (
            not isinstance(out_zyx, np.ndarray)
            or out_zyx.ndim != 3
            or out_zyx.dtype != np.float32
            or not out_zyx.flags.c_contiguous
            or not out_zyx.flags.writeable
        ):
            raise ValueError("out_zyx must be a writeable, C-contiguous 3D float32 array")
        centre = np.asarray(centre_zyx_vox, dtype=np.float64)
        if centre.shape != (3,) or not np.all(np.isfinite(centre)):
            raise ValueError(f"centre_zyx_vox must be 3 finite numbers, got {centre_zyx_vox!r}")
        rotation = _check_rotations(rotation, "rotation")
        if rotation.shape != (3, 3):
            raise ValueError(f"rotation must have shape (3, 3), got {rotation.shape}")
        if not len(self._taps):
            return

        # Output voxel q reads the coefficient grid at p = Rᵀ q + offset, so q = R (p − offset).
        inverse = rotation.T
        offset = self._centre - inverse @ centre
        upper, lower = self._hull_support[:3], -self._hull_support[3:6]
        corners = np.stack(np.meshgrid(*zip(lower, upper, strict=True), indexing="ij"), axis=-1)
        reach = (corners.reshape(-1, 3) - offset) @ inverse
        first = np.maximum(np.floor(reach.min(axis=0)), 0).astype(np.int64)
        last = np.minimum(np.ceil(reach.max(axis=0)), np.array(out_zyx.shape) - 1).astype(np.int64)
        if np.any(last < first):
            return
        q_z = np.arange(first[0], last[0] + 1)
        q_y = np.arange(first[1], last[1] + 1)
        # One row of output voxels per (q_z, q_y): p = row_origin + q_x · step, kept while in the polytope.
        row_origin = (
            q_z[:, None, None] * inverse[:, 0] + q_y[None, :, None] * inverse[:, 1] + offset
        ).reshape(-1, 3)
        step = inverse[:, 2]
        slope = _HULL_NORMALS @ step
        room = self._hull_support - row_origin @ _HULL_NORMALS.T  # q_x · slope <= room
        rising, falling = slope > _PARALLEL_TOL, slope < -_PARALLEL_TOL
        parallel = ~(rising | falling)
        x_min = np.maximum((room[:, falling] / slope[falling]).max(axis=1, initial=-np.inf), first[2])
        x_max = np.minimum((room[:, rising] / slope[rising]).min(axis=1, initial=np.inf), last[2])
        x_max[np.any(room[:, parallel] < 0, axis=1)] = -np.inf
        x_min = np.ceil(x_min)
        counts = np.maximum(np.floor(x_max) - x_min + 1, 0).astype(np.intp)
        q_x = np.arange(counts.sum(), dtype=np.float64) + np.repeat(
            x_min - (np.cumsum(counts) - counts), counts
        )

        # Rounding at the interval ends moves p by far less than a cell, so floor(p) stays on the coefficient
        # grid, where the cell index is defined (−1 off the kept cells).
        p = np.empty((3, len(q_x)))
        for k in range(3):
            p[k] = np.repeat(row_origin[:, k], counts) + q_x * step[k]
        cell = np.floor(p)
        grid_y, grid_x = self._grid_shape[1:]
        cell_index = self._cell_index[((cell[0] * grid_y + cell[1]) * grid_x + cell[2]).astype(np.intp)]
        kept = np.flatnonzero(cell_index >= 0)
        cell_index = cell_index[kept]
        p -= cell
        fraction = np.take(p, kept, axis=1).astype(np.float32)
        out_y, out_x = out_zyx.shape[1:]
        row_start = ((q_z[:, None] * out_y + q_y[None, :]) * out_x).ravel()
        q_x += np.repeat(row_start, counts)
        target = np.take(q_x, kept).astype(np.intp)

        values = np.empty(len(kept), dtype=np.float32)
        for begin in range(0, len(kept), _SPLINE_BATCH):
            batch = slice(begin, begin + _SPLINE_BATCH)
            values[batch] = _cubic_interpolation(
                np.take(self._taps, cell_index[batch], axis=0), fraction[:, batch]
            )
        out_zyx.reshape(-1)[target] += values


def _cubic_interpolation(taps: np.ndarray, fraction_zyx: np.ndarray) -> np.ndarray:
    """Evaluate cubic B-splines from their 4³ coefficients at fractional positions within their cells.

    Parameters
    ----------
    taps
        `(n, 64)` float32 coefficients at ``floor(p) − 1 … floor(p) + 2`` along z, y, x (x fastest).
    fraction_zyx
        `(3, n)` float32 ``p − floor(p)``, in ``[0, 1)``.

    Returns
    -------
    np.ndarray
        `(n,)` float32 interpolated values.
    """
    f = fraction_zyx
    f2 = f * f
    f3 = f2 * f
    g = 1 - f
    weights = np.stack([g * g * g, 3 * f3 - 6 * f2 + 4, -3 * f3 + 3 * f2 + 3 * f + 1, f3], axis=-1) / 6
    weights_yx = np.einsum("na,nb->nab", weights[1], weights[2]).reshape(-1, 16)
    partial = np.einsum("nak,nk->na", taps.reshape(-1, 4, 16), weights_yx)
    return np.einsum("na,na->n", partial, weights[0])
