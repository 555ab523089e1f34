"""Tomographic reconstruction of a tilt series: weighted back-projection (default) and SIRT.

Both are linear in the tilt series, so a signal and a noise reconstruction combine to any SNR afterwards.

WBP discretises the inverse Radon transform ``f(x) = ∫ (p_θ ∗ h)(u(x, θ)) dθ``: each tilt is convolved
along detector ``x`` with the band-limited ramp ``h`` (Ram-Lak in its exact spatial form, Kak & Slaney
eq. 3.61, on a zero-padded line so that the zero frequency is right), optionally rolled off by a cosine
taper towards Nyquist, multiplied by the angular interval it stands for (radians), and back-projected.
With unit voxels this gives the phantom's own intensity when the tilts cover 180°; inside a limited
range the missing wedge is simply absent. SIRT iterates ``x ← x + C·Aᵀ·R·(b − A·x)`` from zero with the
inverse row and column sums ``R`` and ``C`` and no positivity constraint (which would break linearity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.fft

from cryoengine.physics.projector import (
    Backend,
    TiltGeometry,
    backproject_tilts_to_volume,
    project_volume_to_tilts,
)

__all__ = [
    "angular_weights_rad",
    "ramp_filter_rfft",
    "reconstruct_tilts_to_volume",
    "sirt_reconstruct_tilts_to_volume",
    "weighted_backproject_tilts_to_volume",
]


def angular_weights_rad(tilt_angles_deg: Sequence[float]) -> np.ndarray:
    """Angular interval that each tilt stands for, in radians (the quadrature weight of WBP).

    A tilt gets half the distance to its two neighbours in sorted order; the two end tilts get the whole
    distance to their single neighbour, so uniform steps give every tilt the step. A lone tilt gets π.

    Parameters
    ----------
    tilt_angles_deg
        `(n_tilts,)` tilt angles in degrees, any order.

    Returns
    -------
    np.ndarray
        `(n_tilts,)` float64 weights in the input order.
    """
    angles = np.deg2rad(np.asarray(tilt_angles_deg, dtype=np.float64))
    if angles.ndim != 1 or angles.size == 0:
        raise ValueError(f"tilt_angles_deg must be a non-empty 1D sequence, got {tilt_angles_deg!r}")
    if angles.size == 1:
        return np.array([np.pi])
    order = np.argsort(angles, kind="stable")
    gaps = np.diff(angles[order])
    sorted_weights = np.concatenate([gaps[:1], 0.5 * (gaps[:-1] + gaps[1:]), gaps[-1:]])
    weights = np.empty_like(sorted_weights)
    weights[order] = sorted_weights
    return weights


def ramp_filter_rfft(n_detector: int, rolloff_start_nyquist: float = 0.8) -> tuple[int, np.ndarray]:
    """Frequency response of the apodised ramp filter on a zero-padded detector line.

    Parameters
    ----------
    n_detector
        Number of detector pixels along x.
    rolloff_start_nyquist
        Fraction of Nyquist (0.5 cycles/pixel) where a cosine taper of the ramp starts; the response
        reaches zero at Nyquist. 1.0 keeps the plain Ram-Lak filter.

    Returns
    -------
    n_padded : int
        Length of the zero-padded line (≥ 2·`n_detector`) the response belongs to.
    response : np.ndarray
        `(n_padded // 2 + 1,)` float64 response on the ``rfft`` grid of that line.
    """
    if n_detector < 1:
        raise ValueError(f"n_detector must be >= 1, got {n_detector}")
    if not 0.0 < rolloff_start_nyquist <= 1.0:
        raise ValueError(f"rolloff_start_nyquist must be in (0, 1], got {rolloff_start_nyquist}")
    n_padded = scipy.fft.next_fast_len(2 * n_detector, real=True)
    distance = np.minimum(np.arange(n_padded), n_padded - np.arange(n_padded))
    kernel = np.zeros(n_padded)
    kernel[0] = 0.25
    odd = distance % 2 == 1
    kernel[odd] = -1.0 / (np.pi * distance[odd]) ** 2
    response = np.fft.rfft(kernel).real
    freq = np.fft.rfftfreq(n_padded)
    start = 0.5 * rolloff_start_nyquist
    if start < 0.5:
        ramp_down = np.clip((freq - start) / (0.5 - start), 0.0, 1.0)
        response *= np.cos(0.5 * np.pi * ramp_down) ** 2
    return n_padded, response


def weighted_backproject_tilts_to_volume(
    tilts: np.ndarray,
    geometry: TiltGeometry,
    *,
    rolloff_start_nyquist: float = 0.8,
    backend: Backend = "auto",
) -> np.ndarray:
    """Weighted (filtered) back-projection of a tilt series.

    Parameters
    ----------
    tilts
        `(n_tilts, ny, nx)` tilt series in ``geometry.tilt_angles_deg`` order.
    geometry
        Tilt geometry.
    rolloff_start_nyquist
        Where the cosine taper of the ramp starts, as a fraction of Nyquist (see :func:`ramp_filter_rfft`).
    backend
        Projector backend: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    np.ndarray
        `(nz, ny, nx)` float32 reconstruction on the intensity scale of the projected volume.
    """
    tilts = np.asarray(tilts)
    if tilts.shape != geometry.tilts_shape:
        raise ValueError(f"tilts must have shape {geometry.tilts_shape} for this geometry, got {tilts.shape}")
    nx = tilts.shape[-1]
    n_padded, response = ramp_filter_rfft(nx, rolloff_start_nyquist)
    weights = angular_weights_rad(geometry.tilt_angles_deg)
    spectrum = scipy.fft.rfft(tilts.astype(np.float32, copy=False), n=n_padded, axis=-1)
    spectrum *= (response[None, None, :] * weights[:, None, None]).astype(np.float32)
    filtered = scipy.fft.irfft(spectrum, n=n_padded, axis=-1)[..., :nx]
    return backproject_tilts_to_volume(filtered, geometry, backend)


def sirt_reconstruct_tilts_to_volume(
    tilts: np.ndarray, geometry: TiltGeometry, *, n_iterations: int = 30, backend: Backend = "auto"
) -> np.ndarray:
    """SIRT reconstruction from zero, without constraints (so it stays linear in the tilts).

    Parameters
    ----------
    tilts
        `(n_tilts, ny, nx)` tilt series in ``geometry.tilt_angles_deg`` order.
    geometry
        Tilt geometry.
    n_iterations
        Number of SIRT iterations (≥ 1); each costs one projection and one back-projection.
    backend
        Projector backend: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    np.ndarray
        `(nz, ny, nx)` float32 reconstruction.
    """
    if n_iterations < 1:
        raise ValueError(f"n_iterations must be >= 1, got {n_iterations}")
    measured = np.asarray(tilts, dtype=np.float32)
    if measured.shape != geometry.tilts_shape:
        raise ValueError(
            f"tilts must have shape {geometry.tilts_shape} for this geometry, got {measured.shape}"
        )
    row_sums = project_volume_to_tilts(np.ones(geometry.volume_shape_zyx, np.float32), geometry, backend)
    column_sums = backproject_tilts_to_volume(np.ones(geometry.tilts_shape, np.float32), geometry, backend)
    inverse_rows = np.where(row_sums > 1e-6, 1.0 / np.maximum(row_sums, 1e-6), 0.0).astype(np.float32)
    inverse_columns = np.where(column_sums > 1e-6, 1.0 / np.maximum(column_sums, 1e-6), 0.0).astype(
        np.float32
    )
    volume = np.zeros(geometry.volume_shape_zyx, np.float32)
    for _ in range(n_iterations):
        residual = (measured - project_volume_to_tilts(volume, geometry, backend)) * inverse_rows
        volume += inverse_columns * backproject_tilts_to_volume(residual, geometry, backend)
    return volume


def reconstruct_tilts_to_volume(
    tilts: np.ndarray,
    geometry: TiltGeometry,
    method: Literal["wbp", "sirt"] = "wbp",
    *,
    rolloff_start_nyquist: float = 0.8,
    n_iterations: int = 30,
    backend: Backend = "auto",
) -> np.ndarray:
    """Reconstruct a tilt series with WBP (default) or SIRT.

    Parameters
    ----------
    tilts
        `(n_tilts, ny, nx)` tilt series in ``geometry.tilt_angles_deg`` order.
    geometry
        Tilt geometry.
    method
        ``"wbp"`` or ``"sirt"``.
    rolloff_start_nyquist
        WBP only: start of the ramp's cosine taper, fraction of Nyquist.
    n_iterations
        SIRT only: number of iterations.
    backend
        Projector backend: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    np.ndarray
        `(nz, ny, nx)` float32 reconstruction.
    """
    if method == "wbp":
        return weighted_backproject_tilts_to_volume(
            tilts, geometry, rolloff_start_nyquist=rolloff_start_nyquist, backend=backend
        )
    if method == "sirt":
        return sirt_reconstruct_tilts_to_volume(tilts, geometry, n_iterations=n_iterations, backend=backend)
    raise ValueError(f"method must be 'wbp' or 'sirt', got {method!r}")
