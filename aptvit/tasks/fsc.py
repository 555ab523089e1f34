"""Fourier shell correlation of two maps, its threshold crossing, and the resolution in Å it implies.

DESIGN §8: 0.143 between independent half-set averages, 0.5 against the ground-truth map; resolution in
Å = ``voxel_size_A`` / spatial frequency (cycles per voxel) at the crossing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from aptvit.tasks.wedge import fourier_frequencies_zyx

__all__ = ["FscCurve", "fourier_shell_correlation"]


@dataclass(frozen=True)
class FscCurve:
    """FSC per Fourier shell, from the origin to Nyquist.

    Attributes
    ----------
    frequency
        `(S,)` shell frequencies ``s / D`` in cycles per voxel, ``s = 0 … D // 2``.
    fsc
        `(S,)` correlation of the two maps in each shell.
    n_voxels
        `(S,)` Fourier voxels in each shell (the full ``fftn`` grid); an FSC of independent noise has
        standard deviation ``1 / √n_voxels``.
    """

    frequency: np.ndarray
    fsc: np.ndarray
    n_voxels: np.ndarray

    def crossing_frequency(self, threshold: float) -> float:
        """First frequency (cycles/voxel) where the FSC falls below ``threshold``, linear between shells.

        The search starts after the origin shell; a curve that never falls below returns Nyquist (the
        last shell frequency), the best the sampling can show.
        """
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        below = np.flatnonzero(self.fsc[1:] < threshold)
        if below.size == 0:
            return float(self.frequency[-1])
        shell = int(below[0]) + 1
        f0, f1 = self.frequency[shell - 1], self.frequency[shell]
        c0, c1 = self.fsc[shell - 1], self.fsc[shell]
        return float(f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0))

    def resolution_A(self, voxel_size_A: float, threshold: float = 0.143) -> float:
        """Resolution in Å, ``voxel_size_A / frequency`` at the ``threshold`` crossing."""
        if not voxel_size_A > 0:
            raise ValueError(f"voxel_size_A must be > 0, got {voxel_size_A}")
        return float(voxel_size_A / self.crossing_frequency(threshold))


def fourier_shell_correlation(map_a: Tensor | np.ndarray, map_b: Tensor | np.ndarray) -> FscCurve:
    """FSC of two cubic maps in shells of width ``1 / D`` (cycles per voxel), up to Nyquist.

    ``FSC(s) = Re Σ A·B̄ / √(Σ|A|² Σ|B|²)`` over the Fourier voxels with ``round(|k|·D) = s``.

    Parameters
    ----------
    map_a, map_b
        `(D, D, D)` real maps on the same grid.

    Returns
    -------
    FscCurve
        ``D // 2 + 1`` shells.
    """
    a = torch.as_tensor(map_a, dtype=torch.float64)
    b = torch.as_tensor(map_b, dtype=torch.float64, device=a.device)
    if a.ndim != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"maps must be cubic (D, D, D), got {tuple(a.shape)}")
    if b.shape != a.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    box = a.shape[0]
    spectrum_a, spectrum_b = torch.fft.fftn(a), torch.fft.fftn(b)
    radius = fourier_frequencies_zyx((box, box, box), dtype=torch.float64, device=a.device).norm(dim=-1)
    shell = torch.round(radius * box).long().flatten()
    n_shells = box // 2 + 1
    keep = shell < n_shells
    shell = shell[keep]

    def shell_sum(values: Tensor) -> Tensor:
        return torch.zeros(n_shells, dtype=torch.float64, device=a.device).index_add_(
            0, shell, values.flatten()[keep]
        )

    cross = shell_sum((spectrum_a * spectrum_b.conj()).real)
    power = shell_sum(spectrum_a.abs().square()) * shell_sum(spectrum_b.abs().square())
    fsc = torch.where(power > 0, cross / power.clamp_min(1e-300).sqrt(), torch.zeros_like(cross))
    counts = torch.bincount(shell, minlength=n_shells)
    return FscCurve(
        frequency=np.arange(n_shells) / box,
        fsc=fsc.cpu().numpy(),
        n_voxels=counts.cpu().numpy(),
    )
