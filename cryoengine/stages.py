"""File-to-file stages of CryoEngine: one function per Snakemake rule, also called by the CLI and the tests.

Each stage takes the validated :class:`~cryoengine.config.EngineConfig`, reads its inputs, calls the pure
physics functions and writes its outputs atomically with provenance.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from cryoengine.config import EngineConfig, FileSource, ImportSettings, MapSource, PdbSource, PhantomSource
from cryoengine.formats.atomic_write import atomic_path
from cryoengine.formats.copick_layout import CopickProject
from cryoengine.formats.motif_list import write_motif_list
from cryoengine.formats.mrc import (
    TomogramFileError,
    mrc_tomogram_geometry,
    open_mrc_tomogram,
    read_volume,
    write_volume,
)
from cryoengine.formats.particle_tables import (
    ParticleTable,
    ParticleTableError,
    TomogramGeometry,
    read_csv_particles,
    read_relion5_particles,
    read_relion_tomogram_files,
    read_relion_tomograms,
    read_tomogram_names,
    read_warp_particles,
)
from cryoengine.formats.provenance import provenance
from cryoengine.identifiers import CLASS_ID_PATTERN
from cryoengine.physics.box_cutting import ParticleOutsideTomogramError, cut_subtomograms
from cryoengine.physics.density import atoms_to_density, resample_map, scale_map_to_mass
from cryoengine.physics.imaging import ClassModels, ImagedParticles, simulate_particles
from cryoengine.physics.noise import mix_noise_at_snr_levels
from cryoengine.store import ObservedParticles, write_class_group, write_manifest, write_observed_dataset
from cryoengine.store.particle_set import ParticleSet, concatenate
from cryoengine.structure.atoms import StructureError, read_atoms
from cryoengine.structure.fetch import fetch_pdb_entry
from cryoengine.structure.phantom import phantom_atoms

log = logging.getLogger(__name__)

# The class-blind reference particle of the noise level (cryoengine.physics.noise): a seeded phantom blob.
_REFERENCE_SUBUNITS = 7
_REFERENCE_SEED = 0
# Margin around each box in the cells where targets are imaged alone: wider than the CTF's spread (a few
# voxels at 2-5 µm defocus and 10 Å voxels), so that neighbouring cells do not see each other.
_ISOLATION_MARGIN_VOX = 8
# Fourth seed word of the stream that draws a tomogram's crowder classes (apart from its placements).
_CROWDER_STREAM = 1

__all__ = [
    "available_classes",
    "crowder_classes",
    "resolve_classes",
    "calibrate_noise",
    "class_density",
    "dataset_attrs",
    "density",
    "fetch_structure",
    "manifest",
    "motif_list_path",
    "shard",
    "simulate_class",
    "simulate_tomogram",
    "tomogram_seed",
    "ParticleImportError",
    "import_particles",
    "import_tomogram_names",
    "import_tomogram_particles",
    "merge_imported",
]


def fetch_structure(config: EngineConfig, pdb_id: str, cache_dir: Path | None = None) -> Path:
    """Rule ``fetch_structure``: make ``<cache_dir>/<ID>.cif.gz`` hold the PDB entry.

    Parameters
    ----------
    config
        Supplies the mirrors, download switch, URL and timeout (``config.structures``).
    pdb_id
        Four-character PDB ID.
    cache_dir
        Overrides ``config.structures.cache_dir``.

    Returns
    -------
    Path
        The cached gzipped mmCIF.
    """
    settings = config.structures
    return fetch_pdb_entry(
        pdb_id,
        cache_dir=settings.cache_dir if cache_dir is None else Path(cache_dir),
        mirrors=settings.mirrors,
        download=settings.download,
        url_template=settings.rcsb_url,
        timeout_s=settings.download_timeout_s,
    )


def class_density(config: EngineConfig, class_id: str, model: int = 0) -> np.ndarray:
    """Density map of one model of a configured class: `(box, box, box)` float32 at ``config.voxel_size_A``.

    Every model is on the atomic scale (electron-scattering potential); a map model is rescaled to the
    potential of its mass (:func:`~cryoengine.physics.density.scale_map_to_mass`). Model 0 is the class's
    own source, model ``m`` its ``models[m - 1]``.

    Raises
    ------
    KeyError
        If ``class_id`` is not configured.
    StructureError, MrcError, BoxTooSmallError
        From the structure source or the density calculation, with a one-line message.
    """
    if class_id not in config.classes:
        raise KeyError(f"unknown class {class_id!r}; configured: {', '.join(sorted(config.classes))}")
    sources = config.classes[class_id].model_sources()
    if not 0 <= model < len(sources):
        raise ValueError(f"class {class_id} has models 0 to {len(sources) - 1}, got model {model}")
    spec = sources[model]
    resolution_A = config.resolution_A()
    if isinstance(spec, MapSource):
        volume, voxel_in_A = read_volume(spec.path)
        resampled = resample_map(volume, voxel_in_A, config.voxel_size_A, config.box, resolution_A)
        scaled, _ = scale_map_to_mass(resampled, config.voxel_size_A, spec.molecular_weight_kDa)
        return scaled
    if isinstance(spec, PhantomSource):
        atoms = phantom_atoms(spec.shape, spec.diameter_A, spec.subunits, spec.seed)
    elif isinstance(spec, PdbSource):
        atoms = read_atoms(fetch_structure(config, spec.pdb_id), config.assembly_of(spec), spec.chains)
    elif isinstance(spec, FileSource):
        atoms = read_atoms(spec.path, config.assembly_of(spec), spec.chains)
    else:  # pragma: no cover - the discriminated union admits nothing else
        raise TypeError(f"unsupported class source {type(spec).__name__}")
    return atoms_to_density(atoms, config.voxel_size_A, config.box, resolution_A, config.density.oversampling)


def density(config: EngineConfig, class_id: str, out_path: str | Path, model: int = 0) -> Path:
    """Rule ``density``: write one model's density map as MRC (voxel size in the header, provenance JSON).

    Returns
    -------
    Path
        ``out_path``.
    """
    volume = class_density(config, class_id, model)
    record = provenance(config.model_dump(mode="json"), seed=_class_seed(config, class_id, model))
    record["class_id"] = class_id
    if model:
        record["model"] = model
    return write_volume(out_path, volume, config.voxel_size_A, record)


def _class_seed(config: EngineConfig, class_id: str, model: int) -> int | None:
    spec = config.classes[class_id].model_sources()[model]
    return spec.seed if isinstance(spec, PhantomSource) else None


def available_classes(config: EngineConfig) -> list[str]:
    """List the configured class ids, minus optional PDB classes whose entry cannot be obtained now.

    An optional class is fetched here (cache, mirrors, then RCSB if allowed); if that fails the class is
    left out and the reason is logged as a warning. Non-optional classes are always kept, so that their
    failure surfaces in their own rule with its own error.
    """
    kept = []
    for class_id, spec in config.classes.items():
        if isinstance(spec, PdbSource) and spec.optional:
            try:
                fetch_structure(config, spec.pdb_id)
            except StructureError as error:
                log.warning("skipping optional class %s: %s", class_id, error)
                continue
        kept.append(class_id)
    return kept


def resolve_classes(config: EngineConfig, out_path: str | Path) -> Path:
    """Rule ``available_classes``: write the JSON list of :func:`available_classes` (fetches optional ones).

    Returns
    -------
    Path
        ``out_path``.
    """
    classes = available_classes(config)
    with atomic_path(out_path) as tmp:
        tmp.write_text(json.dumps(classes) + "\n")
    return Path(out_path)


def crowder_classes(
    config: EngineConfig, class_id: str, tomogram: int, available: Sequence[str]
) -> list[str]:
    """Draw the classes that may crowd one tomogram: ``sample.crowder_classes`` of the others, seeded.

    The draw uses its own stream of the (class, tomogram) seed, so it needs no file and the workflow can
    state each tomogram's inputs when it is parsed; a tomogram depends on these classes' maps only.

    Parameters
    ----------
    config
        Supplies ``sample.seed`` and ``sample.crowder_classes``.
    class_id
        Target class.
    tomogram
        Tomogram index.
    available
        Classes that exist (the configured ones, less optional classes that could not be fetched).

    Returns
    -------
    list of str
        Sorted crowder class ids: all the others when there are at most ``sample.crowder_classes``,
        none without crowding.
    """
    others = sorted(set(available) - {class_id})
    count = config.sample.crowder_classes
    if config.sample.crowding_fraction == 0:
        return []
    if len(others) <= count:
        return others
    stream = np.random.SeedSequence(
        [config.sample.seed, zlib.crc32(class_id.encode()), tomogram, _CROWDER_STREAM]
    )
    chosen = np.random.default_rng(stream).choice(len(others), size=count, replace=False)
    return sorted(others[int(i)] for i in chosen)


def tomogram_seed(base_seed: int, class_id: str, tomogram: int) -> np.random.SeedSequence:
    """Return the one seed from which all randomness of a (class, tomogram) flows (stable across runs)."""
    return np.random.SeedSequence([base_seed, zlib.crc32(class_id.encode()), tomogram])


def simulate_tomogram(
    config: EngineConfig,
    class_id: str,
    tomogram: int,
    density_paths: Mapping[str, str | Path],
    out_path: str | Path,
    ground_truth_path: str | Path | None = None,
    model_paths: Mapping[str, Sequence[str | Path]] | None = None,
) -> Path:
    """Rule ``simulate``: one tomogram of a class → its target subtomograms with ground truth.

    A slab is filled with ``particles_per_tomogram`` particles of ``class_id`` and crowders of the other
    classes (random orientation and position, non-overlapping), projected over the tilt scheme, modulated
    by this tomogram's CTF and the exposure filter, and reconstructed; ``noise.realisations`` independent
    unit-variance detector-noise tilt series are reconstructed the same way. Subtomograms are cut around
    each target from all of them. Each target alone and the reference particle are imaged once more, each
    in its own cell, for the class-blind noise scale and the particles' own signal variance
    (:mod:`cryoengine.physics.noise`). The realism effects enabled in the config act on the way
    (:mod:`cryoengine.physics.imaging`).

    The tomogram's motif list (every particle and crowder: class, position, rotation; STAR,
    :mod:`cryoengine.formats.motif_list`) is written to ``ground_truth_path``, and its path recorded in
    the particle file's provenance (``tomogram.ground_truth``); with ``export.tomograms`` the noise-free
    tomogram and its label map are written beside it as ``<stem>.tomogram.mrc`` and ``<stem>.labels.mrc``.

    Parameters
    ----------
    config
        Validated configuration (sample, tilt, optics, reconstruction, box, voxel size).
    class_id
        Target class.
    tomogram
        Index of the tomogram within the class (with ``sample.seed`` it fixes every random draw).
    density_paths
        Class id → density MRC, for the target and the classes that may crowd this tomogram
        (:func:`crowder_classes`); crowders are drawn uniformly among them.
    out_path
        Output ``.npz`` (:class:`~cryoengine.store.particle_set.ParticleSet` with ``clean``, ``noise``,
        ``noise_scale`` and ``signal_variance``).
    ground_truth_path
        Output motif list; None = beside ``out_path`` (``tomogram_0.npz`` → ``tomogram_0.motifs.star``).
    model_paths
        Class id → the density MRCs of its alternative models 1, 2, ... (``models`` in the config), for
        every class of ``density_paths`` that has them; each placed particle of such a class draws its
        model (:class:`~cryoengine.physics.imaging.ClassModels`), recorded in the motif list and, for the
        targets, as ``model_index`` in the particle file's attrs.

    Returns
    -------
    Path
        ``out_path``.
    """
    if class_id not in density_paths:
        raise KeyError(f"no density given for the target class {class_id!r}")
    class_ids = sorted(density_paths)
    densities = [_read_density(config, other, density_paths[other]) for other in class_ids]
    models = _class_models(config, class_ids, densities, model_paths or {})
    seed = tomogram_seed(config.sample.seed, class_id, tomogram)
    # The class-blind reference particle of the noise scale (noise module).
    reference = atoms_to_density(
        phantom_atoms("blob", config.reference_diameter_A(), _REFERENCE_SUBUNITS, _REFERENCE_SEED),
        config.voxel_size_A,
        config.box,
        config.resolution_A(),
        config.density.oversampling,
    )
    target = class_ids.index(class_id)
    imaged = simulate_particles(
        densities,
        target,
        reference,
        config.imaging_settings(_ISOLATION_MARGIN_VOX),
        np.random.default_rng(seed),
        models,
    )
    ctf, n = imaged.ctf, len(imaged.clean)
    log.info(
        "%s tomogram %d: %d targets among %d crowders, defocus %.2f µm, noise scale α₁ %.4g (reference "
        "variance %.4g, unit-noise variance %.4g)",
        class_id,
        tomogram,
        n,
        imaged.crowders,
        ctf.defocus_um,
        imaged.noise_scale,
        imaged.reference_signal_variance,
        imaged.unit_noise_variance,
    )
    record = provenance(config.model_dump(mode="json"), seed=int(seed.generate_state(1)[0]))
    record["tomogram"] = {
        "index": tomogram,
        "crowders": imaged.crowders,
        "ctf": vars(ctf),
        "reference_signal_variance": imaged.reference_signal_variance,
        "unit_noise_variance": imaged.unit_noise_variance,
        "ground_truth": str(
            _write_ground_truth(config, class_ids, class_id, imaged, out_path, ground_truth_path, record)
        ),
    }
    particles = ParticleSet(
        clean=imaged.clean,
        noise=imaged.noise,
        noise_scale=np.full(n, imaged.noise_scale),
        signal_variance=imaged.signal_variance,
        rotation=imaged.rotation,
        shift=imaged.shift,
        position=imaged.position,
        tomogram=np.full(n, tomogram),
        defocus_um=np.full(n, ctf.defocus_um),
        attrs={
            "class_id": class_id,
            "voxel_size_A": config.voxel_size_A,
            "provenance": record,
            **_model_index_attrs(
                config, class_id, imaged.model_index[imaged.placements.class_index == target]
            ),
        },
    )
    path = particles.save(out_path)
    log.info("%s tomogram %d: %d subtomograms written to %s", class_id, tomogram, n, path)
    return path


def _read_density(config: EngineConfig, class_id: str, path: str | Path) -> np.ndarray:
    volume, voxel_A = read_volume(path)
    if not np.isclose(voxel_A, config.voxel_size_A, rtol=1e-3):
        raise ValueError(f"density of {class_id} has voxel {voxel_A} Å, config says {config.voxel_size_A} Å")
    return volume


def _class_models(
    config: EngineConfig,
    class_ids: Sequence[str],
    densities: Sequence[np.ndarray],
    model_paths: Mapping[str, Sequence[str | Path]],
) -> dict[int, ClassModels]:
    """Return the alternative models of the tomogram's classes that have them, keyed by class index."""
    models = {}
    for k, class_id in enumerate(class_ids):
        spec = config.classes[class_id]
        given = list(model_paths.get(class_id, []))
        if len(given) != len(spec.models):
            raise ValueError(
                f"class {class_id} has {len(spec.models)} alternative models in the config, "
                f"{len(given)} density maps given for them"
            )
        if given:
            maps = [densities[k], *(_read_density(config, class_id, path) for path in given)]
            models[k] = ClassModels(maps, spec.model_probabilities())
    return models


def _model_index_attrs(config: EngineConfig, class_id: str, model_index: np.ndarray) -> dict[str, Any]:
    """``{"model_index": [...]}`` of a class with alternative models, else nothing (attrs as before)."""
    if not config.classes[class_id].models:
        return {}
    return {"model_index": [int(m) for m in model_index]}


def motif_list_path(out_path: str | Path) -> Path:
    """Default motif list of a tomogram's particle file: ``tomogram_0.npz`` → ``tomogram_0.motifs.star``."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.motifs.star")


def _write_ground_truth(
    config: EngineConfig,
    class_ids: Sequence[str],
    class_id: str,
    imaged: ImagedParticles,
    out_path: str | Path,
    ground_truth_path: str | Path | None,
    record: dict,
) -> Path:
    """Write a tomogram's motif list and, with ``export.tomograms``, its tomogram and label map as MRC."""
    path = motif_list_path(out_path) if ground_truth_path is None else Path(ground_truth_path)
    placed = imaged.placements
    write_motif_list(
        path,
        class_ids,
        placed.class_index,
        placed.centre_zyx_vox,
        placed.rotation,
        config.voxel_size_A,
        target_class=class_ids.index(class_id),
        b_factor_A2=imaged.b_factor_A2,
        model_index=imaged.model_index,
    )
    if imaged.tomogram is not None and imaged.label_map is not None:
        stem = path.name.removesuffix(".star").removesuffix(".motifs")
        labels_record = {
            **record,
            "labels": {"0": "none", **{str(i + 1): c for i, c in enumerate(class_ids)}},
        }
        write_volume(path.with_name(f"{stem}.tomogram.mrc"), imaged.tomogram, config.voxel_size_A, record)
        write_volume(
            path.with_name(f"{stem}.labels.mrc"), imaged.label_map, config.voxel_size_A, labels_record
        )
    return path


def calibrate_noise(
    config: EngineConfig, class_id: str, tomogram_paths: Sequence[str | Path], out_path: str | Path
) -> Path:
    """Rule ``noise``: a class's tomograms' particles → noisy copies at every SNR level, SNR measured.

    Parameters
    ----------
    config
        Supplies ``noise.snr_levels`` and ``noise.device``.
    class_id
        The class (for metadata).
    tomogram_paths
        The class's per-tomogram ``.npz`` files from :func:`simulate_tomogram`, in tomogram order.
    out_path
        Output ``.npz``: a ParticleSet with ``clean``, ``noise`` `(N, K, D, D, D)`, ``noise_scale`` `(N,)`,
        ``noisy`` `(N, L, D, D, D)` (level ``l`` from realisation ``l mod K``) and ``snr`` `(N, L)` (each
        particle's own SNR).

    Returns
    -------
    Path
        ``out_path``.
    """
    parts = []
    for done, path in enumerate(tomogram_paths, start=1):
        parts.append(ParticleSet.load(path))
        log.info("%s: read tomogram %d/%d (%s)", class_id, done, len(tomogram_paths), path)
    drawn = [part.attrs.pop("model_index", None) for part in parts]  # per tomogram, joined below
    particles = concatenate(parts)
    if particles.noise is None:
        raise ValueError(
            f"the tomogram files of class {class_id} hold no noise reconstruction (not from simulate)"
        )
    if particles.noise_scale is None or particles.signal_variance is None:
        raise ValueError(
            f"the tomogram files of class {class_id} hold no noise scale (written by an older simulate)"
        )
    levels = np.asarray(config.noise.snr_levels, dtype=np.float64)
    noisy, measured = mix_noise_at_snr_levels(
        particles.clean,
        particles.noise,
        particles.noise_scale,
        levels,
        particles.signal_variance,
        device=config.noise.device,
    )
    attrs = {
        "class_id": class_id,
        "voxel_size_A": config.voxel_size_A,
        "snr_levels": config.noise.snr_levels,
        "ground_truth": [part.attrs["provenance"].get("tomogram", {}).get("ground_truth") for part in parts],
        "provenance": provenance(config.model_dump(mode="json"), seed=config.sample.seed),
    }
    if any(models is not None for models in drawn):
        attrs["model_index"] = [
            m for part, models in zip(parts, drawn, strict=True) for m in models or [0] * len(part)
        ]
    medians = ", ".join(
        f"{level:g}→{median:.4g}" for level, median in zip(levels, np.median(measured, axis=0), strict=True)
    )
    log.info(
        "%s: %d particles at %d SNR levels, median measured SNR %s",
        class_id,
        len(particles),
        len(levels),
        medians,
    )
    result = ParticleSet(
        clean=particles.clean,
        rotation=particles.rotation,
        shift=particles.shift,
        position=particles.position,
        tomogram=particles.tomogram,
        defocus_um=particles.defocus_um,
        noise=particles.noise,
        noise_scale=particles.noise_scale,
        noisy=noisy,
        snr=measured,
        attrs=attrs,
    )
    return result.save(out_path)


def simulate_class(
    config: EngineConfig, class_id: str, density_dir: str | Path, out_path: str | Path
) -> Path:
    """All tomograms of one class, then noise calibration: what rules ``simulate`` + ``noise`` do together.

    Density maps missing from ``density_dir`` (the target's and its tomograms' crowder classes, see
    :func:`crowder_classes`) are made first with :func:`density`.

    Returns
    -------
    Path
        ``out_path``, a ParticleSet with ``clean``, ``noisy`` and ``snr``.
    """
    density_dir = Path(density_dir)
    classes = available_classes(config)
    if class_id not in classes:
        raise KeyError(f"unknown or unavailable class {class_id!r}; available: {', '.join(classes)}")
    paths = {other: density_dir / f"{other}.mrc" for other in classes}
    indices = range(config.sample.tomograms_per_class)
    crowders = {index: crowder_classes(config, class_id, index, classes) for index in indices}
    for other in {class_id}.union(*crowders.values()):
        if not paths[other].is_file():
            density(config, other, paths[other])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{class_id}.", dir=out_path.parent) as scratch:
        tomograms = [
            simulate_tomogram(
                config,
                class_id,
                index,
                {c: paths[c] for c in [class_id, *crowders[index]]},
                Path(scratch) / f"tomogram_{index}.npz",
                out_path.with_name(f"{out_path.stem}.tomogram_{index}.motifs.star"),
            )
            for index in tqdm(indices, desc=f"{class_id} tomograms", unit="tomogram", file=sys.stderr)
        ]
        return calibrate_noise(config, class_id, tomograms, out_path)


def dataset_attrs(config: EngineConfig) -> dict:
    """Metadata shared by every class of the dataset: sampling, SNR levels and acquisition settings."""
    return {
        "voxel_size_A": config.voxel_size_A,
        "box": config.box,
        "snr_levels": list(config.noise.snr_levels),
        "noise_realisations": config.noise.realisations,
        "class_labels": list(config.classes),
        "noise_reference_diameter_A": config.reference_diameter_A(),
        "tilt_scheme": config.tilt.model_dump(mode="json"),
        "optics": config.optics.model_dump(mode="json"),
        "reconstruction": config.reconstruction.model_dump(mode="json"),
        "sample": config.sample.model_dump(mode="json"),
        "acquisition": config.acquisition.model_dump(mode="json"),
        "variety": config.variety.model_dump(mode="json"),
        "provenance": provenance(config.model_dump(mode="json"), seed=config.sample.seed),
    }


def shard(config: EngineConfig, class_id: str, particles_path: str | Path, dataset_path: str | Path) -> Path:
    """Rule ``shard``: write a class's calibrated particles as its group of the Zarr dataset (atomically).

    Returns
    -------
    Path
        The class group ``<dataset_path>/classes/<class_id>``.
    """
    spec = config.classes[class_id]
    particles = ParticleSet.load(particles_path)
    class_attrs = {
        "name": class_id,
        "description": spec.description,
        "source": spec.model_dump(
            mode="json",
            exclude={"description"} if spec.models else {"description", "models", "model_weights"},
        ),
        "ground_truth": particles.attrs.get("ground_truth", []),
        "provenance": provenance(config.model_dump(mode="json"), seed=config.sample.seed),
    }
    if "model_index" in particles.attrs:
        class_attrs["model_index"] = particles.attrs["model_index"]
    group = write_class_group(
        dataset_path,
        class_id,
        particles,
        class_attrs,
        dataset_attrs(config),
        shard_size=config.dataset.shard_size,
    )
    log.info("%s: %d subtomograms written to %s", class_id, len(particles), group)
    return group


def manifest(
    config: EngineConfig, class_ids: Sequence[str], dataset_path: str | Path, out_path: str | Path
) -> Path:
    """Rule ``manifest``: fill the dataset's root attributes from its class groups; write them as JSON too.

    Returns
    -------
    Path
        ``out_path``, a JSON copy of the root attributes (classes, counts, settings, provenance).
    """
    attrs = write_manifest(dataset_path, class_ids, dataset_attrs(config))
    with atomic_path(out_path) as tmp:
        tmp.write_text(json.dumps(attrs, indent=2, sort_keys=True) + "\n")
    return Path(out_path)


# --- A user's particles → an observed dataset (python -m cryoengine import-particles, rule import_particles)

_UNLABELLED = "unlabelled"
_TOMOGRAM_SUFFIXES = (".mrc", ".rec", ".map")
# Effective voxels of different tomograms may differ by this much (relative) and share one dataset.
_VOXEL_SPREAD = 2e-3


class ParticleImportError(ValueError):
    """Input of an import that cannot be used; the message (one line) names the file and the field."""


def import_tomogram_names(settings: ImportSettings) -> list[str]:
    """List the tomograms (copick: runs) the inputs' particles lie in, in order of first appearance.

    One Snakemake job per name runs :func:`import_tomogram_particles`.
    """
    if settings.format == "copick":
        table = _copick_project(settings).read_picks(str(settings.copick_object), settings.copick_runs)
        return list(dict.fromkeys(table.particles["tomogram"].astype(str)))
    names: list[str] = []
    for path in settings.inputs:
        names.extend(read_tomogram_names(path, settings.format))
    return list(dict.fromkeys(names))


def import_tomogram_particles(settings: ImportSettings, tomogram: str, out_path: str | Path) -> Path:
    """Rule ``import_tomogram``: cut one tomogram's particles into an :class:`ObservedParticles` ``.npz``.

    The boxes are Fourier-rescaled to ``settings.voxel_size_A`` (the effective voxel is recorded), the
    contrast inverted if asked, and each box standardised (:mod:`cryoengine.physics.box_cutting`).

    Parameters
    ----------
    settings
        The import settings.
    tomogram
        One of :func:`import_tomogram_names`.
    out_path
        The intermediate written (atomically).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ParticleImportError
        Missing or unreadable files, coordinates, pixel sizes or tomograms; particles outside the tomogram.
    """
    try:
        table, source = _import_table(settings, tomogram)
        if settings.format == "copick":
            array, geometry = _copick_project(settings).open_tomogram(
                tomogram, float(settings.copick_voxel_spacing_A or 0), settings.copick_tomo_type
            )
            particles = _cut_observed(settings, table, array, geometry, source)
        else:
            with open_mrc_tomogram(source) as (data, geometry):
                particles = _cut_observed(settings, table, data, geometry, source)
    except (ParticleTableError, TomogramFileError, ValueError) as error:
        raise ParticleImportError(str(error)) from None
    particles.save(out_path)
    log.info("%s: %d particles cut from %s", tomogram, len(particles), source)
    return Path(out_path)


def merge_imported(
    settings: ImportSettings, intermediates: Sequence[str | Path], out_path: str | Path | None = None
) -> Path:
    """Rule ``import_particles``: join the per-tomogram intermediates into one observed dataset (atomically).

    Particles are grouped by class (the label column's values, sorted; else one ``unlabelled`` group);
    the tomograms are numbered in the order given.

    Returns
    -------
    Path
        The dataset (``out_path``, default ``settings.output``).
    """
    out = Path(settings.output if out_path is None else out_path)
    parts = [ObservedParticles.load(path) for path in intermediates]
    parts = [part for part in parts if len(part)]
    if not parts:
        raise ParticleImportError("no particles to import: every tomogram's particles were skipped")
    effective = np.array([part.attrs["plan"]["effective_voxel_size_A"] for part in parts])
    if np.ptp(effective) > _VOXEL_SPREAD * effective.min():
        raise ParticleImportError(
            f"the tomograms rescale to different voxels ({effective.min():.4f}-{effective.max():.4f} Å); "
            "import tomograms of one pixel size together"
        )
    particle_files = list(dict.fromkeys(f for part in parts for f in part.attrs["particle_files"]))
    renumbered: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        local = part.attrs["particle_files"]
        renumbered.append(
            {
                **part.arrays(),
                "tomogram": np.full(len(part), index),
                "source_file": np.array([particle_files.index(local[k]) for k in part.source_file]),
            }
        )
    labels = np.concatenate([part.label for part in parts])
    joined: dict[str, Any] = {
        name: np.concatenate([arrays[name] for arrays in renumbered]) for name in renumbered[0]
    }
    everything = ObservedParticles(**joined, label=labels)
    classes = {label: everything.select(labels == label) for label in sorted(set(labels.tolist()))}
    voxel = float(np.median(effective))
    attrs = {
        "voxel_size_A": voxel,
        "requested_voxel_size_A": settings.voxel_size_A,
        "box": settings.box,
        "tomograms": [part.attrs["tomogram"] for part in parts],
        "particle_files": particle_files,
        "import": {
            "input_format": settings.format,
            "edge": settings.edge,
            "invert_contrast": settings.invert_contrast,
            "contrast": "protein dark (inverted on import)" if settings.invert_contrast else "protein dark",
            "normalisation": "zero mean, unit variance per box",
            "label_column": settings.label_column,
            "plans": [part.attrs["plan"] for part in parts],
            "skipped_at_edge": int(sum(part.attrs["skipped"] for part in parts)),
            **(
                {
                    "copick_config": str(Path(settings.inputs[0]).resolve()),
                    "copick_object": settings.copick_object,
                    "copick_voxel_spacing_A": settings.copick_voxel_spacing_A,
                    "copick_tomo_type": settings.copick_tomo_type,
                }
                if settings.format == "copick"
                else {}
            ),
        },
        "provenance": provenance(settings.model_dump(mode="json")),
    }
    return write_observed_dataset(out, classes, attrs, shard_size=settings.shard_size)


def import_particles(settings: ImportSettings, out_path: str | Path | None = None) -> Path:
    """Import a user's particles: every tomogram (tqdm progress on stderr), then the merge, atomically.

    The per-tomogram intermediates live in a temporary directory; a failure anywhere leaves no dataset.

    Returns
    -------
    Path
        The dataset.
    """
    try:
        names = import_tomogram_names(settings)
    except (ParticleTableError, ValueError) as error:
        raise ParticleImportError(str(error)) from None
    with (
        tempfile.TemporaryDirectory(prefix="cryoengine-import-") as scratch,
        tqdm(total=len(names), desc="importing tomograms", unit="tomogram", file=sys.stderr) as bar,
    ):
        parts = []
        for index, name in enumerate(names):
            parts.append(import_tomogram_particles(settings, name, Path(scratch) / f"{index}.npz"))
            bar.update()
        bar.close()  # before any error message, which then starts a line of its own
        return merge_imported(settings, parts, out_path)


def _copick_project(settings: ImportSettings) -> CopickProject:
    return CopickProject(settings.inputs[0])


def _import_table(settings: ImportSettings, tomogram: str) -> tuple[ParticleTable, Path]:
    """Read one tomogram's particles; return them and its file (copick: the config), which must exist."""
    if settings.format == "copick":
        table = _copick_project(settings).read_picks(str(settings.copick_object), [tomogram])
        return table, Path(settings.inputs[0])
    star_tomograms = _star_tomograms(settings)
    geometries: dict[str, TomogramGeometry] = {}
    files: dict[str, Path] = {}
    for path in settings.inputs:
        for name in read_tomogram_names(path, settings.format):
            if name not in files:
                files[name] = _tomogram_file(settings, name, path, star_tomograms)
                geometries[name] = _with_voxel(
                    settings, mrc_tomogram_geometry(files[name]), name, star_tomograms
                )
    tables = []
    for path in settings.inputs:
        if settings.format == "relion5":
            table = read_relion5_particles(
                path,
                tomograms_star=_tomograms_star(settings),
                tomograms=geometries,
                pixel_size_A=settings.pixel_size_A,
            )
        elif settings.format == "warp":
            table = read_warp_particles(path, tomograms=geometries, pixel_size_A=settings.pixel_size_A)
        else:
            table = read_csv_particles(
                path, unit=settings.csv_unit, tomograms=geometries, pixel_size_A=settings.pixel_size_A
            )
        tables.append(table.select(tomogram))
    table = ParticleTable(
        pd.concat([t.particles for t in tables], ignore_index=True),
        None if any(t.rotation is None for t in tables) else np.concatenate([t.rotation for t in tables]),
        pd.concat([t.original for t in tables], ignore_index=True),
    )
    return table, files[tomogram]


def _tomograms_star(settings: ImportSettings) -> Path | None:
    path = settings.tomograms
    return path if path is not None and path.suffix == ".star" else None


def _star_tomograms(settings: ImportSettings) -> dict[str, dict[str, Any]]:
    """Rows of the tomograms STAR by name (with ``file``: ``rlnTomoReconstructedTomogram``), or {}."""
    star = _tomograms_star(settings)
    if star is None:
        return {}
    rows = read_relion_tomograms(star)
    entries: dict[str, dict[str, Any]] = {name: dict(row) for name, row in rows.items()}
    for name, file in read_relion_tomogram_files(star).items():
        entries.setdefault(name, {})["file"] = file
    return entries


def _tomogram_file(
    settings: ImportSettings, name: str, particle_file: Path, star_tomograms: Mapping[str, Mapping[str, Any]]
) -> Path:
    """Find the MRC of tomogram ``name``: in the tomograms STAR, or ``<dir>/<name>.mrc`` (``.rec``, Warp)."""
    tried: list[Path] = []
    star = _tomograms_star(settings)
    if star is not None:
        file = star_tomograms.get(name, {}).get("file")
        if file is None:
            raise ParticleImportError(
                f"{particle_file}: tomogram {name!r} has no rlnTomoReconstructedTomogram in {star}"
            )
        tried = [Path(file), star.parent / file]
    else:
        directory = Path(str(settings.tomograms))
        if not directory.is_dir():
            raise ParticleImportError(f"tomograms directory {directory} does not exist")
        tried = [directory / f"{name}{suffix}" for suffix in _TOMOGRAM_SUFFIXES]
        tried += sorted(directory.glob(f"{name}_*Apx.mrc"))
    for path in tried:
        if path.is_file():
            return path
    raise ParticleImportError(
        f"{particle_file}: tomogram {name!r} is named but missing (looked for "
        f"{', '.join(str(p) for p in tried[:3])})"
    )


def _with_voxel(
    settings: ImportSettings,
    geometry: TomogramGeometry,
    name: str,
    star_tomograms: Mapping[str, Mapping[str, Any]],
) -> TomogramGeometry:
    """Give ``geometry`` a usable voxel: the header's, else the tomograms STAR's, else ``pixel_size_A``."""
    if geometry.voxel_size_A > 0:
        return geometry
    entry = star_tomograms.get(name, {})
    pixel = float(entry.get("tilt_series_pixel_size_A", 0)) * float(entry.get("binning", 1))
    if not pixel > 0:
        pixel = settings.pixel_size_A or 0.0
    if not pixel > 0:
        raise ParticleImportError(
            f"{geometry.source}: voxel size missing or 0 in the MRC header and no tomograms STAR gives "
            f"tomogram {name!r} one (rlnTomoTiltSeriesPixelSize); pass --pixel-size-A"
        )
    return TomogramGeometry(geometry.shape_zyx, pixel, geometry.source)


def _cut_observed(
    settings: ImportSettings, table: ParticleTable, data: Any, geometry: TomogramGeometry, source: Path
) -> ObservedParticles:
    """Cut one tomogram's particles and keep their provenance."""
    geometry = _with_voxel(settings, geometry, str(table.particles["tomogram"].iloc[0]), {})
    centres = table.centres_zyx_A()
    try:
        cut = cut_subtomograms(
            data,
            geometry.voxel_size_A,
            centres,
            settings.box,
            settings.voxel_size_A,
            edge=settings.edge,
            invert_contrast=settings.invert_contrast,
        )
    except ParticleOutsideTomogramError as error:
        raise ParticleImportError(f"{table.particles['source_file'].iloc[0]} → {source}: {error}") from None
    kept = cut.kept
    n = len(kept)
    frame = table.particles.iloc[kept]
    particle_files = list(dict.fromkeys(frame["source_file"].astype(str)))
    labels = np.full(n, _UNLABELLED, dtype=object)
    if settings.label_column is not None:
        if settings.label_column not in table.original:
            raise ParticleImportError(
                f"{frame['source_file'].iloc[0] if n else source}: no column {settings.label_column!r} "
                f"(--label-column); columns: {', '.join(map(str, table.original.columns))}"
            )
        labels = table.original[settings.label_column].astype(str).to_numpy()[kept]
        bad = [value for value in labels if not re.match(CLASS_ID_PATTERN, value)]
        if bad:
            raise ParticleImportError(
                f"{frame['source_file'].iloc[0]}: label {bad[0]!r} of column {settings.label_column!r} is "
                f"not a class id ({CLASS_ID_PATTERN})"
            )
    effective = cut.plan.effective_voxel_size_A
    given = table.rotation is not None
    sizes = frame[["tomogram_size_z_A", "tomogram_size_y_A", "tomogram_size_x_A"]].to_numpy(dtype=float)
    size_zyx_A = sizes[0] if n and np.all(np.isfinite(sizes[0])) else np.asarray(geometry.size_zyx_A)
    coordinate_pixel = frame["coordinate_pixel_size_A"].to_numpy(dtype=float)
    tomogram_record = {
        "name": str(table.particles["tomogram"].iloc[0]),
        "source": str(source),
        "shape_zyx": list(geometry.shape_zyx),
        "voxel_size_A": geometry.voxel_size_A,
        "size_zyx_A": [float(v) for v in size_zyx_A],
        "coordinate_pixel_size_A": (
            float(coordinate_pixel[0]) if n and np.isfinite(coordinate_pixel[0]) else geometry.voxel_size_A
        ),
    }
    plan = cut.plan
    return ObservedParticles(
        observed=cut.volumes,
        rotation=table.rotation[kept] if table.rotation is not None else np.tile(np.eye(3), (n, 1, 1)),
        shift=cut.shift_zyx_vox,
        position=centres[kept] / effective,
        tomogram=np.zeros(n, dtype=np.int32),
        orientation_given=np.full(n, given),
        source_centre_A=centres[kept],
        source_pixel_size_A=np.full(n, geometry.voxel_size_A),
        source_row=frame["source_row"].to_numpy(),
        source_file=np.array([particle_files.index(f) for f in frame["source_file"].astype(str)], dtype=int),
        edge_padded=cut.padded,
        label=labels,
        attrs={
            "tomogram": tomogram_record,
            "particle_files": particle_files,
            "plan": {
                "tomogram": tomogram_record["name"],
                "source_voxel_size_A": plan.source_voxel_size_A,
                "source_box": plan.source_box,
                "resampled_box": plan.resampled_box,
                "effective_voxel_size_A": effective,
            },
            "skipped": int(len(table.particles) - n),
        },
    )
