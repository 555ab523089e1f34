"""Correlation of density maps: Pearson correlation, and its best value over circular translations.

Used to compare maps from different simulators and to check ground-truth poses.
"""

from __future__ import annotations

import numpy as np

__all__ = ["best_translation_correlation", "pearson_correlation"]


def pearson_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays of the same shape (over all elements)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    denominator = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denominator) if denominator > 0 else 0.0


def best_translation_correlation(moving: np.ndarray, fixed: np.ndarray) -> tuple[float, np.ndarray]:
    """Largest correlation of two maps over integer translations, and the translation that gives it.

    Both maps are mean-subtracted and zero-padded to twice the larger shape, so translations do not wrap
    one map's content onto the other's.

    Parameters
    ----------
    moving
        `(nz, ny, nx)` map to translate.
    fixed
        `(mz, my, mx)` reference map (any shape).

    Returns
    -------
    correlation : float
        Normalised cross-correlation at the best translation (1 = identical up to shift and scale).
    shift_zyx_vox : np.ndarray
        `(3,)` int: ``fixed[i + shift] ≈ moving[i]`` (in the padded frame).
    """
    if moving.ndim != 3 or fixed.ndim != 3:
        raise ValueError(f"expected two 3D maps, got shapes {moving.shape} and {fixed.shape}")
    size = tuple(2 * max(m, f) for m, f in zip(moving.shape, fixed.shape, strict=True))
    padded = []
    for volume in (moving, fixed):
        out = np.zeros(size)
        out[tuple(slice(0, n) for n in volume.shape)] = volume - volume.mean()
        padded.append(out)
    a, b = padded
    cross = np.fft.irfftn(np.conj(np.fft.rfftn(a)) * np.fft.rfftn(b), s=size, axes=(0, 1, 2))
    peak = np.unravel_index(int(np.argmax(cross)), size)
    norm = np.sqrt(np.sum(a * a) * np.sum(b * b))
    shift = np.array([p if p < n // 2 else p - n for p, n in zip(peak, size, strict=True)])
    return float(cross[peak] / norm), shift
