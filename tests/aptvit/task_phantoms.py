"""Synthetic particles for the task tests: an asymmetric blob phantom, posed and wedge-filtered."""

from __future__ import annotations

import torch

from aptvit.rotation import geodesic_angle_rad, rotate_volumes
from aptvit.tasks.wedge import MissingWedge


def phantom(box: int = 16) -> torch.Tensor:
    """Five Gaussian blobs of different sizes, `(box, box, box)`: no symmetry, smooth enough to resample."""
    offset = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(offset, offset, offset, indexing="ij")
    centres = [(0.0, 0.0, 0.0), (3.5, 0.0, 0.0), (0.0, 2.5, -2.0), (-2.0, -2.5, 2.5), (1.0, 3.5, 3.0)]
    widths, heights = [1.8, 1.3, 1.3, 1.1, 1.1], [1.0, 0.8, 0.6, 0.7, 0.5]
    return sum(
        h * torch.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * w**2))
        for c, w, h in zip(centres, widths, heights, strict=True)
    )


def wedge_filtered(volume: torch.Tensor, wedge: MissingWedge) -> torch.Tensor:
    """Zero the Fourier components of a `(D, D, D)` volume that the tilt range did not measure."""
    return torch.fft.ifftn(torch.fft.fftn(volume) * wedge.weight(volume.shape)).real


def posed_particles(
    reference: torch.Tensor, rotation: torch.Tensor, shift: torch.Tensor, wedge: MissingWedge
) -> torch.Tensor:
    """`(N, D, D, D)` wedge-filtered particles ``R · reference + shift``."""
    moved = rotate_volumes(reference.expand(len(rotation), 1, *reference.shape), rotation, shift)[:, 0]
    return torch.stack([wedge_filtered(volume, wedge) for volume in moved])


def degrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Geodesic angle between `(N, 3, 3)` rotations, degrees."""
    return torch.rad2deg(geodesic_angle_rad(a.double(), b.double()))
