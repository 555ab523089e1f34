"""Tilt series: the tilt scheme (angles, acquisition order, exposure) and the image formation per tilt.

Projections are modulated by the CTF and the exposure filter; detector noise is drawn as its own series.

Image formation per tilt ``i`` (in Fourier space, on the detector grid, pixel = voxel):
``image_i = F⁻¹[ CTF(k) · W(k, N_i) · F[projection_i] ]`` where ``W`` is the exposure filter of
:func:`cryoengine.physics.ctf.exposure_filter` at ``N_i`` = the exposure before tilt ``i`` plus half its own
(the mid-exposure point). Simplifications, stated: one defocus for every tilt of a tomogram (the defocus
gradient across a tilted specimen and the defocus change with height are ignored), no envelope functions
beyond the exposure filter, and detector noise additive, white, Gaussian and of unit variance in every
tilt, kept apart from the signal so that any SNR can be mixed after reconstruction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft

from cryoengine.physics.ctf import CtfParameters, ctf_of_frequency, exposure_filter, rfft2_frequencies_per_A
from cryoengine.physics.projector import TiltGeometry

__all__ = [
    "TiltScheme",
    "apply_ctf_and_exposure_to_tilts",
    "draw_detector_noise_tilts",
    "subtomogram_ctf_weight",
]


@dataclass(frozen=True)
class TiltScheme:
    """Single-axis tilt scheme: angles on a regular grid, their acquisition order and exposure.

    Parameters
    ----------
    min_angle_deg, max_angle_deg
        Tilt range in degrees, inside (−90°, 90°); the grid is ``min + k·step`` up to ``max``.
    step_deg
        Angular step in degrees, > 0.
    order
        ``"dose-symmetric"`` (Hagen et al., J. Struct. Biol. 197:191, 2017): start at the tilt nearest 0°,
        then alternate groups of `group_size` tilts on the positive and the negative side, moving outwards;
        when one side runs out, the other continues. ``"sequential"``: from `min_angle_deg` to the maximum.
    group_size
        Tilts per group of the dose-symmetric scheme (≥ 1); 1 alternates every tilt.
    dose_per_tilt_e_per_A2
        Electron exposure of each tilt image in e⁻/Å² (≥ 0). 3 e⁻/Å² × 41 tilts ≈ 120 e⁻/Å² in total,
        the usual budget of a ±60°/3° series.
    """

    min_angle_deg: float = -60.0
    max_angle_deg: float = 60.0
    step_deg: float = 3.0
    order: Literal["dose-symmetric", "sequential"] = "dose-symmetric"
    group_size: int = 2
    dose_per_tilt_e_per_A2: float = 3.0

    def __post_init__(self) -> None:
        if not -90.0 < self.min_angle_deg < 90.0:
            raise ValueError(f"min_angle_deg must lie inside (-90, 90), got {self.min_angle_deg}")
        if not -90.0 < self.max_angle_deg < 90.0:
            raise ValueError(f"max_angle_deg must lie inside (-90, 90), got {self.max_angle_deg}")
        if self.min_angle_deg > self.max_angle_deg:
            raise ValueError(
                f"min_angle_deg must be <= max_angle_deg, got {self.min_angle_deg} > {self.max_angle_deg}"
            )
        if not self.step_deg > 0:
            raise ValueError(f"step_deg must be > 0, got {self.step_deg}")
        if self.order not in ("dose-symmetric", "sequential"):
            raise ValueError(f"order must be 'dose-symmetric' or 'sequential', got {self.order!r}")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
            raise ValueError(f"group_size must be an integer >= 1, got {self.group_size!r}")
        if not self.dose_per_tilt_e_per_A2 >= 0:
            raise ValueError(f"dose_per_tilt_e_per_A2 must be >= 0, got {self.dose_per_tilt_e_per_A2}")

    @property
    def tilt_angles_deg(self) -> np.ndarray:
        """`(n_tilts,)` tilt angles in degrees, ascending: the order of the tilt images in a series."""
        n_steps = int(np.floor((self.max_angle_deg - self.min_angle_deg) / self.step_deg + 1e-9))
        return float(self.min_angle_deg) + float(self.step_deg) * np.arange(n_steps + 1.0)

    @property
    def acquisition_order(self) -> np.ndarray:
        """`(n_tilts,)` indices into :attr:`tilt_angles_deg`, in the order the tilts are recorded."""
        angles = self.tilt_angles_deg
        if self.order == "sequential":
            return np.arange(angles.size)
        first = int(np.lexsort((-angles, np.abs(angles)))[0])  # nearest 0°, the positive one on a tie
        sides = [list(range(first + 1, angles.size)), list(range(first - 1, -1, -1))]
        order = [first]
        side = 0
        while sides[0] or sides[1]:
            if not sides[side]:
                side = 1 - side
            order += sides[side][: self.group_size]
            del sides[side][: self.group_size]
            side = 1 - side
        return np.array(order)

    @property
    def pre_exposure_e_per_A2(self) -> np.ndarray:
        """`(n_tilts,)` exposure accumulated before each tilt (in :attr:`tilt_angles_deg` order), e⁻/Å²."""
        pre_exposure = np.empty(self.tilt_angles_deg.size)
        pre_exposure[self.acquisition_order] = self.dose_per_tilt_e_per_A2 * np.arange(pre_exposure.size)
        return pre_exposure

    def geometry(self, volume_shape_zyx: Sequence[int]) -> TiltGeometry:
        """Projection geometry of a `(nz, ny, nx)` volume imaged with this scheme.

        Parameters
        ----------
        volume_shape_zyx
            `(nz, ny, nx)` volume shape in voxels.

        Returns
        -------
        TiltGeometry
            Geometry whose tilts are :attr:`tilt_angles_deg`.
        """
        nz, ny, nx = volume_shape_zyx
        return TiltGeometry((nz, ny, nx), tuple(self.tilt_angles_deg))


def apply_ctf_and_exposure_to_tilts(
    projections: np.ndarray,
    scheme: TiltScheme,
    ctf: CtfParameters,
    pixel_size_A: float,
    *,
    phase_flip: bool = False,
    exposure_filtering: bool = True,
    assumed_ctf: CtfParameters | None = None,
) -> np.ndarray:
    """Turn projections of the specimen potential into CTF- and exposure-modulated tilt images.

    Parameters
    ----------
    projections
        `(n_tilts, ny, nx)` projections, tilts in ``scheme.tilt_angles_deg`` order.
    scheme
        Tilt scheme (for each tilt's exposure).
    ctf
        CTF of this tomogram (one defocus for all tilts; see the module docstring).
    pixel_size_A
        Detector pixel size in Å (the voxel size).
    phase_flip
        If True, apply ``|CTF|`` (the images after phase-flipping CTF correction).
    exposure_filtering
        If True, attenuate each tilt by the exposure filter at its mid-exposure.
    assumed_ctf
        With `phase_flip`: the CTF the correction *estimated*; the images get ``CTF · sign(CTF_assumed)``
        (:func:`cryoengine.physics.acquisition.draw_defocus_estimate`). None = the true CTF, ``|CTF|``.

    Returns
    -------
    np.ndarray
        `(n_tilts, ny, nx)` float32 tilt images.
    """
    projections = np.asarray(projections)
    n_tilts = scheme.tilt_angles_deg.size
    if projections.ndim != 3 or projections.shape[0] != n_tilts:
        raise ValueError(f"projections must be ({n_tilts}, ny, nx) for this scheme, got {projections.shape}")
    freq_y, freq_x = rfft2_frequencies_per_A(projections.shape[1:], pixel_size_A)
    if phase_flip and assumed_ctf is not None:
        transfer = (
            ctf_of_frequency(freq_y, freq_x, ctf) * np.sign(ctf_of_frequency(freq_y, freq_x, assumed_ctf))
        )[None]
    else:
        transfer = ctf_of_frequency(freq_y, freq_x, ctf, phase_flip=phase_flip)[None]
    if exposure_filtering:
        freq = np.sqrt(freq_y**2 + freq_x**2)
        mid_exposure = scheme.pre_exposure_e_per_A2 + 0.5 * scheme.dose_per_tilt_e_per_A2
        transfer = transfer * exposure_filter(freq, mid_exposure, ctf.voltage_kV)
    spectrum = scipy.fft.rfft2(projections.astype(np.float32, copy=False))
    spectrum *= transfer.astype(np.float32)
    return scipy.fft.irfft2(spectrum, s=projections.shape[1:])


def draw_detector_noise_tilts(tilts_shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance, zero-mean white Gaussian detector noise for a whole tilt series.

    Parameters
    ----------
    tilts_shape
        `(n_tilts, ny, nx)` shape of the tilt series.
    rng
        Random generator (the tomogram's seed); the same state gives the same noise.

    Returns
    -------
    np.ndarray
        `(n_tilts, ny, nx)` float32 standard-normal noise.
    """
    shape = tuple(tilts_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"tilts_shape must be three positive integers, got {tilts_shape!r}")
    return rng.standard_normal(shape, dtype=np.float32)


def subtomogram_ctf_weight(
    box: int,
    scheme: TiltScheme,
    ctf: CtfParameters,
    pixel_size_A: float,
    *,
    phase_flip: bool = False,
    exposure_filtering: bool = True,
) -> np.ndarray:
    """3D transfer of a subtomogram: each tilt's CTF × exposure filter on its central slice, the wedge empty.

    Tilt ``i`` samples the Fourier plane through the origin that contains ``k_y`` and the tilted in-plane
    axis ``u_i = (sin θ_i, 0, cos θ_i)`` in ``(z, y, x)`` (plane normal ``(cos θ_i, 0, −sin θ_i)``); a
    frequency ``k`` at distance ``d`` (voxels of the `D`³ Fourier grid) from that plane takes its weight
    ``max(0, 1 − |d|)`` (linear interpolation onto the grid). The value at ``k`` is the weighted mean of
    ``CTF(k_in-plane) · W(k, N_i)`` over the tilts whose plane passes within one voxel, and 0 where none
    does: the missing wedge. This is what RELION's ``rlnCtfImage`` holds for a subtomogram.

    Parameters
    ----------
    box
        Edge `D` of the subtomogram (voxels).
    scheme
        Tilt scheme (angles and exposures).
    ctf
        CTF of the particle's tomogram.
    pixel_size_A
        Voxel size (Å).
    phase_flip, exposure_filtering
        As in :func:`apply_ctf_and_exposure_to_tilts`.

    Returns
    -------
    np.ndarray
        `(D, D, D)` float32 weight on the centred Fourier grid, ``(kz, ky, kx)``, zero frequency at index
        ``D // 2`` (RELION's full-size 3D CTF image, origin at the centre).
    """
    if isinstance(box, bool) or not isinstance(box, int | np.integer) or box < 2:
        raise ValueError(f"box must be an integer >= 2, got {box!r}")
    freq = (np.arange(box) - box // 2) / box  # cycles/voxel, centred
    kz, ky, kx = np.meshgrid(freq, freq, freq, indexing="ij")
    total = np.zeros((box, box, box))
    weights = np.zeros((box, box, box))
    exposure = scheme.pre_exposure_e_per_A2 + 0.5 * scheme.dose_per_tilt_e_per_A2
    for angle_deg, exposure_i in zip(scheme.tilt_angles_deg, exposure, strict=True):
        theta = np.deg2rad(angle_deg)
        distance_vox = np.abs(kz * np.cos(theta) - kx * np.sin(theta)) * box
        weight = np.clip(1.0 - distance_vox, 0.0, None)
        if not weight.any():
            continue
        in_plane_u = (kz * np.sin(theta) + kx * np.cos(theta)) / pixel_size_A  # cycles/Å
        in_plane_y = ky / pixel_size_A
        transfer = ctf_of_frequency(in_plane_y, in_plane_u, ctf, phase_flip=phase_flip)
        if exposure_filtering:
            transfer = transfer * exposure_filter(
                np.hypot(in_plane_u, in_plane_y), exposure_i, ctf.voltage_kV
            )
        total += weight * transfer
        weights += weight
    return np.where(weights > 0, total / np.maximum(weights, 1.0), 0.0).astype(np.float32)
