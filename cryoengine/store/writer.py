"""Writing ``dataset.zarr``: one class group atomically (:func:`write_class_group`), then the manifest.

An observed dataset (a user's imported particles) is written whole and atomically by
:func:`write_observed_dataset`.

The layout, chunking, compression, concurrency and atomicity rules are those of
:mod:`cryoengine.store.reader`; the arrays and their dimension names come from the field table
(:mod:`cryoengine.store.fields`).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.storage import LocalStore

from cryoengine.identifiers import CLASS_ID_PATTERN
from cryoengine.store.fields import (
    ARRAYS,
    FORMAT,
    FORMAT_VERSION,
    OBSERVED,
    OBSERVED_ARRAYS,
    OBSERVED_FORMAT_VERSION,
    field,
)
from cryoengine.store.observed_set import ObservedParticles
from cryoengine.store.particle_set import ParticleSet
from cryoengine.store.reader import (
    _SHARED_KEYS,
    ClassNotFoundError,
    DatasetFormatError,
    _list_class_ids,
    _open_group,
    _read_root_attrs,
    _sha256,
)

__all__ = ["write_class_group", "write_manifest", "write_observed_dataset"]

_COMPRESSORS = (BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), Crc32cCodec())


# Unit noise hardly compresses (1.14× for 20 % slower reads, module docstring): stored raw, CRC-checked.
_ARRAY_COMPRESSORS = {"noise": (Crc32cCodec(),)}


_CHECKSUM_ALGORITHM = "sha256 of the little-endian C-order bytes of the whole array"


_ROOT_RESERVED = ("format", "format_version", "classes", "count")


_CLASS_RESERVED = (
    "class_id",
    "count",
    "format_version",
    *_SHARED_KEYS,
    "checksums",
    "checksum_algorithm",
    "particle_set_attrs",
)


# Class attrs left out of the root manifest (bulky or internal).
_NOT_IN_MANIFEST = (*_CLASS_RESERVED, "provenance")


def write_class_group(
    dataset_path: str | os.PathLike[str],
    class_id: str,
    particles: ParticleSet,
    class_attrs: Mapping[str, Any],
    dataset_attrs: Mapping[str, Any],
    shard_size: int = 256,
) -> Path:
    """Write (or replace) the group of one class, atomically, creating the dataset root if missing.

    The root, when this call creates it, gets ``format``, ``format_version`` and ``dataset_attrs``; an
    existing root is never modified (see the module docstring, Concurrency).

    Parameters
    ----------
    dataset_path
        The ``dataset.zarr`` directory.
    class_id
        Class id (letters, digits, ``_ . -``; not starting with a dot).
    particles
        `N ≥ 1` particles with ``noisy`` and ``snr`` (`L` levels), ``noise`` (`K` realisations) and
        ``noise_scale``, in `D`³ boxes.
    class_attrs
        JSON metadata of the class: ``name``, ``source``, ``provenance``, ... Must not use the keys the
        store sets (``class_id``, ``count``, ``checksums``, ...).
    dataset_attrs
        JSON metadata of the whole dataset, the same for every class: ``voxel_size_A`` (> 0), ``box``
        (`D`), ``snr_levels`` (`L` finite levels, in the order of ``noisy``'s level axis),
        ``noise_realisations`` (`K`), plus e.g.
        ``tilt_scheme`` and ``provenance``.
    shard_size
        Particles per shard file.

    Returns
    -------
    Path
        The class group, ``<dataset_path>/classes/<class_id>``.
    """
    root = Path(dataset_path)
    _check_class_id(class_id)
    if not isinstance(particles, ParticleSet):
        raise ValueError(f"particles must be a ParticleSet, got {type(particles).__name__}")
    if len(particles) == 0:
        raise ValueError(f"particles of class {class_id!r} is empty (N = 0)")
    if particles.noisy is None or particles.snr is None:
        raise ValueError(f"particles of class {class_id!r} has no noisy volumes; add the SNR levels first")
    if particles.noise is None or particles.noise_scale is None:
        raise ValueError(f"particles of class {class_id!r} has no unit-noise volumes or noise scale")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int | np.integer) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    dataset_attrs = _check_dataset_attrs(dataset_attrs)
    class_attrs = _check_json_dict(class_attrs, "class_attrs", reserved=_CLASS_RESERVED)
    if particles.box != dataset_attrs["box"]:
        raise ValueError(
            f"particles of class {class_id!r} are in {particles.box}³ boxes, dataset box is "
            f"{dataset_attrs['box']}"
        )
    levels = dataset_attrs["snr_levels"]
    if particles.noisy.shape[1] != len(levels):
        raise ValueError(
            f"particles of class {class_id!r} have {particles.noisy.shape[1]} noisy levels, "
            f"dataset snr_levels has {len(levels)}: {levels}"
        )
    if particles.noise.shape[1] != dataset_attrs["noise_realisations"]:
        raise ValueError(
            f"particles of class {class_id!r} have {particles.noise.shape[1]} noise realisations, dataset "
            f"noise_realisations is {dataset_attrs['noise_realisations']}"
        )
    _check_particle_attrs(particles.attrs, class_id, dataset_attrs)

    if class_id not in dataset_attrs["class_labels"]:
        raise ValueError(
            f"class {class_id!r} is not in dataset_attrs['class_labels'] {dataset_attrs['class_labels']}"
        )
    _require_root(root, dataset_attrs)
    classes_dir = root / "classes"
    _remove_stale_groups(classes_dir, class_id)
    token = secrets.token_hex(8)
    tmp = classes_dir / f".{class_id}.tmp-{token}"
    group_attrs = {
        **class_attrs,
        "class_id": class_id,
        "count": len(particles),
        "format_version": FORMAT_VERSION,
        **{key: dataset_attrs[key] for key in _SHARED_KEYS},
        "checksums": {name: _sha256([getattr(particles, name)]) for name in ARRAYS},
        "checksum_algorithm": _CHECKSUM_ALGORITHM,
        "particle_set_attrs": particles.attrs,
    }
    try:
        group = zarr.create_group(store=LocalStore(tmp), attributes=group_attrs, zarr_format=3)
        _create_arrays(group, {name: getattr(particles, name) for name in ARRAYS}, int(shard_size))
        _fsync_tree(tmp)
        final = classes_dir / class_id
        old = classes_dir / f".{class_id}.old-{token}"
        if final.exists():
            os.rename(final, old)
        try:
            os.rename(tmp, final)
        except OSError:
            if old.exists():
                os.rename(old, final)
            raise
        _fsync_directory(classes_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_manifest(
    dataset_path: str | os.PathLike[str], class_ids: Sequence[str], dataset_attrs: Mapping[str, Any]
) -> dict[str, Any]:
    """Fill the root attributes from the class groups, after every class job has finished.

    Checks that exactly the configured classes are present and agree with ``dataset_attrs``, then
    replaces the root attributes (one atomic file write) with ``format``, ``format_version``,
    ``dataset_attrs``, ``classes`` ``{id: class attrs without internal keys and provenance, + count}``
    and the total ``count``.

    Parameters
    ----------
    dataset_path
        The ``dataset.zarr`` directory.
    class_ids
        Every class the dataset must hold (the configured classes).
    dataset_attrs
        As in :func:`write_class_group`.

    Returns
    -------
    dict
        The new root attributes.

    Raises
    ------
    ClassNotFoundError
        A configured class has no group.
    DatasetFormatError
        A group of an unconfigured class, or a class written with other ``voxel_size_A``, ``box`` or
        ``snr_levels``.
    """
    root = Path(dataset_path)
    class_ids = list(class_ids)
    for class_id in class_ids:
        _check_class_id(class_id)
    dataset_attrs = _check_dataset_attrs(dataset_attrs)
    root_attrs = _read_root_attrs(root)
    _check_writable(root, root_attrs)
    _check_labels_extend(root, root_attrs.get("class_labels"), dataset_attrs["class_labels"])
    unlabelled = sorted(set(class_ids) - set(dataset_attrs["class_labels"]))
    if unlabelled:
        raise ValueError(f"class(es) {', '.join(unlabelled)} are not in dataset_attrs['class_labels']")
    present = _list_class_ids(root)
    missing = sorted(set(class_ids) - set(present))
    if missing:
        raise ClassNotFoundError(
            f"class(es) {', '.join(missing)} have no group in {root / 'classes'} "
            f"(present: {', '.join(present) or 'none'})"
        )
    extra = sorted(set(present) - set(class_ids))
    if extra:
        raise DatasetFormatError(
            f"{root / 'classes'} holds group(s) {', '.join(extra)} that are not configured classes; "
            "remove them or add them to the configuration"
        )
    classes = {}
    for class_id in sorted(class_ids):
        attrs: dict[str, Any] = _open_group(root, f"classes/{class_id}").attrs.asdict()
        for key in _SHARED_KEYS:
            if attrs.get(key) != dataset_attrs[key]:
                raise DatasetFormatError(
                    f"class {class_id!r} was written with {key} = {attrs.get(key)!r}, the dataset has "
                    f"{dataset_attrs[key]!r}; re-run that class"
                )
        classes[class_id] = {key: value for key, value in attrs.items() if key not in _NOT_IN_MANIFEST}
        classes[class_id]["count"] = attrs["count"]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **dataset_attrs,
        "classes": classes,
        "count": sum(entry["count"] for entry in classes.values()),
    }
    zarr.open_group(store=LocalStore(root), mode="r+", zarr_format=3).attrs.put(manifest)
    return manifest


def write_observed_dataset(
    dataset_path: str | os.PathLike[str],
    classes: Mapping[str, ObservedParticles],
    dataset_attrs: Mapping[str, Any],
    shard_size: int = 256,
) -> Path:
    """Write an observed dataset (format 3, ``content: observed``) whole, atomically, with its manifest.

    Everything is written into ``.<name>.tmp-<hex>`` beside ``dataset_path``, fsynced, then renamed into
    place; an existing dataset at the path is replaced only then (renamed aside first, removed after),
    so a failure at any point leaves no new or partial dataset.

    Parameters
    ----------
    dataset_path
        The ``dataset.zarr`` directory; an existing path must be a cryoengine dataset.
    classes
        Class id → its particles (``N ≥ 1`` each, all in `box`³ boxes), in label order.
    dataset_attrs
        JSON root attrs: ``voxel_size_A`` (the effective voxel, > 0), ``box``, ``tomograms``,
        ``particle_files``, ``import``, ... (:mod:`cryoengine.store.reader`, Observed datasets). The store
        sets ``format``, ``format_version``, ``content``, ``snr_levels`` (``[]``), ``noise_realisations``
        (0), ``class_labels``, ``classes`` and ``count``.
    shard_size
        Particles per shard file.

    Returns
    -------
    Path
        ``dataset_path``.
    """
    root = Path(dataset_path)
    if not classes:
        raise ValueError("an observed dataset needs at least one class of particles, got none")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int | np.integer) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    reserved = (*_ROOT_RESERVED, "content", "snr_levels", "noise_realisations", "class_labels")
    attrs = _check_json_dict(dataset_attrs, "dataset_attrs", reserved=reserved)
    voxel, box = attrs.get("voxel_size_A"), attrs.get("box")
    if isinstance(voxel, bool) or not isinstance(voxel, int | float) or not voxel > 0:
        raise ValueError(f"dataset_attrs['voxel_size_A'] must be a positive number, got {voxel!r}")
    if isinstance(box, bool) or not isinstance(box, int) or box < 1:
        raise ValueError(f"dataset_attrs['box'] must be a positive integer, got {box!r}")
    for class_id, particles in classes.items():
        _check_class_id(class_id)
        if len(particles) == 0:
            raise ValueError(f"particles of class {class_id!r} is empty (N = 0)")
        if particles.observed.shape[1] != box:
            raise ValueError(
                f"particles of class {class_id!r} are in {particles.observed.shape[1]}³ boxes, dataset box "
                f"is {box}"
            )
    if root.exists() and not (root / "zarr.json").is_file():
        raise ValueError(f"{root} exists and is not a cryoengine dataset; remove it or choose another path")
    shared: dict[str, Any] = {"voxel_size_A": voxel, "box": box, "snr_levels": [], "noise_realisations": 0}
    manifest = {
        class_id: {"name": class_id, "count": len(particles)} for class_id, particles in classes.items()
    }
    root_attrs = {
        "format": FORMAT,
        "format_version": OBSERVED_FORMAT_VERSION,
        "content": OBSERVED,
        **attrs,
        **shared,
        "class_labels": list(classes),
        "classes": manifest,
        "count": sum(len(particles) for particles in classes.values()),
    }
    root.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    tmp, old = root.parent / f".{root.name}.tmp-{token}", root.parent / f".{root.name}.old-{token}"
    try:
        top = zarr.create_group(store=LocalStore(tmp), attributes=root_attrs, zarr_format=3)
        top.create_group("classes")
        for class_id, particles in classes.items():
            arrays = particles.arrays()
            group_attrs = {
                "name": class_id,
                "class_id": class_id,
                "count": len(particles),
                "format_version": OBSERVED_FORMAT_VERSION,
                **shared,
                "checksums": {name: _sha256([arrays[name]]) for name in OBSERVED_ARRAYS},
                "checksum_algorithm": _CHECKSUM_ALGORITHM,
            }
            group = zarr.create_group(
                store=LocalStore(tmp / "classes" / class_id), attributes=group_attrs, zarr_format=3
            )
            _create_arrays(group, arrays, int(shard_size))
        _fsync_tree(tmp)
        if root.exists():
            os.rename(root, old)
        try:
            os.rename(tmp, root)
        except OSError:
            if old.exists():
                os.rename(old, root)
            raise
        _fsync_directory(root.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _create_arrays(group: zarr.Group, arrays: Mapping[str, np.ndarray], shard_size: int) -> None:
    """Create the record's arrays in ``group``: volumes one chunk per particle in shards, the rest plain."""
    for name, data in arrays.items():
        item_shape = data.shape[1:]
        volume = field(name).volume
        group.create_array(
            name,
            data=data,
            chunks=(1, *item_shape) if volume else (shard_size, *item_shape),
            shards=(shard_size, *item_shape) if volume else None,
            compressors=_ARRAY_COMPRESSORS.get(name, _COMPRESSORS),
            fill_value=0,
            config={"write_empty_chunks": True},  # every chunk on disk: a missing one is damage
            dimension_names=field(name).dims,
            chunk_key_encoding={"name": "default", "separator": "."},
        )


def _check_class_id(class_id: Any) -> None:
    if not isinstance(class_id, str) or not re.match(CLASS_ID_PATTERN, class_id):
        raise ValueError(f"class id {class_id!r} must match {CLASS_ID_PATTERN}")


def _check_json_dict(value: Any, label: str, reserved: Sequence[str]) -> dict[str, Any]:
    """``value`` as a plain dict after checking it is JSON (no NaN/∞) and avoids the store's keys."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{label} must be a mapping, got {type(value).__name__}")
    value = dict(value)
    clash = sorted(set(value) & set(reserved))
    if clash:
        raise ValueError(f"{label} must not set {', '.join(clash)}: the store sets them")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{label} is not JSON-serialisable: {error}") from None
    return value


def _check_dataset_attrs(dataset_attrs: Any) -> dict[str, Any]:
    if not isinstance(dataset_attrs, Mapping):
        raise ValueError(f"dataset_attrs must be a mapping, got {type(dataset_attrs).__name__}")
    attrs = dict(dataset_attrs)
    for key in _SHARED_KEYS:
        if key not in attrs:
            raise ValueError(f"dataset_attrs must have {key!r}")
    voxel = attrs["voxel_size_A"]
    if isinstance(voxel, bool) or not isinstance(voxel, int | float) or not voxel > 0:
        raise ValueError(f"dataset_attrs['voxel_size_A'] must be a positive number, got {voxel!r}")
    box = attrs["box"]
    if isinstance(box, bool) or not isinstance(box, int) or box < 1:
        raise ValueError(f"dataset_attrs['box'] must be a positive integer, got {box!r}")
    levels = attrs["snr_levels"]
    if (
        not isinstance(levels, list | tuple)
        or not levels
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < math.inf for v in levels
        )
    ):
        raise ValueError(
            f"dataset_attrs['snr_levels'] must be a non-empty list of positive finite numbers (∞ is the "
            f"clean volume, not a level), got {levels!r}"
        )
    if len(set(levels)) != len(levels):
        raise ValueError(f"dataset_attrs['snr_levels'] has repeated levels: {levels!r}")
    attrs["snr_levels"] = [float(v) for v in levels]
    realisations = attrs["noise_realisations"]
    if isinstance(realisations, bool) or not isinstance(realisations, int) or realisations < 1:
        raise ValueError(
            f"dataset_attrs['noise_realisations'] must be a positive integer, got {realisations!r}"
        )
    labels = attrs.get("class_labels")
    if not isinstance(labels, list | tuple) or not labels or len(set(labels)) != len(labels):
        raise ValueError(
            f"dataset_attrs['class_labels'] must be a non-empty list of distinct class ids (label order), "
            f"got {labels!r}"
        )
    for class_id in labels:
        _check_class_id(class_id)
    attrs["class_labels"] = list(labels)
    return _check_json_dict(attrs, "dataset_attrs", reserved=_ROOT_RESERVED)


def _check_labels_extend(root: Path, stored: Any, labels: list[str]) -> None:
    """Labels may only grow by appending classes: a stored label never moves or disappears."""
    stored = list(stored or [])
    if labels[: len(stored)] != stored:
        raise DatasetFormatError(
            f"{root} fixed the class labels {stored}; the new list {labels} would move or drop some. "
            "Only appending classes keeps labels stable: write a new dataset to reorder or remove classes"
        )


def _check_particle_attrs(attrs: dict[str, Any], class_id: str, dataset_attrs: dict[str, Any]) -> None:
    """Check that the intermediate's own metadata, where present, agree with the class and dataset."""
    if "class_id" in attrs and attrs["class_id"] != class_id:
        raise ValueError(f"particles are of class {attrs['class_id']!r}, not {class_id!r}")
    if "voxel_size_A" in attrs and not math.isclose(attrs["voxel_size_A"], dataset_attrs["voxel_size_A"]):
        raise ValueError(
            f"particles of class {class_id!r} have voxel_size_A {attrs['voxel_size_A']}, "
            f"dataset {dataset_attrs['voxel_size_A']}"
        )
    if "snr_levels" in attrs and not np.allclose(attrs["snr_levels"], dataset_attrs["snr_levels"], rtol=1e-6):
        raise ValueError(
            f"particles of class {class_id!r} have snr_levels {attrs['snr_levels']}, dataset "
            f"{dataset_attrs['snr_levels']}"
        )


def _require_root(root: Path, dataset_attrs: dict[str, Any]) -> None:
    """Create the root group and ``classes/`` unless a dataset is already there.

    The group is built in a temporary directory beside the root. Into a missing (or empty) root it is
    renamed whole. A workflow manager may already have made ``root/classes/`` (the parent of the class
    group it expects); then the two metadata files are moved in one by one, ``classes/zarr.json`` first,
    so that a root ``zarr.json`` never exists without its ``classes/`` group. Each move is an atomic
    rename, and concurrent creators write the same format, so the last one wins harmlessly.
    """
    if not (root / "zarr.json").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.parent / f".{root.name}.tmp-{secrets.token_hex(8)}"
        try:
            attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, **dataset_attrs}
            group = zarr.create_group(store=LocalStore(tmp), attributes=attrs, zarr_format=3)
            group.create_group("classes")
            _fsync_tree(tmp)
            try:
                os.rename(tmp, root)  # replaces a missing or empty directory only
            except OSError:
                if not root.is_dir():
                    raise
                if not (root / "zarr.json").is_file() and _only_directories(root):
                    (root / "classes").mkdir(exist_ok=True)
                    os.replace(tmp / "classes" / "zarr.json", root / "classes" / "zarr.json")
                    os.replace(tmp / "zarr.json", root / "zarr.json")
                # else another job created the root first, or something else is there: checked below.
            _fsync_directory(root.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    attrs = _read_root_attrs(root)
    _check_writable(root, attrs)
    _check_labels_extend(root, attrs.get("class_labels"), dataset_attrs["class_labels"])


def _check_writable(root: Path, attrs: dict[str, Any]) -> None:
    """Refuse to add to a dataset of an older format version (its classes would mix two layouts)."""
    if attrs.get("format_version") != FORMAT_VERSION:
        raise DatasetFormatError(
            f"{root} is format_version {attrs.get('format_version')}; this cryoengine writes version "
            f"{FORMAT_VERSION} only: write a new dataset (or remove {root}) instead of adding to it"
        )


def _only_directories(root: Path) -> bool:
    """Whether ``root`` holds nothing but directories (no file of another dataset or program)."""
    return all(path.is_dir() for path in root.rglob("*"))


def _remove_stale_groups(classes_dir: Path, class_id: str) -> None:
    """Remove temporary and old groups of ``class_id`` left by a killed writer."""
    stale = re.compile(rf"\.{re.escape(class_id)}\.(tmp|old)-[0-9a-f]{{16}}")
    for entry in classes_dir.iterdir():
        if stale.fullmatch(entry.name):
            shutil.rmtree(entry)


def _fsync_tree(directory: Path) -> None:
    """Flush every file and directory under ``directory`` to disk, so a rename publishes complete data."""
    for dirpath, _, filenames in os.walk(directory):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_directory(Path(dirpath))


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
