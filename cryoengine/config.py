"""Typed configuration of CryoEngine: the one source of truth for every key, its unit and its bounds.

``config.yaml`` is read into :class:`EngineConfig`; unknown keys are rejected. The JSON schema that
Snakemake validates the config against is generated from these models (``python -m cryoengine schema``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from cryoengine.physics.imaging import ImagingSettings, RealismSettings
    from cryoengine.physics.tilt import TiltScheme

from cryoengine.identifiers import CLASS_ID_PATTERN, PDB_ID_PATTERN, PhantomShape

__all__ = [
    "AcquisitionSettings",
    "BFactorSettings",
    "BackgroundSettings",
    "ClassSpec",
    "ConfigError",
    "DatasetSettings",
    "DefocusEstimateSettings",
    "DeformationSettings",
    "DensitySettings",
    "DetectorSettings",
    "EngineConfig",
    "ExportSettings",
    "FileSource",
    "IceSettings",
    "ImportSettings",
    "MapSource",
    "MisalignmentSettings",
    "MotionBlurSettings",
    "NoiseSettings",
    "OpticsSettings",
    "PdbSource",
    "PhantomSource",
    "ReconstructionSettings",
    "SampleSettings",
    "StructureSettings",
    "TiltSettings",
    "VarietySettings",
    "config_json_schema",
    "load_config",
    "read_config_yaml",
    "validate_config",
    "validate_import_settings",
]


#: Volume fraction at which random sequential placement of spheres jams (3D, ~0.38).
_JAMMING_FRACTION = 0.38


class ConfigError(ValueError):
    """A configuration that does not validate; the message lists each offending key on its own line."""


class _Model(BaseModel):
    """Base of every config model: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class StructureSettings(_Model):
    """Where atomic models come from: local cache, read-only mirrors, then RCSB."""

    cache_dir: Path = Field(
        Path("resources/structures"),
        description="Directory where fetched PDB entries are kept as <ID>.cif.gz (relative to the workdir).",
    )
    mirrors: list[Path] = Field(
        default_factory=list,
        description="Read-only directories searched (recursively) for <id>.cif[.gz], <id>.pdb[.gz], "
        "pdb<id>.ent[.gz], mmcif_<id>.cif ...; missing directories are skipped.",
    )
    download: bool = Field(True, description="Download missing entries from RCSB as gzipped mmCIF.")
    rcsb_url: str = Field(
        "https://files.rcsb.org/download/{pdb_id}.cif.gz",
        description="URL template of the download; {pdb_id} is replaced by the upper-case ID.",
    )
    download_timeout_s: float = Field(60.0, gt=0, le=3600, description="Network timeout of one download (s).")


class DensitySettings(_Model):
    """How an atomic model becomes an electron-scattering density map."""

    resolution_A: float | None = Field(
        None,
        gt=0,
        le=200,
        description="Low-pass cut-off (Å): the filter reaches zero at 1/resolution_A. "
        "null = Nyquist (2 × voxel_size_A). Must not be finer than Nyquist.",
    )
    oversampling: int = Field(
        4,
        ge=2,
        le=8,
        description="The density is computed on a grid this many times finer than the voxel size, "
        "then Fourier-cropped (anti-aliased) to it.",
    )
    assembly: str | None = Field(
        "1",
        description="Default biological assembly to build from each atomic model (null = asymmetric unit).",
    )


class IceSettings(_Model):
    """Amorphous ice filling the slab: the particles' contrast against it and its inelastic loss per tilt."""

    enabled: bool = Field(
        False,
        description="Contrast against ice (not vacuum) and the zero-loss attenuation exp(-t/(λ cos θ)) of "
        "the slab's thickness t in every tilt; false = particles in vacuum, no loss.",
    )
    density_g_per_cm3: float = Field(
        0.93,
        ge=0.8,
        le=1.0,
        description="Ice density (g/cm³); 0.93, inside the 0.91-0.94 of vitreous/low-density amorphous ice "
        "(Dubochet et al., Q. Rev. Biophys. 21:129, 1988).",
    )
    inelastic_mean_free_path_A: float = Field(
        3950.0,
        gt=0,
        le=100000,
        description="Inelastic mean free path of electrons in vitreous ice (Å); 3950 Å at 300 kV with an "
        "energy filter (Rice et al., J. Struct. Biol. 204:38, 2018).",
    )


class BackgroundSettings(_Model):
    """Structural background: a band-limited random field of protein for the cytoplasm's small molecules."""

    enabled: bool = Field(False, description="Add the structural background around the particles.")
    volume_fraction: float = Field(
        0.1,
        ge=0,
        lt=0.5,
        description="Fraction of the slab volume filled with background protein; 0.1, the part of the "
        "20-30 % macromolecular volume fraction of cytoplasm (Ellis, Trends Biochem. Sci. 26:597, 2001; "
        "Zimmerman & Trach, J. Mol. Biol. 222:599, 1991) that crowders at 10-20 % leave.",
    )
    correlation_length_A: float = Field(
        40.0,
        gt=0,
        le=1000,
        description="Feature size of the background (Å): band limit 1/length; 40 Å, the diameter of a "
        "30-50 kDa protein; at least 2 voxels.",
    )


class SampleSettings(_Model):
    """The virtual sample: an ice slab holding target particles of one class and crowders of the others."""

    slab_shape_zyx: tuple[int, int, int] = Field(
        (48, 192, 192),
        description="Slab (and tomogram) shape in voxels, (z, y, x); z is the ice thickness.",
    )
    tomograms_per_class: int = Field(2, ge=1, le=100000, description="Tomograms simulated for each class.")
    particles_per_tomogram: int = Field(
        12, ge=1, le=100000, description="Target particles (subtomograms) per tomogram."
    )
    crowding_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description=(
            "Fraction of the slab volume filled by crowders (support masks of the other classes); "
            "0 when left unset with a single class, an error when set with one."
        ),
    )
    crowder_classes: int = Field(
        4,
        ge=1,
        le=100000,
        description=(
            "Other classes that may crowd one tomogram, drawn from its seed; the tomogram depends on "
            "their maps only, so a changed class re-simulates only the tomograms it crowds."
        ),
    )
    support_threshold: float = Field(
        0.05, gt=0, lt=1, description="A class's support is its density above this fraction of the maximum."
    )
    support_margin_vox: int = Field(1, ge=0, le=10, description="Margin around each support (voxels).")
    touching_cores: bool = Field(
        False,
        description="Place particles by their cores (the 0.4-of-peak mass contour, no margin) so that they "
        "may touch but not overlap, which lets crowding reach the 20-30 % of cytoplasm; false = by the "
        "supports of support_threshold and support_margin_vox, kept apart.",
    )
    ice: IceSettings = Field(default_factory=IceSettings)
    background: BackgroundSettings = Field(default_factory=BackgroundSettings)
    seed: int = Field(0, ge=0, description="Base seed; each (class, tomogram) draws its own seed from it.")


class TiltSettings(_Model):
    """The single-axis tilt scheme (tilt axis y)."""

    min_angle_deg: float = Field(-60.0, gt=-90, lt=90, description="First tilt angle of the range (°).")
    max_angle_deg: float = Field(60.0, gt=-90, lt=90, description="Last tilt angle of the range (°).")
    step_deg: float = Field(3.0, gt=0, le=90, description="Angular step (°).")
    order: Literal["dose-symmetric", "sequential"] = Field(
        "dose-symmetric", description="Acquisition order: dose-symmetric (Hagen 2017) or sequential."
    )
    group_size: int = Field(2, ge=1, le=60, description="Tilts per group of the dose-symmetric scheme.")
    dose_per_tilt_e_per_A2: float = Field(3.0, ge=0, le=100, description="Exposure of each tilt (e⁻/Å²).")

    def scheme(self) -> TiltScheme:
        """Return the :class:`~cryoengine.physics.tilt.TiltScheme` these settings describe."""
        from cryoengine.physics.tilt import TiltScheme

        return TiltScheme(
            self.min_angle_deg,
            self.max_angle_deg,
            self.step_deg,
            self.order,
            self.group_size,
            self.dose_per_tilt_e_per_A2,
        )


class OpticsSettings(_Model):
    """Microscope optics and the per-tomogram defocus draw of the CTF."""

    voltage_kV: float = Field(
        300.0,
        ge=200,
        le=300,
        description="Acceleration voltage (kV); 200–300, where the critical-exposure curve is calibrated.",
    )
    cs_mm: float = Field(2.7, ge=0, le=20, description="Spherical aberration (mm).")
    amplitude_contrast: float = Field(0.07, ge=0, lt=1, description="Amplitude contrast fraction.")
    defocus_min_um: float = Field(
        2.0, ge=0, le=20, description="Smallest defocus drawn (µm, underfocus > 0)."
    )
    defocus_max_um: float = Field(5.0, ge=0, le=20, description="Largest defocus drawn (µm, underfocus > 0).")
    astigmatism_max_um: float = Field(
        0.0, ge=0, le=5, description="Largest astigmatism drawn (µm); 0 = none."
    )
    phase_flip: bool = Field(False, description="Phase-flip the tilt images (CTF correction by sign).")
    exposure_filtering: bool = Field(
        True, description="Weight each tilt by its accumulated exposure (Grant & Grigorieff 2015)."
    )


class MisalignmentSettings(_Model):
    """Residual per-tilt alignment error: shifts and in-plane rotations growing with |sin θ| (as PolNet)."""

    enabled: bool = Field(False, description="Misalign the signal tilts (the reconstruction assumes none).")
    shift_sigma_min_A: float = Field(
        2.0,
        ge=0,
        le=100,
        description="Shift σ per axis at 0° (Å); a pixel of 2-4 Å (Mastronarde & Held 2017).",
    )
    shift_sigma_max_A: float = Field(
        6.0, ge=0, le=100, description="Shift σ per axis at the largest tilt (Å)."
    )
    rotation_sigma_min_deg: float = Field(0.1, ge=0, le=10, description="In-plane rotation σ at 0° (°).")
    rotation_sigma_max_deg: float = Field(
        0.5, ge=0, le=10, description="In-plane rotation σ at the largest tilt (°)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> MisalignmentSettings:
        if self.shift_sigma_min_A > self.shift_sigma_max_A:
            raise ValueError(f"shift_sigma_min_A ({self.shift_sigma_min_A}) is above shift_sigma_max_A")
        if self.rotation_sigma_min_deg > self.rotation_sigma_max_deg:
            raise ValueError(
                f"rotation_sigma_min_deg ({self.rotation_sigma_min_deg}) is above rotation_sigma_max_deg"
            )
        return self


class MotionBlurSettings(_Model):
    """Residual beam-induced motion during each tilt's exposure: a straight track of uniform length."""

    enabled: bool = Field(False, description="Blur each signal tilt by its drawn motion track.")
    max_length_A: float = Field(
        4.0,
        ge=0,
        le=100,
        description="Largest track per tilt (Å), lengths uniform below it; 4 Å, the residual after frame "
        "alignment (Brilot et al., J. Struct. Biol. 177:630, 2012; Zheng et al., Nat. Methods 14:331, 2017).",
    )


class DefocusEstimateSettings(_Model):
    """Defocus estimation error: the CTF the phase flip assumes differs from the true one."""

    enabled: bool = Field(
        False, description="Phase-flip by the sign of an estimated CTF; acts only with optics.phase_flip."
    )
    sigma_um: float = Field(
        0.1,
        ge=0,
        le=5,
        description="σ of the defocus error (µm); 0.1 µm, a chosen order of magnitude of CTF fits on "
        "low-dose tilts (CTFFIND4, Rohou & Grigorieff, J. Struct. Biol. 192:216, 2015).",
    )


class DetectorSettings(_Model):
    """Detector MTF of a counting detector (noise passes unfiltered: NTF 1, DQE = DQE(0)·MTF²)."""

    enabled: bool = Field(False, description="Filter the signal tilts by the detector MTF.")
    pixel_A: float | None = Field(
        None,
        gt=0,
        le=100,
        description="Pixel whose square aperture sets the MTF, sinc(k_y p)·sinc(k_x p) (Å at the specimen); "
        "null = voxel_size_A, the aperture of binning by pixel averaging to the voxel (0.64 at Nyquist, "
        "the ideal counting detector of McMullan et al., Ultramicroscopy 147:156, 2014).",
    )
    psf_sigma_A: float = Field(
        0.0, ge=0, le=100, description="Gaussian point spread σ beyond the pixel aperture (Å); 0 = ideal."
    )


class AcquisitionSettings(_Model):
    """Imperfect acquisition of the signal tilts (the detector-noise tilts are left as they are)."""

    misalignment: MisalignmentSettings = Field(default_factory=MisalignmentSettings)
    motion_blur: MotionBlurSettings = Field(default_factory=MotionBlurSettings)
    defocus_estimate: DefocusEstimateSettings = Field(default_factory=DefocusEstimateSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)


class DeformationSettings(_Model):
    """Smooth, mass-preserving random deformation of every placed particle (normal-mode-like)."""

    enabled: bool = Field(False, description="Deform each particle's map by its own displacement field.")
    amplitude_A: float = Field(
        3.0,
        ge=0,
        le=50,
        description="Mass-weighted RMS displacement (Å); 3 Å, the RMSD between conformations along the few "
        "lowest normal modes (Tama & Sanejouand, Protein Eng. 14:1, 2001).",
    )
    min_wavelength_A: float = Field(
        150.0,
        gt=0,
        le=10000,
        description="Shortest wavelength of the displacement modes (Å), at most the box edge; 150 Å, "
        "domain-scale motion of a 100-300 Å complex.",
    )


class BFactorSettings(_Model):
    """Per-particle B-factor blur exp(−B k²/4), B uniform in a range."""

    enabled: bool = Field(False, description="Blur each particle's map by its own B-factor.")
    min_A2: float = Field(0.0, ge=0, le=10000, description="Smallest B-factor drawn (Å²).")
    max_A2: float = Field(
        1000.0,
        ge=0,
        le=10000,
        description="Largest B-factor drawn (Å²); 1000 Å² halves the amplitude at 21 Å (chosen: the range "
        "over which in-situ averages of one complex vary; no single source).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> BFactorSettings:
        if self.min_A2 > self.max_A2:
            raise ValueError(f"min_A2 ({self.min_A2}) is above max_A2 ({self.max_A2})")
        return self


class VarietySettings(_Model):
    """Conformational variety: no placed particle is the exact template of its class."""

    deformation: DeformationSettings = Field(default_factory=DeformationSettings)
    b_factor: BFactorSettings = Field(default_factory=BFactorSettings)


class ExportSettings(_Model):
    """Optional whole-tomogram outputs besides the subtomograms (the motif list is always written)."""

    tomograms: bool = Field(
        False,
        description="Write each tomogram's noise-free reconstruction and its label map (0 = none, 1 + class "
        "index of the tomogram's ground-truth table) as MRC next to its particle file.",
    )


class ReconstructionSettings(_Model):
    """Tomogram reconstruction of the signal and noise tilt series."""

    method: Literal["wbp", "sirt"] = Field("wbp", description="Weighted back-projection or SIRT.")
    sirt_iterations: int = Field(30, ge=1, le=1000, description="SIRT iterations (method: sirt).")
    backend: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Projector: ASTRA CUDA when a GPU is there (auto), else ASTRA CPU 2D slices."
    )


class NoiseSettings(_Model):
    """Noise: a class-blind level per tomogram (set by a reference particle, like a dose), K realisations."""

    snr_levels: list[float] = Field(
        [0.1, 0.05, 0.03, 0.01],
        min_length=1,
        description=(
            "Nominal SNRs stored as noisy volumes: var(reference signal) / var(noise) over the box; each "
            "particle's own SNR is measured and stored. The clean volume is kept besides."
        ),
    )
    realisations: int = Field(
        2,
        ge=2,
        le=16,
        description=(
            "Independent unit-noise reconstructions stored per particle (one detector-noise tilt series "
            "each), so that two noisy views of a particle can carry independent noise at any SNR."
        ),
    )
    reference_diameter_A: float | None = Field(
        None,
        gt=10,
        le=2000,
        description=(
            "Diameter of the reference particle (a seeded phantom blob at protein density, the same for "
            "every class) whose isolated signal defines the nominal SNR (Å); null = half the box edge."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="CuPy when installed (auto), else NumPy."
    )

    @field_validator("snr_levels")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(not 0 < level < math.inf for level in value):
            raise ValueError(
                f"every SNR level must be > 0 and finite (the clean volume is kept anyway), got {value}"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"SNR levels repeat: {value}")
        return value


class DatasetSettings(_Model):
    """The sharded Zarr dataset the workflow ends with (DESIGN §4)."""

    path: Path = Field(
        Path("results/dataset.zarr"), description="Where the dataset is written (workdir-relative)."
    )
    shard_size: int = Field(
        256, ge=1, le=100000, description="Subtomograms per shard file (one inner chunk per subtomogram)."
    )


class PretrainSettings(_Model):
    """The optional ``pretrain`` rule (not part of ``all``): ``python -m aptvit.fit`` on the dataset built."""

    config: Path | None = Field(
        None,
        description=(
            "Trainer YAML of python -m aptvit.fit (workdir-relative); None: the repository's "
            "configs/pretrain_gpu.yaml. Its dataset and output paths are set by the rule."
        ),
    )


class ImportSettings(_Model):
    """A user's particles → an observed dataset (``python -m cryoengine import-particles``, rule ``import``).

    Every setting of the command line; the workflow's ``import_particles`` section (optional, not part of
    ``all``: ``snakemake import_particles``).
    """

    inputs: list[Path] = Field(
        min_length=1, description="Particle files (STAR or CSV), or the copick config JSON for format copick."
    )
    format: Literal["relion5", "warp", "csv", "copick"] = Field(description="Format of the inputs.")
    tomograms: Path | None = Field(
        None,
        description=(
            "Directory of the MRC tomograms (<name>.mrc / .rec, or WarpTools' <name>_<pixel>Apx.mrc), or a "
            "RELION 5 tomograms STAR (rlnTomoReconstructedTomogram, sizes and pixel sizes); not for copick."
        ),
    )
    voxel_size_A: float = Field(10.0, gt=0, le=100, description="Voxel of the model (Å).")
    box: int = Field(32, ge=8, le=512, description="Box edge at the model's voxel (voxels).")
    output: Path = Field(Path("results/imported.zarr"), description="The observed dataset written.")
    edge: Literal["pad", "skip"] = Field(
        "pad", description="Boxes reaching beyond the tomogram: padded and flagged, or skipped."
    )
    invert_contrast: bool = Field(False, description="Protein is bright in the tomograms: multiply by -1.")
    label_column: str | None = Field(
        None, description="Column whose values are the classes (one group each); None: one 'unlabelled'."
    )
    csv_unit: Literal["pixel", "angstrom"] = Field("pixel", description="Unit of the CSV's x, y, z.")
    pixel_size_A: float | None = Field(
        None, gt=0, description="Pixel size of pixel coordinates (and tomogram voxel) when no file gives one."
    )
    copick_object: str | None = Field(None, description="copick: the pickable object whose picks to read.")
    copick_runs: list[str] | None = Field(None, description="copick: runs to read; None: all.")
    copick_voxel_spacing_A: float | None = Field(
        None, gt=0, description="copick: voxel spacing of the tomograms (Å)."
    )
    copick_tomo_type: str = Field("wbp", description="copick: reconstruction type of the tomograms.")
    shard_size: int = Field(256, ge=1, le=100000, description="Subtomograms per shard file.")

    @model_validator(mode="after")
    def _consistent(self) -> ImportSettings:
        if self.format == "copick":
            if len(self.inputs) != 1:
                raise ValueError(f"format copick takes one input, the copick config; got {len(self.inputs)}")
            if self.copick_object is None or self.copick_voxel_spacing_A is None:
                raise ValueError("format copick needs copick_object and copick_voxel_spacing_A")
        elif self.tomograms is None:
            raise ValueError(f"format {self.format} needs tomograms (a directory of MRC files or a STAR)")
        return self


def validate_import_settings(data: dict[str, Any], origin: str = "<dict>") -> ImportSettings:
    """Validate plain data into :class:`ImportSettings` (:class:`ConfigError` naming every bad key)."""
    try:
        return ImportSettings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, origin).replace("\n", " ")) from None


class _SourceBase(_Model):
    description: str = Field("", description="Free text: what this class is (kept in dataset metadata).")
    models: list[ClassSpec] = Field(
        default_factory=list,
        description="Alternative models of the class (conformations, assemblies, files, phantom seeds), "
        "each a source of the class's own kind without models of its own; every placed particle of the "
        "class draws one (the class's own source is model 0); each is scaled to its own mass.",
    )
    model_weights: list[float] | None = Field(
        None,
        description="Relative frequency of each model, model 0 (the class's own source) first: one value "
        "> 0 per model (1 + len(models)); null = equally often.",
    )

    @model_validator(mode="after")
    def _alternatives(self) -> _SourceBase:
        kind = getattr(self, "kind", None)
        for m, alternative in enumerate(self.models, start=1):
            if alternative.kind != kind:
                raise ValueError(f"model {m} is of kind {alternative.kind!r}, the class is {kind!r}")
            if alternative.models or alternative.model_weights is not None:
                raise ValueError(f"model {m} gives models or model_weights of its own; list them all here")
            if isinstance(alternative, PdbSource) and alternative.optional:
                raise ValueError(f"model {m} is optional; only a whole class may be optional")
        weights = self.model_weights
        if weights is not None and len(weights) != 1 + len(self.models):
            raise ValueError(
                f"model_weights has {len(weights)} values for {1 + len(self.models)} models (the class's "
                "own source first)"
            )
        if weights is not None and not all(0 < w < math.inf for w in weights):
            raise ValueError(f"model_weights must be > 0 and finite, got {weights}")
        return self

    def model_sources(self) -> list[_SourceBase]:
        """Every model of the class: its own source (model 0, without the alternatives), then ``models``."""
        own = self.model_copy(update={"models": [], "model_weights": None})
        return [own, *self.models]

    def model_probabilities(self) -> list[float]:
        """Probability of each model (``model_weights`` normalised; equal without them)."""
        weights = self.model_weights or [1.0] * (1 + len(self.models))
        return [w / sum(weights) for w in weights]


class PdbSource(_SourceBase):
    """A class built from a PDB entry (cache → mirrors → RCSB)."""

    kind: Literal["pdb"]
    pdb_id: str = Field(pattern=PDB_ID_PATTERN, description="Four-character PDB ID, e.g. 1OEL.")
    assembly: str | None = Field(
        "default", description="Assembly name; 'default' = density.assembly; null = asymmetric unit."
    )
    chains: list[str] | None = Field(None, description="Keep only these chains (after assembly expansion).")
    optional: bool = Field(
        False,
        description="If the entry cannot be obtained, skip the class with a warning instead of failing.",
    )

    @field_validator("pdb_id")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class FileSource(_SourceBase):
    """A class built from a local PDB or mmCIF file (optionally gzipped)."""

    kind: Literal["file"]
    path: Path = Field(
        description="Path of the .pdb/.cif/.ent file, optionally .gz (relative to the workdir)."
    )
    assembly: str | None = Field(
        "default", description="Assembly name; 'default' = density.assembly; null = asymmetric unit."
    )
    chains: list[str] | None = Field(None, description="Keep only these chains (after assembly expansion).")


class MapSource(_SourceBase):
    """A class whose density is an existing map (MRC), resampled to the configured voxel size."""

    kind: Literal["map"]
    path: Path = Field(description="Path of the .mrc/.map file (relative to the workdir).")
    molecular_weight_kDa: float | None = Field(
        None,
        gt=0,
        le=1e6,
        description=(
            "Mass of the molecule (kDa): the map is rescaled to the scattering potential of this mass, "
            "the scale of the atomic classes; null = from the volume inside 0.4 of the peak (±20 %)."
        ),
    )


class PhantomSource(_SourceBase):
    """A procedural pseudo-atomic assembly, so that nothing needs the network or shared data."""

    kind: Literal["phantom"]
    shape: PhantomShape = Field(
        description="ring: Cn ring of subunits; helix: helical segment; cage: hollow shell; "
        "rod: stacked discs; blob: irregular union of ellipsoids."
    )
    diameter_A: float = Field(180.0, gt=10, le=2000, description="Overall size of the assembly (Å).")
    subunits: int = Field(7, ge=1, le=200, description="Number of subunits (ring order, helix units, ...).")
    seed: int = Field(0, ge=0, description="Seed of the random pseudo-atom positions.")


ClassSpec = Annotated[PdbSource | FileSource | MapSource | PhantomSource, Field(discriminator="kind")]
for _source in (PdbSource, FileSource, MapSource, PhantomSource):
    _source.model_rebuild()


class EngineConfig(_Model):
    """The whole CryoEngine configuration (``config.yaml``)."""

    voxel_size_A: float = Field(10.0, gt=0, le=100, description="Voxel (and detector pixel) size (Å).")
    box: int = Field(32, ge=8, le=512, description="Edge of the cubic subtomogram and class map (voxels).")
    structures: StructureSettings = Field(default_factory=StructureSettings)
    density: DensitySettings = Field(default_factory=DensitySettings)
    sample: SampleSettings = Field(default_factory=SampleSettings)
    tilt: TiltSettings = Field(default_factory=TiltSettings)
    optics: OpticsSettings = Field(default_factory=OpticsSettings)
    acquisition: AcquisitionSettings = Field(default_factory=AcquisitionSettings)
    variety: VarietySettings = Field(default_factory=VarietySettings)
    reconstruction: ReconstructionSettings = Field(default_factory=ReconstructionSettings)
    noise: NoiseSettings = Field(default_factory=NoiseSettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    pretrain: PretrainSettings = Field(default_factory=PretrainSettings)
    import_particles: ImportSettings | None = Field(
        None, description="Optional: a user's particles imported by rule import_particles (not in all)."
    )
    classes: dict[str, ClassSpec] = Field(
        min_length=1, description="Class id (letters, digits, _ . -) → where its structure comes from."
    )

    @field_validator("classes")
    @classmethod
    def _class_ids(cls, value: dict[str, Any]) -> dict[str, Any]:
        for class_id in value:
            if not re.match(CLASS_ID_PATTERN, class_id):
                raise ValueError(f"class id {class_id!r} must match {CLASS_ID_PATTERN}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EngineConfig:
        if self.tilt.min_angle_deg > self.tilt.max_angle_deg:
            raise ValueError(
                f"tilt.min_angle_deg ({self.tilt.min_angle_deg}) is above "
                f"tilt.max_angle_deg ({self.tilt.max_angle_deg})"
            )
        if self.optics.defocus_min_um > self.optics.defocus_max_um:
            raise ValueError(
                f"optics.defocus_min_um ({self.optics.defocus_min_um}) is above optics.defocus_max_um "
                f"({self.optics.defocus_max_um})"
            )
        if (self.noise.reference_diameter_A or 0) > self.box * self.voxel_size_A:
            raise ValueError(
                f"noise.reference_diameter_A ({self.noise.reference_diameter_A} Å) exceeds the box "
                f"({self.box} × {self.voxel_size_A} Å)"
            )
        if len(self.classes) == 1 and "crowding_fraction" not in self.sample.model_fields_set:
            self.sample.crowding_fraction = 0.0  # the default; one class has nothing to crowd with
        if len(self.classes) == 1 and self.sample.crowding_fraction > 0:
            raise ValueError(
                f"sample.crowding_fraction is {self.sample.crowding_fraction} but there is only one class "
                f"({next(iter(self.classes))}): crowders are other classes; set it to 0 or add classes"
            )
        nyquist_A = 2.0 * self.voxel_size_A
        if self.density.resolution_A is not None and self.density.resolution_A < nyquist_A * (1 - 1e-9):
            raise ValueError(
                f"density.resolution_A = {self.density.resolution_A} Å is finer than Nyquist ({nyquist_A} Å "
                f"at voxel_size_A = {self.voxel_size_A})"
            )
        self._check_targets_fit()
        self._check_realism()
        if min(self.sample.slab_shape_zyx) < self.box + 2:
            raise ValueError(
                f"sample.slab_shape_zyx {list(self.sample.slab_shape_zyx)} must exceed the box ({self.box}) "
                "by at least 2 voxels on every axis"
            )
        return self

    def _check_targets_fit(self) -> None:
        """Refuse more targets than a slab can hold, estimated from the classes whose size the config gives.

        Random sequential placement of spheres jams near 38 % of the volume, so targets whose circumscribed
        spheres (phantom ``diameter_A``) plus the crowders' share fill more than that cannot be placed.
        Classes read from files have no size before their density is built and are not estimated here.
        """
        slab_vox = math.prod(self.sample.slab_shape_zyx)
        for class_id, spec in self.classes.items():
            if not isinstance(spec, PhantomSource):
                continue
            radius_vox = 0.5 * spec.diameter_A / self.voxel_size_A
            targets_vox = self.sample.particles_per_tomogram * 4.0 / 3.0 * math.pi * radius_vox**3
            filled = targets_vox / slab_vox + self.sample.crowding_fraction
            if filled > _JAMMING_FRACTION:
                raise ValueError(
                    f"sample.particles_per_tomogram = {self.sample.particles_per_tomogram} targets of class "
                    f"{class_id} ({spec.diameter_A:g} Å across) and crowding_fraction "
                    f"{self.sample.crowding_fraction} would fill {filled:.0%} of the slab "
                    f"{list(self.sample.slab_shape_zyx)}; random placement jams near "
                    f"{_JAMMING_FRACTION:.0%}: fewer particles or a larger slab"
                )

    def _check_realism(self) -> None:
        """Refuse realism settings the physics cannot honour at this box and voxel size."""
        background = self.sample.background
        if background.enabled and background.correlation_length_A < 2 * self.voxel_size_A:
            raise ValueError(
                f"sample.background.correlation_length_A ({background.correlation_length_A} Å) must be at "
                f"least 2 voxels ({2 * self.voxel_size_A:g} Å)"
            )
        deformation = self.variety.deformation
        if deformation.enabled and deformation.min_wavelength_A > self.box * self.voxel_size_A:
            raise ValueError(
                f"variety.deformation.min_wavelength_A ({deformation.min_wavelength_A} Å) exceeds the box "
                f"({self.box} × {self.voxel_size_A} Å)"
            )

    def realism_settings(self, keep_tomogram: bool | None = None) -> RealismSettings:
        """Return the :class:`~cryoengine.physics.imaging.RealismSettings` of the enabled effects (rest off).

        Parameters
        ----------
        keep_tomogram
            Overrides ``export.tomograms`` (whether the chain returns the whole tomogram).
        """
        from cryoengine.physics.imaging import RealismSettings

        ice, background = self.sample.ice, self.sample.background
        acquisition, variety = self.acquisition, self.variety
        misalignment, detector = acquisition.misalignment, acquisition.detector
        return RealismSettings(
            ice_density_g_per_cm3=ice.density_g_per_cm3 if ice.enabled else None,
            inelastic_mean_free_path_A=ice.inelastic_mean_free_path_A if ice.enabled else None,
            background_fraction=background.volume_fraction if background.enabled else 0.0,
            background_correlation_length_A=background.correlation_length_A,
            touching_cores=self.sample.touching_cores,
            deformation_amplitude_A=variety.deformation.amplitude_A if variety.deformation.enabled else 0.0,
            deformation_min_wavelength_A=variety.deformation.min_wavelength_A,
            b_factor_min_A2=variety.b_factor.min_A2 if variety.b_factor.enabled else 0.0,
            b_factor_max_A2=variety.b_factor.max_A2 if variety.b_factor.enabled else 0.0,
            misalignment_shift_sigma_A=(
                (misalignment.shift_sigma_min_A, misalignment.shift_sigma_max_A)
                if misalignment.enabled
                else (0.0, 0.0)
            ),
            misalignment_rotation_sigma_deg=(
                (misalignment.rotation_sigma_min_deg, misalignment.rotation_sigma_max_deg)
                if misalignment.enabled
                else (0.0, 0.0)
            ),
            motion_blur_max_A=acquisition.motion_blur.max_length_A
            if acquisition.motion_blur.enabled
            else 0.0,
            defocus_error_sigma_um=(
                acquisition.defocus_estimate.sigma_um if acquisition.defocus_estimate.enabled else 0.0
            ),
            detector_pixel_A=(detector.pixel_A or self.voxel_size_A) if detector.enabled else None,
            detector_psf_sigma_A=detector.psf_sigma_A,
            keep_tomogram=self.export.tomograms if keep_tomogram is None else keep_tomogram,
        )

    def resolution_A(self) -> float:
        """Effective low-pass resolution (Å): the configured one (never finer than Nyquist), or Nyquist."""
        return self.density.resolution_A or 2.0 * self.voxel_size_A

    def reference_diameter_A(self) -> float:
        """Diameter of the noise reference particle (Å): the configured one, or half the box edge."""
        return self.noise.reference_diameter_A or 0.5 * self.box * self.voxel_size_A

    def imaging_settings(self, isolation_margin_vox: int) -> ImagingSettings:
        """Return the settings of :func:`~cryoengine.physics.imaging.simulate_particles` this config sets."""
        from cryoengine.physics.imaging import ImagingSettings

        sample, optics, recon = self.sample, self.optics, self.reconstruction
        return ImagingSettings(
            box=self.box,
            voxel_size_A=self.voxel_size_A,
            slab_shape_zyx=sample.slab_shape_zyx,
            particles_per_tomogram=sample.particles_per_tomogram,
            crowding_fraction=sample.crowding_fraction,
            support_threshold=sample.support_threshold,
            support_margin_vox=sample.support_margin_vox,
            scheme=self.tilt.scheme(),
            defocus_min_um=optics.defocus_min_um,
            defocus_max_um=optics.defocus_max_um,
            astigmatism_max_um=optics.astigmatism_max_um,
            voltage_kV=optics.voltage_kV,
            cs_mm=optics.cs_mm,
            amplitude_contrast=optics.amplitude_contrast,
            phase_flip=optics.phase_flip,
            exposure_filtering=optics.exposure_filtering,
            reconstruction_method=recon.method,
            sirt_iterations=recon.sirt_iterations,
            backend=recon.backend,
            noise_realisations=self.noise.realisations,
            isolation_margin_vox=isolation_margin_vox,
            realism=self.realism_settings(),
        )

    def assembly_of(self, spec: PdbSource | FileSource) -> str | None:
        """Assembly to build for a class: its own setting, or ``density.assembly`` for ``'default'``."""
        return self.density.assembly if spec.assembly == "default" else spec.assembly


def _format_errors(error: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key")
        elif isinstance(item.get("input"), dict):  # a whole section: its message says what is wrong
            lines.append(f"  {where}: {item['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {where}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def validate_config(data: dict[str, Any], origin: str = "<dict>") -> EngineConfig:
    """Validate plain data (e.g. Snakemake's ``config``) into an :class:`EngineConfig`.

    Raises
    ------
    ConfigError
        Naming every offending key, with unknown keys reported as such.
    """
    try:
        return EngineConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, origin)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that refuses a mapping with a repeated key (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1}, again on line "
                f"{key_node.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_config_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file as plain data, refusing repeated keys at any level.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, repeats a key, or is not a mapping.
    """
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a YAML mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path) -> EngineConfig:
    """Read and validate a YAML config file.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML mapping, or does not validate.
    """
    path = Path(path)
    data = read_config_yaml(path)
    return validate_config(data, origin=str(path))


def config_json_schema() -> str:
    """JSON schema of :class:`EngineConfig` as Snakemake's ``validate`` consumes it (stable text)."""
    schema = EngineConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = (
        "CryoEngine configuration. Generated from cryoengine/config.py by `python -m cryoengine schema`; "
        "do not edit by hand."
    )
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
