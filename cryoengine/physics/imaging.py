"""The imaging chain of one tomogram: sample → tilt series → tomogram → subtomograms with ground truth.

A slab is filled with ``particles_per_tomogram`` targets and crowders (random orientation and position,
non-overlapping), projected over the tilt scheme, modulated by a drawn CTF and the exposure filter, and
reconstructed; ``noise_realisations`` independent unit-variance detector-noise tilt series are
reconstructed the same way. Subtomograms are cut around each target from all of them. Each target alone
and the class-blind reference particle are imaged once more, each in its own cell, for the noise scale α₁
and the particles' own signal variance (:mod:`cryoengine.physics.noise`).

Realism (issue 13, :class:`RealismSettings`, every effect off by default): each placed particle may be
its own variant of its class's map (a smooth mass-preserving deformation, then a B-factor blur), rendered
one by one; a band-limited structural background fills part of the free volume after rendering (kept out
of the particles' supports); the sample's potential becomes its contrast against amorphous ice; and the
signal tilts go, after the CTF (with a defocus *estimate* when phase flipping), through the slab's
inelastic loss, beam-induced motion blur, the detector MTF and per-tilt misalignment, in that order
(:mod:`cryoengine.physics.acquisition`). The detector-noise tilts are unchanged. The targets imaged alone
get the same variants, ice, thickness, blur and MTF, but no misalignment (its rotations turn about the
sample's detector centre, which the cells do not share); the class-blind reference particle gets the ice
and the thickness only, so the nominal SNR is the SNR of the reference in this ice imaged by a perfect
acquisition, and the acquisition's losses show in each particle's measured SNR.

Random draws, in this order, from one generator: placements, the CTF, then one detector-noise tilt series
per realisation. The realism effects draw from child streams of that generator (``rng.spawn``, one per
effect, after those draws and in the fixed order deformation, B-factor, background, defocus estimate,
motion blur, misalignment), so turning effects off changes none of the idealised chain's draws, and
ablating one effect leaves the others' draws as they were.

Model variety: a class may come with several models (:class:`ClassModels`, e.g. conformations or
assemblies of one complex); every placed particle of such a class, target or crowder, draws its model
from one more child stream, spawned after the effects' streams and only when some class has several
models, so a sample without alternatives draws exactly as before. A class is placed by the union of its
models' supports, and each particle's variant starts from its drawn model's map.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cryoengine.physics.acquisition import (
    apply_detector_mtf_to_tilts,
    apply_motion_blur_to_tilts,
    draw_defocus_estimate,
    draw_motion_blur,
    draw_tilt_misalignment,
    misalign_tilts,
)
from cryoengine.physics.background import draw_structural_background
from cryoengine.physics.ctf import CtfParameters, draw_ctf_parameters
from cryoengine.physics.deformation import (
    apply_b_factor,
    deform_density,
    draw_b_factor,
    draw_displacement_field,
)
from cryoengine.physics.density import MASS_CONTOUR_FRACTION
from cryoengine.physics.extraction import extract_subtomograms
from cryoengine.physics.ice import (
    apply_thickness_to_tilts,
    contrast_against_ice,
    ice_potential_per_A2,
    zero_loss_fraction,
)
from cryoengine.physics.noise import reference_noise_scale
from cryoengine.physics.placement import (
    ROTATED_SUPPORT_LEVEL,
    Placements,
    density_to_support_mask,
    isolated_placements,
    place_particles,
    render_label_map,
    render_sample,
)
from cryoengine.physics.projector import TiltGeometry, project_volume_to_tilts
from cryoengine.physics.reconstruction import reconstruct_tilts_to_volume
from cryoengine.physics.tilt import TiltScheme, apply_ctf_and_exposure_to_tilts, draw_detector_noise_tilts

__all__ = [
    "ClassModels",
    "ImagedParticles",
    "ImagingSettings",
    "RealismSettings",
    "draw_particle_models",
    "simulate_particles",
]

log = logging.getLogger(__name__)


#: Child streams of the tomogram's generator, one per realism effect, in this order (module docstring).
_EFFECT_STREAMS = ("deformation", "b_factor", "background", "defocus_estimate", "motion_blur", "misalignment")
# Touching cores: a rotated core mask occupies a voxel where its interpolated 0/1 mask exceeds one half
# (place_particles), so cores may touch but not overlap.
_CORE_SUPPORT_LEVEL = 0.5


@dataclass(frozen=True)
class RealismSettings:
    """The realism effects of the imaging chain (issue 13); every default is off: the idealised chain.

    Attributes
    ----------
    ice_density_g_per_cm3
        Amorphous ice density (g/cm³): the sample's contrast against ice
        (:func:`~cryoengine.physics.ice.contrast_against_ice`); None = vacuum.
    inelastic_mean_free_path_A
        Inelastic mean free path (Å): each signal tilt weighted by the zero-loss fraction of the slab
        (:func:`~cryoengine.physics.ice.zero_loss_fraction`, thickness ``nz × voxel_size_A``); None = none.
    background_fraction, background_correlation_length_A
        Volume fraction and feature size (Å) of the structural background
        (:func:`~cryoengine.physics.background.draw_structural_background`); 0 = none.
    touching_cores
        Place particles by their cores (the :data:`~cryoengine.physics.density.MASS_CONTOUR_FRACTION`
        contour, no margin, level 0.5), so that they may touch; False = the support masks of
        ``support_threshold`` and ``support_margin_vox``.
    deformation_amplitude_A, deformation_min_wavelength_A
        Mass-weighted RMS displacement (Å) and shortest wavelength (Å) of each particle's smooth
        deformation (:func:`~cryoengine.physics.deformation.draw_displacement_field`); 0 = none.
    b_factor_min_A2, b_factor_max_A2
        Range of each particle's B-factor (Å²); both 0 = none.
    misalignment_shift_sigma_A, misalignment_rotation_sigma_deg
        ``(at 0°, at the largest tilt)`` σ of each tilt's shift (Å) and in-plane rotation (°)
        (:func:`~cryoengine.physics.acquisition.draw_tilt_misalignment`); all 0 = none.
    motion_blur_max_A
        Largest residual motion track per tilt (Å); 0 = none.
    defocus_error_sigma_um
        σ of the defocus estimate the phase flip uses (µm); acts only with ``phase_flip``; 0 = exact.
    detector_pixel_A, detector_psf_sigma_A
        Physical detector pixel at the specimen (Å) and Gaussian point spread (Å) of the MTF; None = none.
    keep_tomogram
        Return the reconstructed sample and its label map as well (whole-tomogram export).
    """

    ice_density_g_per_cm3: float | None = None
    inelastic_mean_free_path_A: float | None = None
    background_fraction: float = 0.0
    background_correlation_length_A: float = 40.0
    touching_cores: bool = False
    deformation_amplitude_A: float = 0.0
    deformation_min_wavelength_A: float = 150.0
    b_factor_min_A2: float = 0.0
    b_factor_max_A2: float = 0.0
    misalignment_shift_sigma_A: tuple[float, float] = (0.0, 0.0)
    misalignment_rotation_sigma_deg: tuple[float, float] = (0.0, 0.0)
    motion_blur_max_A: float = 0.0
    defocus_error_sigma_um: float = 0.0
    detector_pixel_A: float | None = None
    detector_psf_sigma_A: float = 0.0
    keep_tomogram: bool = False

    @property
    def varies_particles(self) -> bool:
        """Whether each particle gets its own map (deformation or B-factor)."""
        return self.deformation_amplitude_A > 0 or self.b_factor_max_A2 > 0

    @property
    def misaligns(self) -> bool:
        """Whether the tilts are misaligned."""
        return max(*self.misalignment_shift_sigma_A, *self.misalignment_rotation_sigma_deg) > 0


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
    realism
        The realism effects (all off by default).
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
    realism: RealismSettings = RealismSettings()


@dataclass(frozen=True)
class ClassModels:
    """The alternative models of one class: each placed particle of the class draws one.

    Attributes
    ----------
    maps
        `(d, d, d)` density of each model, model 0 (the class's own density) first; at least two.
    probabilities
        Probability of each model (one per map, > 0, summing to 1).
    """

    maps: Sequence[np.ndarray]
    probabilities: Sequence[float]

    def __post_init__(self) -> None:
        p = np.asarray(self.probabilities, dtype=np.float64)
        if len(self.maps) < 2 or p.shape != (len(self.maps),):
            raise ValueError(
                f"ClassModels needs at least two maps and one probability each, got {len(self.maps)} maps "
                f"and {p.shape[0] if p.ndim == 1 else p.shape} probabilities"
            )
        if not (np.all(p > 0) and np.isclose(p.sum(), 1.0)):
            raise ValueError(f"model probabilities must be > 0 and sum to 1, got {list(p)}")


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
    placements
        Every particle placed, targets first, then crowders (the ground-truth motif list).
    b_factor_A2
        `(M,)` B-factor of each placed particle (Å², 0 without variety).
    model_index
        `(M,)` model drawn by each placed particle (0 for classes of one model).
    tomogram, label_map
        With ``realism.keep_tomogram``: the `(nz, ny, nx)` float32 reconstructed sample and int16 label map
        (0 = none, ``1 + class index`` inside a particle's support); else None.
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
    placements: Placements
    b_factor_A2: np.ndarray
    model_index: np.ndarray
    tomogram: np.ndarray | None = None
    label_map: np.ndarray | None = None


def simulate_particles(
    densities: Sequence[np.ndarray],
    target: int,
    reference: np.ndarray,
    settings: ImagingSettings,
    rng: np.random.Generator,
    models: Mapping[int, ClassModels] | None = None,
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
    models
        Class index → its alternative models (maps on the scale of ``densities``, model 0 being
        ``densities[k]``); classes left out have one model.

    Returns
    -------
    ImagedParticles
        The targets' subtomograms, noise and ground truth.
    """
    if not 0 <= target < len(densities):
        raise ValueError(f"target must index densities (0 to {len(densities) - 1}), got {target}")
    s, effects = settings, settings.realism
    models = dict(models or {})
    if not set(models) <= set(range(len(densities))):
        raise ValueError(
            f"models must be keyed by class indices 0 to {len(densities) - 1}, got {sorted(models)}"
        )

    def support(volume: np.ndarray) -> np.ndarray:
        if effects.touching_cores:
            return density_to_support_mask(volume, MASS_CONTOUR_FRACTION, 0)
        return density_to_support_mask(volume, s.support_threshold, s.support_margin_vox)

    masks = [
        np.logical_or.reduce([support(m) for m in models[k].maps]) if k in models else support(d)
        for k, d in enumerate(densities)
    ]
    placements = place_particles(
        s.slab_shape_zyx,
        masks,
        s.particles_per_tomogram,
        target,
        s.crowding_fraction,
        rng,
        target_box=s.box,
        rotated_support_level=_CORE_SUPPORT_LEVEL if effects.touching_cores else ROTATED_SUPPORT_LEVEL,
    )
    n_crowders = int(np.count_nonzero(placements.class_index != target))
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

    realisations = s.noise_realisations
    noise = np.empty((n, realisations, s.box, s.box, s.box), dtype=np.float32)
    unit_noise_variance = 0.0
    for k in range(realisations):  # one independent detector-noise tilt series per realisation
        noise_tomogram = reconstruct(draw_detector_noise_tilts(geometry.tilts_shape, rng), geometry)
        noise[:, k] = extract_subtomograms(noise_tomogram, centres, s.box)[0]
        unit_noise_variance += float(noise_tomogram.var(dtype=np.float64)) / realisations
        del noise_tomogram
    log.info("%d noise realisations reconstructed (%s)", realisations, s.reconstruction_method)

    streams = dict(zip(_EFFECT_STREAMS, rng.spawn(len(_EFFECT_STREAMS)), strict=True))
    model_index = draw_particle_models(placements.class_index, models, rng.spawn(1)[0]) if models else None
    variants, b_factors = _particle_variants(
        densities, placements, s.voxel_size_A, effects, streams, models, model_index
    )
    if variants is None:
        specimen = render_sample(s.slab_shape_zyx, densities, placements)
    else:
        specimen = render_sample(s.slab_shape_zyx, variants, _one_class_per_particle(placements))
    labels = render_label_map(s.slab_shape_zyx, masks, placements) if effects.keep_tomogram else None
    if effects.background_fraction > 0:
        occupied = (
            labels > 0 if labels is not None else render_label_map(s.slab_shape_zyx, masks, placements) > 0
        )
        specimen += draw_structural_background(
            s.slab_shape_zyx,
            s.voxel_size_A,
            streams["background"],
            volume_fraction=effects.background_fraction,
            correlation_length_A=effects.background_correlation_length_A,
            excluded_zyx=occupied,
        )
    specimen = _against_ice(specimen, effects)
    assumed_ctf = None
    if s.phase_flip and effects.defocus_error_sigma_um > 0:
        assumed_ctf = draw_defocus_estimate(ctf, streams["defocus_estimate"], effects.defocus_error_sigma_um)
    n_tilts = scheme.tilt_angles_deg.size
    motion = (
        draw_motion_blur(n_tilts, streams["motion_blur"], effects.motion_blur_max_A)
        if effects.motion_blur_max_A > 0
        else None
    )
    misalignment = (
        draw_tilt_misalignment(
            scheme.tilt_angles_deg,
            streams["misalignment"],
            shift_sigma_min_A=effects.misalignment_shift_sigma_A[0],
            shift_sigma_max_A=effects.misalignment_shift_sigma_A[1],
            rotation_sigma_min_deg=effects.misalignment_rotation_sigma_deg[0],
            rotation_sigma_max_deg=effects.misalignment_rotation_sigma_deg[1],
        )
        if effects.misaligns
        else None
    )

    def image(volume: np.ndarray, volume_geometry: TiltGeometry) -> np.ndarray:
        """CTF × exposure (with the defocus estimate), then the slab's inelastic loss."""
        tilts = apply_ctf_and_exposure_to_tilts(
            project_volume_to_tilts(volume, volume_geometry, backend=s.backend),
            scheme,
            ctf,
            s.voxel_size_A,
            phase_flip=s.phase_flip,
            exposure_filtering=s.exposure_filtering,
            assumed_ctf=assumed_ctf,
        )
        if effects.inelastic_mean_free_path_A is not None:
            thickness_A = s.slab_shape_zyx[0] * s.voxel_size_A
            loss = zero_loss_fraction(scheme.tilt_angles_deg, thickness_A, effects.inelastic_mean_free_path_A)
            tilts = apply_thickness_to_tilts(tilts, loss)
        return tilts

    def record(tilts: np.ndarray) -> np.ndarray:
        """Motion blur during the exposure, then the detector MTF."""
        if motion is not None:
            tilts = apply_motion_blur_to_tilts(tilts, motion, s.voxel_size_A)
        if effects.detector_pixel_A is not None:
            tilts = apply_detector_mtf_to_tilts(
                tilts, s.voxel_size_A, effects.detector_pixel_A, effects.detector_psf_sigma_A
            )
        return tilts

    signal_tilts = record(image(specimen, geometry))
    del specimen
    if misalignment is not None:
        signal_tilts = misalign_tilts(signal_tilts, *misalignment, s.voxel_size_A)
    log.info("%d tilts projected (%s), defocus %.2f µm", len(signal_tilts), s.backend, ctf.defocus_um)
    tomogram = reconstruct(signal_tilts, geometry)
    del signal_tilts
    clean, shift = extract_subtomograms(tomogram, centres, s.box)

    # Each target alone, and the class-blind reference particle, imaged like the sample (noise module):
    # the targets with their own variants, ice, thickness, blur and MTF; the reference with ice and
    # thickness only (module docstring).
    cell = s.box + 2 * s.isolation_margin_vox
    maps = list(densities) if variants is None else variants
    rows = np.full(n, target) if variants is None else np.flatnonzero(is_target)
    alone_shape, alone = isolated_placements(
        np.append(rows, len(maps)),
        np.concatenate([centres, np.zeros((1, 3))]),
        np.concatenate([placements.rotation[is_target], np.eye(3)[None]]),
        cell,
    )
    alone_geometry = scheme.geometry(alone_shape)
    alone_tilts = image(
        _against_ice(render_sample(alone_shape, [*maps, reference], alone), effects), alone_geometry
    )
    own, _ = extract_subtomograms(reconstruct(alone_tilts, alone_geometry), alone.centre_zyx_vox, s.box)
    own_variance = own.var(axis=(1, 2, 3), dtype=np.float64)
    if motion is not None or effects.detector_pixel_A is not None:
        recorded = reconstruct(record(alone_tilts), alone_geometry)
        own, _ = extract_subtomograms(recorded, alone.centre_zyx_vox[:-1], s.box)
        own_variance[:-1] = own.var(axis=(1, 2, 3), dtype=np.float64)
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
        placements=placements,
        b_factor_A2=b_factors,
        model_index=np.zeros(len(placements), dtype=np.int64) if model_index is None else model_index,
        tomogram=tomogram if effects.keep_tomogram else None,
        label_map=labels,
    )


def draw_particle_models(
    class_index: np.ndarray, models: Mapping[int, ClassModels], rng: np.random.Generator
) -> np.ndarray:
    """Draw the model of each placed particle, one draw per particle of a class with several models.

    Parameters
    ----------
    class_index
        `(M,)` class index of each placed particle.
    models
        Class index → its models; particles of the classes left out keep model 0 and draw nothing.
    rng
        The model stream (module docstring); drawn in placement order.

    Returns
    -------
    numpy.ndarray
        `(M,)` int64 model index of each particle.
    """
    drawn = np.zeros(len(class_index), dtype=np.int64)
    for i, k in enumerate(class_index):
        if int(k) in models:
            probabilities = np.asarray(models[int(k)].probabilities, dtype=np.float64)
            drawn[i] = rng.choice(len(probabilities), p=probabilities / probabilities.sum())
    return drawn


def _particle_variants(
    densities: Sequence[np.ndarray],
    placements: Placements,
    voxel_size_A: float,
    effects: RealismSettings,
    streams: dict[str, np.random.Generator],
    models: Mapping[int, ClassModels],
    model_index: np.ndarray | None,
) -> tuple[list[np.ndarray] | None, np.ndarray]:
    """Each placed particle's own map (its drawn model, deformed, then blurred by its B-factor), or None.

    None without variety and without drawn models. Returns the `(M,)` B-factors (Å²) too, 0 where none is
    drawn. Draws per particle, in placement order.
    """
    b_factors = np.zeros(len(placements))
    if not effects.varies_particles and model_index is None:
        return None, b_factors
    variants = []
    for i, k in enumerate(placements.class_index):
        source = densities[k] if model_index is None or k not in models else models[k].maps[model_index[i]]
        volume = np.asarray(source, dtype=np.float32)
        if effects.deformation_amplitude_A > 0:
            field = draw_displacement_field(
                volume.shape,
                voxel_size_A,
                streams["deformation"],
                amplitude_A=effects.deformation_amplitude_A,
                min_wavelength_A=effects.deformation_min_wavelength_A,
                weight_zyx=np.clip(volume, 0.0, None),
            )
            volume = deform_density(volume, field, voxel_size_A)
        if effects.b_factor_max_A2 > 0:
            b_factors[i] = draw_b_factor(
                streams["b_factor"], effects.b_factor_min_A2, effects.b_factor_max_A2
            )
            volume = apply_b_factor(volume, voxel_size_A, b_factors[i])
        variants.append(volume)
    return variants, b_factors


def _one_class_per_particle(placements: Placements) -> Placements:
    """Renumber the particles so that particle ``i`` is rendered from the ``i``-th map (its variant)."""
    return Placements(np.arange(len(placements)), placements.centre_zyx_vox, placements.rotation)


def _against_ice(volume_zyx: np.ndarray, effects: RealismSettings) -> np.ndarray:
    """Return the contrast against ice of the configured density (the volume itself in vacuum)."""
    if effects.ice_density_g_per_cm3 is None:
        return volume_zyx
    return contrast_against_ice(volume_zyx, ice_potential_per_A2(effects.ice_density_g_per_cm3))
