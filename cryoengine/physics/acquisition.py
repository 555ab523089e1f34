"""Imperfect acquisition: tilt-series misalignment, beam-induced motion blur, defocus error, detector MTF.

Each effect acts on the *signal* tilt images, in the order a real image forms and is processed::

    projection → CTF × exposure filter (tilt.py; with a defocus *estimate* when phase flipping)
               → motion blur (during the exposure) → detector MTF (on recording)
               → misalignment (the reconstruction assumes the nominal geometry)

The unit-variance detector-noise tilts are left as they are: a counting detector's noise power spectrum is
flat (every electron is a point event in one pixel), so its noise transfer is 1 (:func:`detector_dqe`),
and white noise stays white under the small shifts and rotations of misalignment.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage

from cryoengine.physics.ctf import CtfParameters, rfft2_frequencies_per_A

__all__ = [
    "apply_detector_mtf_to_tilts",
    "apply_motion_blur_to_tilts",
    "detector_dqe",
    "detector_mtf",
    "draw_defocus_estimate",
    "draw_motion_blur",
    "draw_tilt_misalignment",
    "misalign_tilts",
    "motion_blur_transfer",
]


def draw_tilt_misalignment(
    tilt_angles_deg: np.ndarray,
    rng: np.random.Generator,
    *,
    shift_sigma_min_A: float = 2.0,
    shift_sigma_max_A: float = 6.0,
    rotation_sigma_min_deg: float = 0.1,
    rotation_sigma_max_deg: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw each tilt's residual alignment error: a shift in the detector plane and a rotation about the beam.

    The error grows with tilt as in PolNet's model (``add_mics_misalignment`` in ``polnet/tem.py``,
    Martinez-Sanchez et al., "Simulating the cellular context in synthetic datasets for cryo-electron
    tomography", IEEE Trans. Med. Imaging, 2024): the standard deviation at tilt ``θ``
    is ``σ(θ) = σ_min + (σ_max − σ_min) · |sin θ| / max|sin θ|``; each shift component and the rotation
    are Gaussian with that σ. Default magnitudes: residuals of fiducial/patch-tracking alignment are of
    the order of a pixel of 2-4 Å at 0° and worsen at high tilt (Mastronarde & Held, J. Struct. Biol.
    197:102, 2017), rotation residuals a fraction of a degree.

    Parameters
    ----------
    tilt_angles_deg
        `(n_tilts,)` tilt angles in degrees.
    rng
        Random generator (the tomogram's seed).
    shift_sigma_min_A, shift_sigma_max_A
        Shift σ per axis in Å at 0° and at the largest |tilt|, ``0 <= min <= max``.
    rotation_sigma_min_deg, rotation_sigma_max_deg
        In-plane rotation σ in degrees at 0° and at the largest |tilt|, ``0 <= min <= max``.

    Returns
    -------
    shifts_yx_A : np.ndarray
        `(n_tilts, 2)` shift of each tilt image, ``(y, x)`` in Å.
    rotations_deg : np.ndarray
        `(n_tilts,)` rotation of each tilt image about the beam (detector centre), degrees.
    """
    angles = np.asarray(tilt_angles_deg, dtype=np.float64)
    if angles.ndim != 1 or angles.size == 0:
        raise ValueError(f"tilt_angles_deg must be a non-empty 1D array, got {tilt_angles_deg!r}")
    for name, low, high in (
        ("shift_sigma", shift_sigma_min_A, shift_sigma_max_A),
        ("rotation_sigma", rotation_sigma_min_deg, rotation_sigma_max_deg),
    ):
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= {name} min <= max, got {low}, {high}")
    sine = np.abs(np.sin(np.deg2rad(angles)))
    growth = sine / sine.max() if sine.max() > 0 else np.zeros_like(sine)
    shift_sigma = shift_sigma_min_A + (shift_sigma_max_A - shift_sigma_min_A) * growth
    rotation_sigma = rotation_sigma_min_deg + (rotation_sigma_max_deg - rotation_sigma_min_deg) * growth
    shifts = rng.standard_normal((angles.size, 2)) * shift_sigma[:, None]
    rotations = rng.standard_normal(angles.size) * rotation_sigma
    return shifts, rotations


def misalign_tilts(
    tilts: np.ndarray, shifts_yx_A: np.ndarray, rotations_deg: np.ndarray, pixel_size_A: float
) -> np.ndarray:
    """Rotate each tilt image about the detector centre and shift it: the error the reconstruction ignores.

    Tilt ``i`` becomes ``image'(r) = image(Q_iᵀ (r − c − s_i) + c)`` with ``Q_i`` the in-plane rotation by
    ``rotations_deg[i]`` (from ``+x`` towards ``+y``), ``c`` the detector centre ``((ny−1)/2, (nx−1)/2)``
    (the projector's centre of rotation) and ``s_i`` the shift in pixels; cubic B-spline, zero outside.

    Parameters
    ----------
    tilts
        `(n_tilts, ny, nx)` tilt images.
    shifts_yx_A
        `(n_tilts, 2)` shifts in Å, ``(y, x)`` (:func:`draw_tilt_misalignment`).
    rotations_deg
        `(n_tilts,)` rotations in degrees.
    pixel_size_A
        Pixel size in Å (> 0).

    Returns
    -------
    np.ndarray
        `(n_tilts, ny, nx)` float32 misaligned tilt images.
    """
    tilts = np.asarray(tilts, dtype=np.float32)
    shifts = np.asarray(shifts_yx_A, dtype=np.float64)
    rotations = np.deg2rad(np.asarray(rotations_deg, dtype=np.float64))
    if tilts.ndim != 3 or shifts.shape != (len(tilts), 2) or rotations.shape != (len(tilts),):
        raise ValueError(
            f"need (n, ny, nx) tilts, (n, 2) shifts, (n,) rotations; got {tilts.shape}, {shifts.shape}, "
            f"{rotations.shape}"
        )
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    centre = (np.array(tilts.shape[1:]) - 1) / 2.0
    out = np.empty_like(tilts)
    for i, (image, shift, angle) in enumerate(zip(tilts, shifts / pixel_size_A, rotations, strict=True)):
        cos, sin = np.cos(angle), np.sin(angle)
        forward = np.array([[cos, sin], [-sin, cos]])  # (y, x) rotation from +x towards +y
        inverse = forward.T
        offset = centre - inverse @ (centre + shift)
        out[i] = ndimage.affine_transform(image, inverse, offset=offset, order=3, mode="constant")
    return out


def draw_motion_blur(n_tilts: int, rng: np.random.Generator, max_length_A: float = 4.0) -> np.ndarray:
    """Draw each tilt's residual beam-induced motion: a straight track of uniform length and direction.

    Default: up to 4 Å per tilt image, the residual after frame alignment; beam-induced motion itself
    reaches tens of Å in the first e⁻/Å² (Brilot et al., J. Struct. Biol. 177:630, 2012) and frame
    alignment removes most of it (Zheng et al., MotionCor2, Nat. Methods 14:331, 2017).

    Parameters
    ----------
    n_tilts
        Number of tilts (≥ 1).
    rng
        Random generator.
    max_length_A
        Largest track length in Å (≥ 0); lengths are uniform in ``[0, max_length_A]``.

    Returns
    -------
    np.ndarray
        `(n_tilts, 2)` displacement over each exposure, ``(y, x)`` in Å.
    """
    if isinstance(n_tilts, bool) or not isinstance(n_tilts, int | np.integer) or n_tilts < 1:
        raise ValueError(f"n_tilts must be a positive integer, got {n_tilts!r}")
    if not max_length_A >= 0:
        raise ValueError(f"max_length_A must be >= 0, got {max_length_A}")
    length = rng.uniform(0.0, max_length_A, n_tilts)
    direction = rng.uniform(0.0, 2.0 * np.pi, n_tilts)
    return np.stack([length * np.sin(direction), length * np.cos(direction)], axis=1)


def motion_blur_transfer(
    freq_y_per_A: np.ndarray, freq_x_per_A: np.ndarray, displacement_yx_A: np.ndarray
) -> np.ndarray:
    """Transfer of a uniform straight motion ``d`` during the exposure: ``sinc(k · d)``.

    The kernel is the segment from ``−d/2`` to ``+d/2`` with uniform weight and unit sum; its Fourier
    transform is ``∫₋½^½ exp(−2πi t k·d) dt = sin(π k·d) / (π k·d)``, real, 1 at ``k = 0``.

    Parameters
    ----------
    freq_y_per_A, freq_x_per_A
        Broadcastable frequency components in cycles/Å.
    displacement_yx_A
        `(2,)` displacement ``(y, x)`` in Å.

    Returns
    -------
    np.ndarray
        float64 transfer of the broadcast shape.
    """
    d = np.asarray(displacement_yx_A, dtype=np.float64)
    if d.shape != (2,):
        raise ValueError(f"displacement_yx_A must have shape (2,), got {d.shape}")
    return np.sinc(freq_y_per_A * d[0] + freq_x_per_A * d[1])


def apply_motion_blur_to_tilts(
    tilts: np.ndarray, displacements_yx_A: np.ndarray, pixel_size_A: float
) -> np.ndarray:
    """Blur each tilt by its motion track (:func:`motion_blur_transfer`, from :func:`draw_motion_blur`).

    Parameters
    ----------
    tilts
        `(n_tilts, ny, nx)` signal tilt images.
    displacements_yx_A
        `(n_tilts, 2)` displacement of each tilt in Å.
    pixel_size_A
        Pixel size in Å.

    Returns
    -------
    np.ndarray
        `(n_tilts, ny, nx)` float32 blurred tilt images.
    """
    tilts = np.asarray(tilts, dtype=np.float32)
    d = np.asarray(displacements_yx_A, dtype=np.float64)
    if tilts.ndim != 3 or d.shape != (len(tilts), 2):
        raise ValueError(f"need (n, ny, nx) tilts and (n, 2) displacements, got {tilts.shape}, {d.shape}")
    freq_y, freq_x = rfft2_frequencies_per_A(tilts.shape[1:], pixel_size_A)
    transfer = np.sinc(freq_y[None] * d[:, 0, None, None] + freq_x[None] * d[:, 1, None, None])
    return _filter_tilts(tilts, transfer)


def draw_defocus_estimate(
    ctf: CtfParameters, rng: np.random.Generator, sigma_um: float = 0.1
) -> CtfParameters:
    """Draw the CTF that the processing *estimates*: the true one with a Gaussian error on its defocus.

    Used when phase flipping (:func:`cryoengine.physics.tilt.apply_ctf_and_exposure_to_tilts` with
    ``assumed_ctf``): the images are multiplied by ``sign(CTF_assumed)``, so where the estimate's zeros
    miss the true ones, bands come out with the wrong sign. Default σ 0.1 µm: a chosen order of magnitude
    for CTF fits (e.g. CTFFIND4, Rohou & Grigorieff, J. Struct. Biol. 192:216, 2015) on low-dose tilt
    images of ~3 e⁻/Å², with the defocus gradient across a tilted field ignored; not a measured constant.

    Parameters
    ----------
    ctf
        True CTF of the tomogram.
    rng
        Random generator.
    sigma_um
        Standard deviation of the defocus error in µm (≥ 0).

    Returns
    -------
    CtfParameters
        ``ctf`` with ``defocus_um`` replaced by the estimate (kept at or above half the astigmatism).
    """
    if not sigma_um >= 0:
        raise ValueError(f"sigma_um must be >= 0, got {sigma_um}")
    estimate = ctf.defocus_um + sigma_um * float(rng.standard_normal())
    fields = dict(vars(ctf))
    fields["defocus_um"] = max(estimate, 0.5 * ctf.astigmatism_um)
    return CtfParameters(**fields)


def detector_mtf(
    freq_y_per_A: np.ndarray, freq_x_per_A: np.ndarray, detector_pixel_A: float, psf_sigma_A: float = 0.0
) -> np.ndarray:
    """MTF of a counting detector: square-pixel aperture × an optional Gaussian point spread.

    ``MTF(k) = sinc(k_y p) · sinc(k_x p) · exp(−2π² σ² |k|²)`` with ``p`` the physical pixel size at the
    specimen and ``sinc(x) = sin(πx)/(πx)``; at the detector's Nyquist (``k = 1/(2p)`` on an axis) it is
    ``2/π ≈ 0.64`` for ``σ = 0``, the ideal counting detector of McMullan et al. (Ultramicroscopy
    147:156, 2014, "Comparison of optimal performance at 300 keV of three direct electron detectors");
    measured K2/K3/Falcon counting MTFs lie near or a little below it, ``σ`` models the difference.
    Binning by Fourier cropping keeps this MTF; evaluate it at the images' frequencies.

    Parameters
    ----------
    freq_y_per_A, freq_x_per_A
        Broadcastable frequency components in cycles/Å.
    detector_pixel_A
        Physical detector pixel at the specimen in Å (> 0), before any binning.
    psf_sigma_A
        Gaussian point-spread σ in Å at the specimen (≥ 0).

    Returns
    -------
    np.ndarray
        float64 MTF of the broadcast shape.
    """
    if not detector_pixel_A > 0:
        raise ValueError(f"detector_pixel_A must be > 0, got {detector_pixel_A}")
    if not psf_sigma_A >= 0:
        raise ValueError(f"psf_sigma_A must be >= 0, got {psf_sigma_A}")
    k2 = freq_y_per_A**2 + freq_x_per_A**2
    aperture = np.sinc(freq_y_per_A * detector_pixel_A) * np.sinc(freq_x_per_A * detector_pixel_A)
    return aperture * np.exp(-2.0 * np.pi**2 * psf_sigma_A**2 * k2)


def detector_dqe(
    freq_y_per_A: np.ndarray,
    freq_x_per_A: np.ndarray,
    detector_pixel_A: float,
    psf_sigma_A: float = 0.0,
    dqe_zero: float = 0.8,
) -> np.ndarray:
    """DQE of a counting detector with a flat noise power spectrum: ``DQE(k) = DQE(0) · MTF(k)²``.

    ``DQE = DQE(0) · MTF² / NTF²`` and a counting detector's NTF is 1 (each electron is counted in one
    pixel), so signal is filtered by :func:`detector_mtf` and noise is not. ``DQE(0)`` ≈ 0.8 for counting
    K2/K3/Falcon detectors at 300 kV (McMullan et al., 2014; the constant scales the dose, which our SNR
    calibration sets anyway).

    Parameters
    ----------
    freq_y_per_A, freq_x_per_A, detector_pixel_A, psf_sigma_A
        As in :func:`detector_mtf`.
    dqe_zero
        DQE at zero frequency, in (0, 1].

    Returns
    -------
    np.ndarray
        float64 DQE of the broadcast shape.
    """
    if not 0 < dqe_zero <= 1:
        raise ValueError(f"dqe_zero must be in (0, 1], got {dqe_zero}")
    return dqe_zero * detector_mtf(freq_y_per_A, freq_x_per_A, detector_pixel_A, psf_sigma_A) ** 2


def apply_detector_mtf_to_tilts(
    tilts: np.ndarray, pixel_size_A: float, detector_pixel_A: float, psf_sigma_A: float = 0.0
) -> np.ndarray:
    """Filter signal tilt images by :func:`detector_mtf` (noise tilts pass unfiltered, NTF = 1).

    Parameters
    ----------
    tilts
        `(n_tilts, ny, nx)` signal tilt images.
    pixel_size_A
        Image pixel size in Å (the voxel size).
    detector_pixel_A, psf_sigma_A
        As in :func:`detector_mtf`.

    Returns
    -------
    np.ndarray
        `(n_tilts, ny, nx)` float32 filtered tilt images.
    """
    tilts = np.asarray(tilts, dtype=np.float32)
    if tilts.ndim != 3:
        raise ValueError(f"tilts must be (n_tilts, ny, nx), got {tilts.shape}")
    freq_y, freq_x = rfft2_frequencies_per_A(tilts.shape[1:], pixel_size_A)
    return _filter_tilts(tilts, detector_mtf(freq_y, freq_x, detector_pixel_A, psf_sigma_A)[None])


def _filter_tilts(tilts: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    """Multiply each tilt's ``rfft2`` by a `(n_tilts or 1, ny, nx // 2 + 1)` transfer; float32 out."""
    spectrum = scipy.fft.rfft2(tilts)
    spectrum *= transfer.astype(np.float32)
    return scipy.fft.irfft2(spectrum, s=tilts.shape[1:]).astype(np.float32)
