"""Conformational variety: smooth random deformations of a density, and per-particle B-factor blur.

No two particles of a class are then the exact template. A deformation is a band-limited random
displacement field ``u`` (a sum of the Fourier modes below a cutoff frequency: low-frequency,
normal-mode-like collective motion rather than local noise) scaled to a configured mass-weighted RMS
amplitude in Å, applied so that mass is conserved. The B-factor multiplies the map's spectrum by
``exp(−B k²/4)``, the Debye-Waller envelope of a Gaussian blur of variance ``B / (8π²)`` per axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
from scipy import ndimage

__all__ = [
    "apply_b_factor",
    "deform_density",
    "draw_b_factor",
    "draw_displacement_field",
]


def _rfftn_frequency_magnitude(shape_zyx: tuple[int, int, int], voxel_size_A: float) -> np.ndarray:
    """`(nz, ny, nx // 2 + 1)` spatial-frequency magnitude (1/Å) of the ``rfftn`` grid."""
    nz, ny, nx = shape_zyx
    kz = np.fft.fftfreq(nz, d=voxel_size_A)[:, None, None]
    ky = np.fft.fftfreq(ny, d=voxel_size_A)[None, :, None]
    kx = np.fft.rfftfreq(nx, d=voxel_size_A)[None, None, :]
    return np.sqrt(kz**2 + ky**2 + kx**2)


def _check_shape(shape_zyx: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in shape_zyx)
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"shape_zyx must be three integers >= 2, got {shape_zyx!r}")
    return shape  # type: ignore[return-value]


def draw_displacement_field(
    shape_zyx: Sequence[int],
    voxel_size_A: float,
    rng: np.random.Generator,
    *,
    amplitude_A: float = 3.0,
    min_wavelength_A: float = 150.0,
    weight_zyx: np.ndarray | None = None,
) -> np.ndarray:
    """Draw a smooth random displacement field: Gaussian Fourier modes of wavelength ≥ `min_wavelength_A`.

    Each of the three components is white Gaussian noise whose spectrum is cut to ``0 < |k| ≤
    1 / min_wavelength_A`` (no uniform translation, no finer detail); the field is then scaled so that its
    RMS length, weighted by `weight_zyx` (the density: the RMS displacement of the mass), is
    `amplitude_A`. Defaults (chosen, stated): 3 Å RMS, the order of the RMS deviation between
    conformations of a complex along its few lowest normal modes (Tama & Sanejouand, Protein Eng.
    14:1, 2001), with wavelengths ≥ 150 Å, i.e. domain-scale motion of a 100-300 Å complex.

    Parameters
    ----------
    shape_zyx
        `(nz, ny, nx)` shape of the map to deform.
    voxel_size_A
        Voxel size in Å (> 0).
    rng
        Random generator (the particle's stream).
    amplitude_A
        Weighted RMS displacement in Å (≥ 0).
    min_wavelength_A
        Shortest wavelength of the modes in Å; at least one mode (the box's fundamental) must pass,
        i.e. ``min_wavelength_A <= max(shape) · voxel_size_A``.
    weight_zyx
        `(nz, ny, nx)` non-negative weights of the RMS (None = uniform over the box).

    Returns
    -------
    np.ndarray
        `(3, nz, ny, nx)` float64 displacement ``(u_z, u_y, u_x)`` in Å at each voxel.
    """
    shape = _check_shape(shape_zyx)
    if not voxel_size_A > 0:
        raise ValueError(f"voxel_size_A must be > 0, got {voxel_size_A}")
    if not amplitude_A >= 0:
        raise ValueError(f"amplitude_A must be >= 0, got {amplitude_A}")
    if not 0 < min_wavelength_A <= max(shape) * voxel_size_A:
        raise ValueError(
            f"min_wavelength_A must be in (0, {max(shape) * voxel_size_A:g}] Å (the box), "
            f"got {min_wavelength_A}"
        )
    weight = np.ones(shape) if weight_zyx is None else np.asarray(weight_zyx, dtype=np.float64)
    if weight.shape != shape or np.any(weight < 0) or not weight.sum() > 0:
        raise ValueError(f"weight_zyx must be non-negative of shape {shape} with a positive sum")
    k = _rfftn_frequency_magnitude(shape, voxel_size_A)
    band = (k > 0) & (k <= 1.0 / min_wavelength_A * (1 + 1e-9))
    field = np.stack(
        [scipy.fft.irfftn(scipy.fft.rfftn(rng.standard_normal(shape)) * band, s=shape) for _ in range(3)]
    )
    rms = np.sqrt(np.sum(weight * np.sum(field**2, axis=0)) / weight.sum())
    return field * (amplitude_A / rms) if rms > 0 else field


def deform_density(
    density_zyx: np.ndarray, displacement_zyx_A: np.ndarray, voxel_size_A: float
) -> np.ndarray:
    """Move a density along a displacement field, conserving its mass.

    With the field ``u`` read at the output point ``y``, the content at ``y − u(y)`` moves to ``y``:
    ``ρ'(y) = ρ(y − u(y)) · det(I − ∇u(y))``. The Jacobian makes the map of ``y ↦ y − u(y)`` conserve
    the integral (exactly in the continuum while it is one-to-one, i.e. ``|∇u| < 1``; to second order in
    ``∇u`` on the grid). ``∇u`` is taken spectrally (the field is periodic and band-limited); cubic
    B-spline interpolation, zero outside the box.

    Parameters
    ----------
    density_zyx
        `(nz, ny, nx)` map.
    displacement_zyx_A
        `(3, nz, ny, nx)` displacement in Å (:func:`draw_displacement_field`).
    voxel_size_A
        Voxel size in Å (> 0).

    Returns
    -------
    np.ndarray
        `(nz, ny, nx)` float32 deformed map.
    """
    density = np.asarray(density_zyx, dtype=np.float64)
    u = np.asarray(displacement_zyx_A, dtype=np.float64)
    if density.ndim != 3 or u.shape != (3, *density.shape):
        raise ValueError(f"need a 3D map and a (3, *map.shape) field, got {density.shape}, {u.shape}")
    if not voxel_size_A > 0:
        raise ValueError(f"voxel_size_A must be > 0, got {voxel_size_A}")
    u_vox = u / voxel_size_A
    gradient = _spectral_gradient(u_vox)  # (3, 3, nz, ny, nx): ∂u_i/∂x_j in voxel units
    jacobian = np.eye(3)[:, :, None, None, None] - gradient
    determinant = np.linalg.det(np.moveaxis(jacobian, (0, 1), (-2, -1)))
    grid = np.indices(density.shape, dtype=np.float64)
    moved = ndimage.map_coordinates(density, grid - u_vox, order=3, mode="constant", cval=0.0)
    return (moved * determinant).astype(np.float32)


def _spectral_gradient(u_vox: np.ndarray) -> np.ndarray:
    """`(3, 3, nz, ny, nx)` derivatives ``∂u_i/∂x_j`` of a periodic, band-limited `(3, nz, ny, nx)` field."""
    shape = u_vox.shape[1:]
    spectra = scipy.fft.rfftn(u_vox, axes=(1, 2, 3))
    k = [np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), np.fft.rfftfreq(shape[2])]
    for axis, n in enumerate(shape):  # a real field's derivative has no Nyquist term: drop it
        if n % 2 == 0:
            k[axis] = np.where(np.abs(k[axis]) == 0.5, 0.0, k[axis])
    grids = np.meshgrid(*k, indexing="ij", sparse=True)
    return np.stack(
        [scipy.fft.irfftn(2j * np.pi * g * spectra, s=shape, axes=(1, 2, 3)) for g in grids], axis=1
    )


def draw_b_factor(rng: np.random.Generator, min_A2: float = 0.0, max_A2: float = 1000.0) -> float:
    """Draw a particle's B-factor uniformly in ``[min_A2, max_A2]`` (Å²).

    Default 0-1000 Å² (chosen, stated): at B = 1000 Å² the envelope ``exp(−B k²/4)`` halves the amplitude
    at 21 Å (``k = √(4 ln 2 / B)``), so particles range from the template's resolution to about 20 Å, the
    range over which in-situ subtomogram averages of one complex commonly vary; no single source.

    Parameters
    ----------
    rng
        Random generator.
    min_A2, max_A2
        Range of B in Å², ``0 <= min <= max``.

    Returns
    -------
    float
        B in Å².
    """
    if not 0 <= min_A2 <= max_A2:
        raise ValueError(f"need 0 <= min_A2 <= max_A2, got {min_A2}, {max_A2}")
    return float(rng.uniform(min_A2, max_A2))


def apply_b_factor(density_zyx: np.ndarray, voxel_size_A: float, b_factor_A2: float) -> np.ndarray:
    """Blur a map by a B-factor: its spectrum times ``exp(−B k²/4)`` (``k`` in cycles/Å).

    Parameters
    ----------
    density_zyx
        `(nz, ny, nx)` map.
    voxel_size_A
        Voxel size in Å (> 0).
    b_factor_A2
        B in Å² (≥ 0); 0 returns the map unchanged (as float32).

    Returns
    -------
    np.ndarray
        `(nz, ny, nx)` float32 blurred map, same integral.
    """
    density = np.asarray(density_zyx, dtype=np.float64)
    if density.ndim != 3:
        raise ValueError(f"density_zyx must be 3D, got shape {density.shape}")
    if not voxel_size_A > 0:
        raise ValueError(f"voxel_size_A must be > 0, got {voxel_size_A}")
    if not b_factor_A2 >= 0:
        raise ValueError(f"b_factor_A2 must be >= 0, got {b_factor_A2}")
    k = _rfftn_frequency_magnitude(density.shape, voxel_size_A)  # type: ignore[arg-type]
    envelope = np.exp(-b_factor_A2 * k**2 / 4.0)
    return scipy.fft.irfftn(scipy.fft.rfftn(density) * envelope, s=density.shape).astype(np.float32)
