"""Noise: a class-blind level, set like a dose, and each particle's SNR measured on its own signal.

Definitions
-----------
Unit noise
    K independent tilt series of unit-variance detector noise per tomogram, each reconstructed like the
    signal (reconstruction is linear, so each carries the signal's missing wedge and filtering). The
    subtomograms cut from them, ``noise[i, k]``, are K independent noise realisations at particle ``i``.
Noise scale
    ``α₁ = √(var_ref / var_unit)``: the noise amplitude at which a *reference particle* would have SNR 1.
    ``var_ref`` is the box variance of a fixed reference (a seeded protein-density phantom of configured
    diameter, the same for every class, imaged alone with the tomogram's own CTF, dose and reconstruction);
    ``var_unit`` is the variance of the unit-noise reconstruction over the whole tomogram. The particle at
    nominal SNR ``s`` is ``clean + α₁ / √s · noise[k]``, for any ``s > 0`` and any ``k``.
Measured SNR
    ``snr[i, l] = var(own_i) / var(noisy[i, l] − clean[i])`` over the box, where ``own_i`` is particle
    ``i``'s *own* isolated signal (imaged alone, without its neighbours), not the whole clean box.

Why this definition (design)
----------------------------
In real data the noise level is set by the dose and the detector, not by the particle: every particle of a
tomogram sees the same noise. A per-particle calibration (α chosen so that the *box*, neighbours
included, reaches the SNR) makes the noise amplitude a function of the class, because the box energy
depends on the class's size and on how its neighbours crowd it (issue 8, defect 9): the noise statistics
alone then classify. Calibrating from the target class's own isolated signal per tomogram is no better:
each tomogram holds one target class, so its α still encodes that class's mass. Only a reference that is
the same for every class is blind to the class, so α depends on the tomogram (its CTF draw, its
unit-noise variance) and on nothing class-specific. The price: a small particle is genuinely fainter than
the nominal SNR says and a large one brighter, exactly as in a real dataset at one dose; the measured SNR
of each particle's own signal is stored so that users can select or weight by it.

``noisy[:, l]`` uses realisation ``l mod K``: consecutive levels carry independent noise. Runs through the
array-module seam (CuPy when available, else NumPy).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from cryoengine.physics.array_module import Device, get_array_module, to_numpy

__all__ = ["mix_noise_at_snr_levels", "reference_noise_scale"]


def reference_noise_scale(reference_signal_variance: float, unit_noise_variance: float) -> float:
    """Noise scale ``α₁ = √(var_ref / var_unit)`` at which the reference particle has SNR 1.

    Parameters
    ----------
    reference_signal_variance
        Box variance of the reference particle's isolated, imaged signal (> 0).
    unit_noise_variance
        Variance of the unit-noise reconstruction (> 0).

    Returns
    -------
    float
        α₁; the noise at nominal SNR ``s`` is ``α₁ / √s · noise``.
    """
    for name, value in (
        ("reference_signal_variance", reference_signal_variance),
        ("unit_noise_variance", unit_noise_variance),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive and finite, got {value}")
    return math.sqrt(reference_signal_variance / unit_noise_variance)


def mix_noise_at_snr_levels(
    clean_subtomograms: np.ndarray,
    noise_subtomograms: np.ndarray,
    noise_scale: np.ndarray,
    snr_levels: np.ndarray,
    signal_variance: np.ndarray,
    *,
    device: Device = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of each subtomogram at every nominal SNR level, with each particle's own SNR measured.

    ``noisy[i, l] = clean[i] + noise_scale[i] / √snr_levels[l] · noise[i, l mod K]``; the measured SNR is
    ``signal_variance[i] / var(noisy[i, l] − clean[i])`` over the box, in float32 arithmetic.

    Parameters
    ----------
    clean_subtomograms
        `(N, D, D, D)` noise-free subtomograms.
    noise_subtomograms
        `(N, K, D, D, D)` unit-noise reconstructions at the same places, K ≥ 1 independent realisations.
    noise_scale
        `(N,)` α₁ of each particle's tomogram (:func:`reference_noise_scale`), ≥ 0.
    snr_levels
        `(L,)` nominal SNRs, each > 0; ``inf`` reproduces the clean volume (measured SNR ``inf``).
    signal_variance
        `(N,)` box variance of each particle's own isolated signal, > 0.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``; results come back as NumPy arrays either way.

    Returns
    -------
    noisy : np.ndarray
        `(N, L, D, D, D)` float32 noisy subtomograms.
    measured_snr : np.ndarray
        `(N, L)` float64 measured SNR of each particle's own signal.
    """
    xp = get_array_module(device)
    clean, noise, scale, levels, variance = _checked_inputs(
        xp, clean_subtomograms, noise_subtomograms, noise_scale, snr_levels, signal_variance
    )
    n_particles, n_realisations = noise.shape[:2]
    n_levels = levels.shape[0]
    spatial = (1,) * (clean.ndim - 1)
    axes = tuple(range(1, clean.ndim))
    noisy = xp.empty((n_particles, n_levels, *clean.shape[1:]), dtype=xp.float32)
    measured = xp.empty((n_particles, n_levels), dtype=xp.float64)
    for level in range(n_levels):
        amplitude = (scale / xp.sqrt(levels[level])).astype(xp.float32).reshape((n_particles, *spatial))
        noisy[:, level] = clean + amplitude * noise[:, level % n_realisations]
        added = (noisy[:, level] - clean).var(axis=axes).astype(xp.float64)
        positive = added > 0
        measured[:, level] = xp.where(positive, variance / xp.where(positive, added, 1.0), xp.inf)
    return to_numpy(noisy), to_numpy(measured)


def _checked_inputs(
    xp: ModuleType, clean: Any, noise: Any, scale: Any, levels: Any, variance: Any
) -> tuple[Any, Any, Any, Any, Any]:
    """Validate shapes and values; return float32 volumes and float64 vectors in module `xp`."""
    clean_shape = np.shape(clean)
    if len(clean_shape) < 2 or clean_shape[0] < 1:
        raise ValueError(f"clean_subtomograms must be (N, D, D, D) with N >= 1, got shape {clean_shape}")
    noise_shape = np.shape(noise)
    if len(noise_shape) != len(clean_shape) + 1 or noise_shape[0] != clean_shape[0] or noise_shape[1] < 1:
        raise ValueError(
            f"noise_subtomograms must be (N, K, ...) matching clean_subtomograms {clean_shape}, "
            f"got {noise_shape}"
        )
    if noise_shape[2:] != clean_shape[1:]:
        raise ValueError(
            f"noise_subtomograms boxes {noise_shape[2:]} must match clean_subtomograms {clean_shape[1:]}"
        )
    levels_np = np.asarray(to_numpy(levels), dtype=np.float64)
    if levels_np.ndim != 1 or levels_np.size == 0 or np.any(np.isnan(levels_np)) or np.any(levels_np <= 0):
        raise ValueError(f"snr_levels must be a non-empty 1D array of values > 0, got {levels_np.tolist()}")
    n = clean_shape[0]
    scale_np = np.asarray(to_numpy(scale), dtype=np.float64)
    if scale_np.shape != (n,) or not np.all(np.isfinite(scale_np)) or np.any(scale_np < 0):
        raise ValueError(f"noise_scale must be ({n},) finite values >= 0, got shape {scale_np.shape}")
    variance_np = np.asarray(to_numpy(variance), dtype=np.float64)
    if variance_np.shape != (n,) or not np.all(np.isfinite(variance_np)) or np.any(variance_np <= 0):
        flat: list[int] = np.flatnonzero(~(variance_np > 0)).tolist() if variance_np.shape == (n,) else []
        raise ValueError(
            f"signal_variance must be ({n},) finite values > 0, got shape {variance_np.shape}"
            + (f"; not positive for particles {flat[:10]}" if flat else "")
        )
    clean_xp = xp.asarray(clean, dtype=xp.float32)
    noise_xp = xp.asarray(noise, dtype=xp.float32)
    if not bool(xp.all(xp.isfinite(clean_xp))) or not bool(xp.all(xp.isfinite(noise_xp))):
        raise ValueError("clean_subtomograms and noise_subtomograms must be finite")
    return clean_xp, noise_xp, xp.asarray(scale_np), xp.asarray(levels_np), xp.asarray(variance_np)
