"""Contrast transfer function and exposure (dose) filter of a transmission electron microscope.

Pure functions of spatial frequency (1/Å): relativistic wavelength, astigmatic CTF, critical exposure.

Conventions. Spatial frequency ``k`` is in cycles per Å; on a `(y, x)` image grid, the azimuth ``φ`` of a
frequency is measured from ``+x`` towards ``+y``. Defocus is positive for underfocus. The phase is

    χ(k, φ) = π·λ·Δf(φ)·k² − ½·π·Cs·λ³·k⁴ + φ_shift,   Δf(φ) = Δf + ½·Δf_ast·cos 2(φ − φ_ast),

and ``CTF = −sin(χ + arctan(A / √(1 − A²)))`` with amplitude contrast ``A`` (the CTFFIND/RELION form).
With this sign, a positive projected potential comes out dark at low frequency, as in a micrograph;
phase flipping multiplies by ``sign(CTF)`` and leaves ``|CTF|``, which turns the contrast positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.constants as const

__all__ = [
    "CtfParameters",
    "critical_exposure_e_per_A2",
    "ctf_of_frequency",
    "draw_ctf_parameters",
    "electron_wavelength_A",
    "exposure_filter",
    "rfft2_frequencies_per_A",
]


def electron_wavelength_A(voltage_kV: float) -> float:
    """Relativistic de Broglie wavelength of an electron accelerated through `voltage_kV`.

    ``λ = h / √(2·m₀·e·V·(1 + e·V / (2·m₀·c²)))`` (CODATA constants); 0.019687 Å at 300 kV.

    Parameters
    ----------
    voltage_kV
        Acceleration voltage in kV, > 0.

    Returns
    -------
    float
        Wavelength in Å.
    """
    if not voltage_kV > 0:
        raise ValueError(f"voltage_kV must be > 0, got {voltage_kV}")
    energy_J = const.e * voltage_kV * 1e3
    momentum = math.sqrt(2.0 * const.m_e * energy_J * (1.0 + energy_J / (2.0 * const.m_e * const.c**2)))
    return const.h / momentum * 1e10


@dataclass(frozen=True)
class CtfParameters:
    """Microscope and per-tomogram imaging parameters of the CTF.

    Parameters
    ----------
    defocus_um
        Mean defocus in µm, positive = underfocus.
    voltage_kV
        Acceleration voltage in kV.
    cs_mm
        Spherical aberration in mm (≥ 0).
    amplitude_contrast
        Fraction of amplitude contrast ``A`` in [0, 1).
    astigmatism_um
        Defocus difference ``Δf_max − Δf_min`` in µm (≥ 0); 0 for no astigmatism.
    astigmatism_angle_deg
        Azimuth of the largest defocus, in degrees from ``+x`` towards ``+y``.
    phase_shift_deg
        Extra phase shift in degrees (a phase plate); 0 without one.
    """

    defocus_um: float = 3.0
    voltage_kV: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    astigmatism_um: float = 0.0
    astigmatism_angle_deg: float = 0.0
    phase_shift_deg: float = 0.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if not self.voltage_kV > 0:
            raise ValueError(f"voltage_kV must be > 0, got {self.voltage_kV}")
        if self.cs_mm < 0:
            raise ValueError(f"cs_mm must be >= 0, got {self.cs_mm}")
        if not 0.0 <= self.amplitude_contrast < 1.0:
            raise ValueError(f"amplitude_contrast must be in [0, 1), got {self.amplitude_contrast}")
        if self.astigmatism_um < 0:
            raise ValueError(f"astigmatism_um must be >= 0, got {self.astigmatism_um}")
        if self.defocus_um - 0.5 * self.astigmatism_um < 0:
            raise ValueError(
                f"defocus_um - astigmatism_um / 2 must be >= 0 (underfocus on every azimuth), "
                f"got defocus_um={self.defocus_um}, astigmatism_um={self.astigmatism_um}"
            )


def draw_ctf_parameters(
    rng: np.random.Generator,
    *,
    defocus_min_um: float = 2.0,
    defocus_max_um: float = 5.0,
    astigmatism_max_um: float = 0.0,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
) -> CtfParameters:
    """Draw the CTF of one tomogram: defocus uniform in a range, astigmatism uniform in size and azimuth.

    Parameters
    ----------
    rng
        Random generator (the tomogram's seed).
    defocus_min_um, defocus_max_um
        Range of the mean defocus in µm (underfocus positive), ``min <= max``.
    astigmatism_max_um
        Largest defocus difference in µm; 0 draws no astigmatism.
    voltage_kV, cs_mm, amplitude_contrast
        Fixed microscope parameters, see :class:`CtfParameters`.

    Returns
    -------
    CtfParameters
        The drawn parameters.
    """
    if not 0 <= defocus_min_um <= defocus_max_um:
        raise ValueError(
            f"need 0 <= defocus_min_um <= defocus_max_um, got {defocus_min_um}, {defocus_max_um}"
        )
    if astigmatism_max_um < 0:
        raise ValueError(f"astigmatism_max_um must be >= 0, got {astigmatism_max_um}")
    defocus_um = float(rng.uniform(defocus_min_um, defocus_max_um))
    astigmatism_um = float(rng.uniform(0.0, min(astigmatism_max_um, 2.0 * defocus_um)))
    angle_deg = float(rng.uniform(0.0, 180.0))
    return CtfParameters(
        defocus_um=defocus_um,
        voltage_kV=voltage_kV,
        cs_mm=cs_mm,
        amplitude_contrast=amplitude_contrast,
        astigmatism_um=astigmatism_um,
        astigmatism_angle_deg=angle_deg,
    )


def rfft2_frequencies_per_A(shape_yx: tuple[int, int], pixel_size_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequencies of the ``numpy.fft.rfft2`` grid of a `(ny, nx)` image.

    Parameters
    ----------
    shape_yx
        `(ny, nx)` image shape in pixels.
    pixel_size_A
        Pixel size in Å.

    Returns
    -------
    freq_y_per_A : np.ndarray
        `(ny, 1)` frequencies along y, cycles/Å.
    freq_x_per_A : np.ndarray
        `(1, nx // 2 + 1)` frequencies along x, cycles/Å.
    """
    if len(shape_yx) != 2 or min(shape_yx) < 1:
        raise ValueError(f"shape_yx must be two positive integers, got {shape_yx}")
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    ny, nx = shape_yx
    freq_y = np.fft.fftfreq(ny, d=pixel_size_A)[:, None]
    freq_x = np.fft.rfftfreq(nx, d=pixel_size_A)[None, :]
    return freq_y, freq_x


def ctf_of_frequency(
    freq_y_per_A: np.ndarray,
    freq_x_per_A: np.ndarray,
    ctf: CtfParameters,
    *,
    phase_flip: bool = False,
) -> np.ndarray:
    """CTF at the given spatial frequencies (see the module docstring for the formula and signs).

    Parameters
    ----------
    freq_y_per_A, freq_x_per_A
        Broadcastable arrays of frequency components in cycles/Å (e.g. from
        :func:`rfft2_frequencies_per_A`, or a 1D radial line with ``freq_y = 0``).
    ctf
        Imaging parameters.
    phase_flip
        If True, return ``|CTF|``: the CTF after phase-flipping correction.

    Returns
    -------
    np.ndarray
        CTF values in [−1, 1], float64, of the broadcast shape.
    """
    wavelength_A = electron_wavelength_A(ctf.voltage_kV)
    k2 = freq_y_per_A**2 + freq_x_per_A**2
    azimuth = np.arctan2(freq_y_per_A, freq_x_per_A)
    defocus_A = 1e4 * (
        ctf.defocus_um
        + 0.5 * ctf.astigmatism_um * np.cos(2.0 * (azimuth - np.deg2rad(ctf.astigmatism_angle_deg)))
    )
    cs_A = 1e7 * ctf.cs_mm
    chi = np.pi * wavelength_A * defocus_A * k2 - 0.5 * np.pi * cs_A * wavelength_A**3 * k2**2
    amplitude_phase = math.atan2(ctf.amplitude_contrast, math.sqrt(1.0 - ctf.amplitude_contrast**2))
    values = -np.sin(chi + np.deg2rad(ctf.phase_shift_deg) + amplitude_phase)
    return np.abs(values) if phase_flip else values


def critical_exposure_e_per_A2(freq_per_A: np.ndarray, voltage_kV: float = 300.0) -> np.ndarray:
    """Critical exposure ``Ne(k)`` of Grant & Grigorieff (2015), the dose that attenuates amplitude to 1/e.

    ``Ne(k) = 0.245·k^(−1.665) + 2.81`` e⁻/Å² with ``k`` in cycles/Å, measured at 300 kV (T. Grant and
    N. Grigorieff, "Measuring the optimal exposure for single particle cryo-EM using a 2.6 Å reconstruction
    of rotavirus VP6", eLife 4:e06980, 2015, eq. 3). At 200 kV they scale it by 0.8; between 200 and
    300 kV we interpolate that factor linearly. Other voltages are not calibrated and are refused.

    Parameters
    ----------
    freq_per_A
        Spatial frequency magnitudes in cycles/Å, any shape (≥ 0; ``k = 0`` gives ``inf``).
    voltage_kV
        Acceleration voltage in kV, in [200, 300].

    Returns
    -------
    np.ndarray
        Critical exposure in e⁻/Å², float64, same shape as `freq_per_A`.
    """
    if not 200.0 <= voltage_kV <= 300.0:
        raise ValueError(
            f"the critical-exposure curve is calibrated for 200-300 kV only, got voltage_kV={voltage_kV}"
        )
    k = np.abs(np.asarray(freq_per_A, dtype=np.float64))
    scale = 0.8 + 0.2 * (voltage_kV - 200.0) / 100.0
    safe_k = np.where(k > 0, k, 1.0)
    return np.where(k > 0, scale * (0.245 * safe_k**-1.665 + 2.81), np.inf)


def exposure_filter(
    freq_per_A: np.ndarray, exposure_e_per_A2: float | np.ndarray, voltage_kV: float = 300.0
) -> np.ndarray:
    """Amplitude attenuation by radiation damage after a cumulative exposure, ``exp(−N / (2·Ne(k)))``.

    Grant & Grigorieff (2015), eq. 5: the amplitude that survives an exposure ``N``, with the critical
    exposure ``Ne(k)`` of :func:`critical_exposure_e_per_A2`. Equal to 1 at ``k = 0`` and for ``N = 0``.

    Parameters
    ----------
    freq_per_A
        Spatial frequency magnitudes in cycles/Å, any shape `S`.
    exposure_e_per_A2
        Cumulative exposure ``N`` in e⁻/Å² (≥ 0): a scalar, or an array of shape `E` for one filter each.
    voltage_kV
        Acceleration voltage in kV, in [200, 300].

    Returns
    -------
    np.ndarray
        Weights in (0, 1], float64, of shape `E + S` (`S` for a scalar exposure).
    """
    exposure = np.asarray(exposure_e_per_A2, dtype=np.float64)
    if not np.all(exposure >= 0) or not np.all(np.isfinite(exposure)):
        raise ValueError(f"exposure_e_per_A2 must be finite and >= 0, got {exposure_e_per_A2}")
    critical = critical_exposure_e_per_A2(freq_per_A, voltage_kV)
    return np.exp(-exposure.reshape(exposure.shape + (1,) * critical.ndim) / (2.0 * critical))
