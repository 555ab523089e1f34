"""Amorphous ice: its scattering potential, protein contrast against it, and the slab's inelastic loss.

Units. Potentials are in the units of :mod:`cryoengine.physics.density`: forward scattering amplitude ``f(0)``
per Å³ (Å⁻²); a map of protein at 1.35 g/cm³ holds :data:`PROTEIN_POTENTIAL_PER_A2` per voxel volume.
Multiply by :data:`VOLT_A2_PER_POTENTIAL` (``h² / (2π m₀ e)`` = 47.88 V·Å²) for a mean inner potential in
volts: protein 6.45 V, ice at 0.93 g/cm³ 4.53 V (isolated-atom scattering factors; the measured mean
inner potential of liquid water is 4.48 ± 0.19 V, Yesibolati et al., Phys. Rev. Lett. 124:065502, 2020).

Contrast against ice. A particle does not add its potential to vacuum: it *replaces* ice within its volume.
With each dalton of protein displacing ``1 / 0.813`` Å³ of ice (protein density 1.35 g/cm³), a map ``ρ``
of protein potential becomes the excess potential ``ρ · (1 − V_ice / V_protein)``. The ice itself is not
rendered: real ice extends beyond the field of view, so its projection is a structureless offset
``V_ice · t / cos θ`` per tilt, whereas a rendered slab in the finite simulated volume would fall off at
the tilted x edges and print artefacts. Its effects that matter are the lower contrast above and the
inelastic loss of the zero-loss beam along the tilted path (:func:`zero_loss_fraction`).
"""

from __future__ import annotations

import numpy as np
import scipy.constants as const

from cryoengine.physics.density import PROTEIN_DA_PER_A3, SCATTERING_PER_KDA_A, scattering_weights

__all__ = [
    "ICE_DENSITY_G_PER_CM3",
    "INELASTIC_MEAN_FREE_PATH_300KV_A",
    "PROTEIN_POTENTIAL_PER_A2",
    "VOLT_A2_PER_POTENTIAL",
    "apply_thickness_to_tilts",
    "contrast_against_ice",
    "ice_potential_per_A2",
    "zero_loss_fraction",
]

#: Density of vitreous (amorphous) ice, g/cm³: 0.93, inside the 0.91-0.94 g/cm³ reported for vitreous
#: and low-density amorphous ice (Dubochet et al., Q. Rev. Biophys. 21:129, 1988).
ICE_DENSITY_G_PER_CM3 = 0.93
#: Inelastic mean free path of electrons in vitreous ice at 300 kV with an energy filter, Å: 395 nm
#: (measured on a Titan Krios, Rice et al., J. Struct. Biol. 204:38, 2018; Leginon's ice-thickness docs).
INELASTIC_MEAN_FREE_PATH_300KV_A = 3950.0
#: Potential of protein at 1.35 g/cm³ in map units (Å⁻²): 165.7 Å/kDa × 0.813 Da/Å³.
PROTEIN_POTENTIAL_PER_A2 = SCATTERING_PER_KDA_A * PROTEIN_DA_PER_A3 / 1000.0
#: ``h² / (2π m₀ e)`` in V·Å²: potential in map units (Å⁻²) × this = mean inner potential in volts.
VOLT_A2_PER_POTENTIAL = const.h**2 / (2.0 * np.pi * const.m_e * const.e) * 1e20

_WATER_DA = 18.015
_DA_PER_A3_PER_G_PER_CM3 = 0.602214  # 1 g/cm³ = N_A · 1e-24 Da/Å³


def ice_potential_per_A2(density_g_per_cm3: float = ICE_DENSITY_G_PER_CM3) -> float:
    """Mean scattering potential of amorphous ice, ``n_H₂O · (f_O(0) + 2 f_H(0))``, in map units (Å⁻²).

    Parameters
    ----------
    density_g_per_cm3
        Ice density in g/cm³, in (0, 1.5]; default 0.93 (:data:`ICE_DENSITY_G_PER_CM3`).

    Returns
    -------
    float
        Potential in Å⁻² (0.0946 at 0.93 g/cm³; × :data:`VOLT_A2_PER_POTENTIAL` = 4.53 V).
    """
    if not 0 < density_g_per_cm3 <= 1.5:
        raise ValueError(f"density_g_per_cm3 must be in (0, 1.5], got {density_g_per_cm3}")
    molecules_per_A3 = density_g_per_cm3 * _DA_PER_A3_PER_G_PER_CM3 / _WATER_DA
    return float(molecules_per_A3 * scattering_weights(np.array([8, 1, 1])).sum())


def contrast_against_ice(density_zyx: np.ndarray, ice_potential: float) -> np.ndarray:
    """Excess potential of protein over the ice it displaces: ``ρ · (1 − V_ice / V_protein)``.

    Linear in ``ρ`` (so band limit, centre and the sum of particles are kept): every voxel's protein
    content ``ρ / V_protein`` (volume fraction) displaces as much ice (module docstring).

    Parameters
    ----------
    density_zyx
        `(nz, ny, nx)` protein potential in map units (Å⁻²), e.g. a rendered sample.
    ice_potential
        Potential of the ice, Å⁻², in [0, :data:`PROTEIN_POTENTIAL_PER_A2`) (from
        :func:`ice_potential_per_A2`).

    Returns
    -------
    np.ndarray
        `(nz, ny, nx)` float32 contrast against ice.
    """
    if not 0 <= ice_potential < PROTEIN_POTENTIAL_PER_A2:
        raise ValueError(
            f"ice_potential must be in [0, {PROTEIN_POTENTIAL_PER_A2:.4f}) Å⁻², got {ice_potential}"
        )
    factor = np.float32(1.0 - ice_potential / PROTEIN_POTENTIAL_PER_A2)
    return np.asarray(density_zyx, dtype=np.float32) * factor


def zero_loss_fraction(
    tilt_angles_deg: np.ndarray,
    thickness_A: float,
    mean_free_path_A: float = INELASTIC_MEAN_FREE_PATH_300KV_A,
) -> np.ndarray:
    """Fraction of the beam left unscattered inelastically by a slab, ``exp(−t / (λ cos θ))`` per tilt.

    A slab of thickness ``t`` tilted by ``θ`` is crossed along ``t / cos θ``; the energy filter removes
    what scattered inelastically on the way (Beer-Lambert with mean free path ``λ``).

    Parameters
    ----------
    tilt_angles_deg
        `(n_tilts,)` tilt angles in degrees, inside (−90°, 90°).
    thickness_A
        Ice thickness ``t`` in Å (≥ 0), e.g. ``nz × voxel_size_A`` of the slab.
    mean_free_path_A
        Inelastic mean free path ``λ`` in Å (> 0); default 3950 Å at 300 kV
        (:data:`INELASTIC_MEAN_FREE_PATH_300KV_A`).

    Returns
    -------
    np.ndarray
        `(n_tilts,)` float64 fractions in (0, 1].
    """
    angles = np.asarray(tilt_angles_deg, dtype=np.float64)
    if angles.ndim != 1 or not np.all(np.abs(angles) < 90.0):
        raise ValueError(f"tilt_angles_deg must be 1D inside (-90, 90), got {tilt_angles_deg!r}")
    if not thickness_A >= 0:
        raise ValueError(f"thickness_A must be >= 0, got {thickness_A}")
    if not mean_free_path_A > 0:
        raise ValueError(f"mean_free_path_A must be > 0, got {mean_free_path_A}")
    return np.exp(-thickness_A / (mean_free_path_A * np.cos(np.deg2rad(angles))))


def apply_thickness_to_tilts(tilts: np.ndarray, zero_loss: np.ndarray) -> np.ndarray:
    """Weight each signal tilt by ``√(zero-loss fraction)``, its amplitude against unit shot noise.

    The zero-loss image of tilt ``i`` holds ``N_i = N₀ · f_i`` electrons per pixel, its contrast is
    unchanged and its shot noise, relative to the contrast, is ``1 / √N_i``. Our detector noise is unit
    variance in every tilt (:func:`cryoengine.physics.tilt.draw_detector_noise_tilts`), so the equivalent is
    the signal scaled by ``√f_i`` (SNR per tilt ∝ ``f_i``), the noise left as it is.

    Parameters
    ----------
    tilts
        `(n_tilts, ny, nx)` signal tilt images.
    zero_loss
        `(n_tilts,)` fractions from :func:`zero_loss_fraction`, in (0, 1].

    Returns
    -------
    np.ndarray
        `(n_tilts, ny, nx)` float32 weighted tilt images.
    """
    tilts = np.asarray(tilts)
    fraction = np.asarray(zero_loss, dtype=np.float64)
    if tilts.ndim != 3 or fraction.shape != (tilts.shape[0],):
        raise ValueError(f"need (n, ny, nx) tilts and (n,) fractions, got {tilts.shape}, {fraction.shape}")
    if not np.all((fraction > 0) & (fraction <= 1)):
        raise ValueError("zero_loss fractions must lie in (0, 1]")
    return (tilts * np.sqrt(fraction)[:, None, None]).astype(np.float32)
