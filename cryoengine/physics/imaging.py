"""The imaging chain of one tomogram: sample → tilt series → tomogram → subtomograms with ground truth.

A slab is filled with ``particles_per_tomogram`` targets and crowders (random orientation and position,
non-overlapping), projected over the tilt scheme, modulated by a drawn CTF and the exposure filter, and
reconstructed; ``noise_realisations`` independent unit-variance detector-noise tilt series are
reconstructed the same way. Subtomograms are cut around each target from all of them. Each target alone
and the class-blind reference particle are imaged once more, each in its own cell, for the noise scale α₁
and the particles' own signal variance (:mod:`cryoengine.physics.noise`).

Random draws, in this order, from one generator: placements, the CTF, then one detector-noise tilt series
per realisation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cryoengine.physics.ctf import CtfParameters, draw_ctf_parameters
from cryoengine.physics.extraction import extract_subtomograms
from cryoengine.physics.noise import reference_noise_scale
from cryoengine.physics.placement import (
    density_to_support_mask,
    isolated_placements,
    place_particles,
    render_sample,
)
from cryoengine.physics.projector import TiltGeometry, project_volume_to_tilts
from cryoengine.physics.reconstruction import reconstruct_tilts_to_volume
from cryoengine.physics.tilt import TiltScheme, apply_ctf_and_exposure_to_tilts, draw_detector_noise_tilts

__all__ = ["ImagedParticles", "ImagingSettings", "simulate_particles"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImagingSettings:
    """Everything the imaging chain needs besides the densities (built by the config, which checks it).

    Attributes
    ----------
    box, voxel_size_A
        Subtomogram edge `D` (voxels) and voxel size (Å).
    slab_shape_zyx
        Sample slab ``(nz, ny, nx)`` (voxels).
    particles_per_tomogram, crowding_fraction
        Target particles to place, and the volume fraction of crowders.
    support_threshold, support_margin_vox
        Support mask of each density for non-overlapping placement (fraction of its peak, margin).
    scheme
        The tilt scheme.
    defocus_min_um, defocus_max_um, astigmatism_max_um, voltage_kV, cs_mm, amplitude_contrast
        The per-tomogram CTF draw (:func:`~cryoengine.physics.ctf.draw_ctf_parameters`).
    phase_flip, exposure_filtering
        CTF correction by sign; exposure filter of the tilts.
    reconstruction_method, sirt_iterations, backend
        Reconstruction (:func:`~cryoengine.physics.reconstruction.reconstruct_tilts_to_volume`).
    noise_realisations
        Unit-noise realisations `K` per particle.
    isolation_margin_vox
        Margin around each box in the cells where targets are imaged alone.
    """

    box: int
    voxel_size_A: float
    slab_shape_zyx: tuple[int, int, int]
    particles_per_tomogram: int
    crowding_fraction: float
    support_threshold: float
    support_margin_vox: int
    scheme: TiltScheme
    defocus_min_um: float
    defocus_max_um: float
    astigmatism_max_um: float
    voltage_kV: float
    cs_mm: float
    amplitude_contrast: float
    phase_flip: bool
    exposure_filtering: bool
    reconstruction_method: Literal["wbp", "sirt"]
    sirt_iterations: int
    backend: Literal["auto", "cpu", "cuda"]
    noise_realisations: int
    isolation_margin_vox: int


@dataclass(frozen=True)
class ImagedParticles:
    """The targets of one tomogram, imaged: `n` subtomograms with their ground truth.

    Attributes
    ----------
    clean
        `(n, D, D, D)` float32 noise-free subtomograms.
    noise
        `(n, K, D, D, D)` float32 unit-noise subtomograms, one per realisation.
    noise_scale
        α₁ of the tomogram (class-blind).
    signal_variance
        `(n,)` float64 variance of each target imaged alone.
    rotation, shift, position
        `(n, 3, 3)`, `(n, 3)` voxels, `(n, 3)` voxels ``(z, y, x)``: ``particle = R · reference + shift``
        centred at ``position`` in the tomogram.
    ctf
        The tomogram's CTF.
    crowders
        Crowders placed.
    reference_signal_variance, unit_noise_variance
        Variance of the reference particle imaged alone, and of the unit-noise tomograms (mean over `K`).
    """

    clean: np.ndarray
    noise: np.ndarray
    noise_scale: float
    signal_variance: np.ndarray
    rotation: np.ndarray
    shift: np.ndarray
    position: np.ndarray
    ctf: CtfParameters
    crowders: int
    reference_signal_variance: float
    unit_noise_variance: float


def simulate_particles(
    densities: Sequence[np.ndarray],
    target: int,
    reference: np.ndarray,
    settings: ImagingSettings,
    rng: np.random.Generator,
) -> ImagedParticles:
    """Image one tomogram of class ``target`` crowded by the others and cut its targets' subtomograms.

    Parameters
    ----------
    densities
        `(d, d, d)` density of each class (any odd or even edge), indexed by class.
    target
        Index of the target class in ``densities``.
    reference
        `(D, D, D)` density of the class-blind reference particle of the noise scale.
    settings
        Sample, optics, tilt, reconstruction and noise settings.
    rng
        The tomogram's generator (its draws are listed in the module docstring).

    Returns
    -------
    ImagedParticles
        The targets' subtomograms, noise and ground truth.
    """
    if not 0 <= target < len(densities):
        raise ValueError(f"target must index densities (0 to {len(densities) - 1}), got {target}")
    s = settings
    masks = [density_to_support_mask(d, s.support_threshold, s.support_margin_vox) for d in densities]
    placements = place_particles(
        s.slab_shape_zyx,
        masks,
        s.particles_per_tomogram,
        target,
        s.crowding_fraction,
        rng,
        target_box=s.box,
    )
    n_crowders = int(np.count_nonzero(placements.class_index != target))
    specimen = render_sample(s.slab_shape_zyx, densities, placements)
    log.info("placed %d particles, %d crowders", len(placements.class_index), n_crowders)

    scheme = s.scheme
    geometry = scheme.geometry(s.slab_shape_zyx)
    ctf = draw_ctf_parameters(
        rng,
        defocus_min_um=s.defocus_min_um,
        defocus_max_um=s.defocus_max_um,
        astigmatism_max_um=s.astigmatism_max_um,
        voltage_kV=s.voltage_kV,
        cs_mm=s.cs_mm,
        amplitude_contrast=s.amplitude_contrast,
    )
    signal_tilts = apply_ctf_and_exposure_to_tilts(
        project_volume_to_tilts(specimen, geometry, backend=s.backend),
        scheme,
        ctf,
        s.voxel_size_A,
        phase_flip=s.phase_flip,
        exposure_filtering=s.exposure_filtering,
    )
    log.info("%d tilts projected (%s), defocus %.2f µm", len(signal_tilts), s.backend, ctf.defocus_um)
    is_target = placements.class_index == target
    centres = placements.centre_zyx_vox[is_target]
    n = len(centres)

    def reconstruct(tilts: np.ndarray, tilt_geometry: TiltGeometry) -> np.ndarray:
        return reconstruct_tilts_to_volume(
            tilts,
            tilt_geometry,
            s.reconstruction_method,
            n_iterations=s.sirt_iterations,
            backend=s.backend,
        )

    clean, shift = extract_subtomograms(reconstruct(signal_tilts, geometry), centres, s.box)
    del signal_tilts
    realisations = s.noise_realisations
    noise = np.empty((n, realisations, s.box, s.box, s.box), dtype=np.float32)
    unit_noise_variance = 0.0
    for k in range(realisations):  # one independent detector-noise tilt series per realisation
        noise_tomogram = reconstruct(draw_detector_noise_tilts(geometry.tilts_shape, rng), geometry)
        noise[:, k] = extract_subtomograms(noise_tomogram, centres, s.box)[0]
        unit_noise_variance += float(noise_tomogram.var(dtype=np.float64)) / realisations
        del noise_tomogram
    log.info("signal and %d noise realisations reconstructed (%s)", realisations, s.reconstruction_method)

    # Each target alone, and the class-blind reference particle, imaged like the sample (noise module).
    cell = s.box + 2 * s.isolation_margin_vox
    alone_shape, alone = isolated_placements(
        np.append(np.full(n, target), len(densities)),
        np.concatenate([centres, np.zeros((1, 3))]),
        np.concatenate([placements.rotation[is_target], np.eye(3)[None]]),
        cell,
    )
    alone_geometry = scheme.geometry(alone_shape)
    alone_tilts = apply_ctf_and_exposure_to_tilts(
        project_volume_to_tilts(
            render_sample(alone_shape, [*densities, reference], alone), alone_geometry, backend=s.backend
        ),
        scheme,
        ctf,
        s.voxel_size_A,
        phase_flip=s.phase_flip,
        exposure_filtering=s.exposure_filtering,
    )
    own, _ = extract_subtomograms(reconstruct(alone_tilts, alone_geometry), alone.centre_zyx_vox, s.box)
    own_variance = own.var(axis=(1, 2, 3), dtype=np.float64)
    return ImagedParticles(
        clean=clean,
        noise=noise,
        noise_scale=reference_noise_scale(float(own_variance[-1]), unit_noise_variance),
        signal_variance=own_variance[:-1],
        rotation=placements.rotation[is_target],
        shift=shift,
        position=centres,
        ctf=ctf,
        crowders=n_crowders,
        reference_signal_variance=float(own_variance[-1]),
        unit_noise_variance=unit_noise_variance,
    )
