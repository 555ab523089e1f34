"""Reading the subtomogram dataset ``dataset.zarr`` (DESIGN §4), and its layout: read any item or block.

The trainer and the CLI read through :func:`open_dataset`; writing is :mod:`cryoengine.store.writer`, the
record's fields are :mod:`cryoengine.store.fields`.

Layout (format ``cryoengine.subtomograms``, ``format_version`` 2; observed datasets version 3, below)
-----------------------------------------------------------------------------------------------------
``dataset.zarr/`` (Zarr v3 group)
    attrs: ``format``, ``format_version``, the dataset attrs given by the workflow (``voxel_size_A``,
    ``box``, ``snr_levels``, ``noise_realisations``, ``class_labels``, ``tilt_scheme``, ``provenance``,
    ...), and, once :func:`write_manifest` has run, ``classes`` ``{id: {name, source, ..., count}}`` and
    the total ``count``.
Labels
    ``class_labels`` lists every configured class id once, in label order (the config's order), fixed
    when the root is created: ``Item.class_index`` is a class's position there, whatever groups exist.
    A class that has no group (an optional class that could not be fetched, a job still running) keeps
    its label reserved. The list may only grow by appending (a writer refuses to move or drop a label).
    A group the manifest lists but that is missing (deleted for a rebuild) is an error on open, never a
    silent shift of the other labels; a group without a label is an error too. Format 1 kept no label
    table: its labels are the sorted ids of the groups present.
``dataset.zarr/classes/<class_id>/`` (group)
    attrs: the class attrs given by the workflow (name, source, provenance, ...), ``class_id``, ``count``,
    copies of ``voxel_size_A``, ``box``, ``snr_levels``, ``noise_realisations`` and ``format_version``,
    ``checksums`` and the ``particle_set_attrs`` of the intermediate. Arrays, particle axis first:
    ``clean`` `(N, D, D, D)`, ``noisy`` `(N, L, D, D, D)`, ``noise`` `(N, K, D, D, D)`, ``noise_scale``
    `(N,)`, ``snr`` `(N, L)`, ``rotation`` `(N, 3, 3)`, ``shift`` `(N, 3)`, ``position`` `(N, 3)`,
    ``tomogram`` `(N,)`, ``defocus_um`` `(N,)` (meanings in :class:`~.particle_set.ParticleSet`).
    ``noisy[:, l]`` is at ``snr_levels[l]``; the clean (∞) level is ``clean``, so ``snr_levels`` holds
    finite levels only.
Noise (format 2)
    ``noise[:, k]`` are `K` independent unit-noise reconstructions (one detector-noise tilt series each,
    reconstructed like the signal) and ``noise_scale`` the class-blind α₁ of :mod:`cryoengine.physics.noise`:
    ``clean + noise_scale / √s · noise[:, k]`` is the particle at nominal SNR ``s``, for any ``s > 0``
    and any ``k``; two views with different ``k`` carry independent noise. The stored ``noisy[:, l]`` is
    exactly that mix with ``s = snr_levels[l]`` and ``k = l mod K`` (float32 arithmetic), and
    ``snr[:, l]`` is the measured SNR of the particle's *own* isolated signal against that noise.
Format 1
    Written before the noise arrays existed: no ``noise``, ``noise_scale`` or ``noise_realisations``; its
    ``noisy`` levels share one noise realisation and were calibrated per box. The reader opens it
    (:attr:`Dataset.format_version` 1, ``Item.noise`` and ``Item.noise_scale`` None); writers refuse to add
    version-2 classes to it.
Chunking
    ``clean`` and ``noisy``: inner chunk = one particle (`(1, D, D, D)`, `(1, L, D, D, D)`) inside shards of
    ``shard_size`` particles (sharding codec), so random access reads one chunk and a cluster file
    system sees one file per ``shard_size`` particles. The small per-particle arrays are plain chunks of
    ``shard_size`` rows, aligned with the shards; the reader loads them whole per class (~120 B/particle).
    Chunk keys use the ``.`` separator, so each array directory holds its files flat (``c.0.0.0.0``).
Compression
    Blosc (zstd level 3, bit-shuffle) then CRC-32C on every chunk. Lossless float32 cryo-ET volumes hardly
    compress (noise fills the mantissas): bit-shuffled zstd gave 1.13-1.16× on simulated 32³ boxes against
    1.05-1.08× for plain zstd, at the same read speed; the CRC makes a corrupted chunk fail loudly on read.
    ``noise`` is stored raw (CRC-32C only), chosen by measurement on 96 × 2 simulated 24³ unit-noise
    boxes: bit-shuffled zstd 1.14× at 1.16 ms per random item read, lz4 1.04× at 1.24 ms, raw 1.00× at
    0.93 ms (and 3× faster to write); the loader's read speed matters more than 14 % of that array.
Concurrency
    Class jobs may run at the same time on a cluster. Each writes only its own group, and the root is
    created once (atomically) and never rewritten by them, so no root-attribute update can be lost; the
    root ``classes`` manifest is written by :func:`write_manifest`, once, after every class is done.
    Readers list the class groups on disk, so the dataset is readable before the manifest exists.
Missing data
    Every chunk is written, even an all-zero one, so a chunk file that is not on disk raises
    :class:`MissingChunkError` naming the class, array, file and index instead of reading as zeros.
Atomic class write
    The group is written to ``classes/.<id>.tmp-<hex>``, fsynced, then renamed to ``classes/<id>``; an
    existing group is first renamed to ``classes/.<id>.old-<hex>`` and removed after the swap. Names that
    start with a dot are never classes, so a killed writer leaves either the old group, the new one, or
    (killed between the two renames) none, never a half group; the next write of that class removes the
    stale dot-directories. Two writers of the same class at once are not supported.
Checksums
    ``checksums[array]`` is the sha256 of the array's little-endian C-order bytes (the whole `(N, ...)`
    array), computed from the intermediate before writing and recomputed from the store by
    :meth:`Dataset.verify`.

Observed datasets (``format_version`` 3, root attr ``content: observed``)
--------------------------------------------------------------------------
A user's particles cut from their tomograms (``python -m cryoengine import-particles``). The root attr
``content`` says what a dataset holds: ``observed`` here; absent (versions 1 and 2) means ``simulated``.
The version is new so that a reader of versions 1-2 refuses these datasets instead of failing on a missing
``clean``; simulated datasets are still written as version 2, unchanged.
Root attrs
    ``format``, ``format_version`` 3, ``content`` ``"observed"``, ``voxel_size_A`` (the EFFECTIVE voxel of
    the boxes after Fourier rescaling, e.g. 9.996 Å for 7.84 Å tomograms asked at 10 Å),
    ``requested_voxel_size_A`` (the voxel asked for), ``box``, ``snr_levels`` ``[]`` and
    ``noise_realisations`` 0 (no noise model: the data are the noise), ``class_labels``, ``tomograms``
    (one entry per ``tomogram`` index: ``name``, ``source`` file, ``shape_zyx``, ``voxel_size_A``,
    ``size_zyx_A`` (the extent RELION's centred coordinates refer to), ``coordinate_pixel_size_A``),
    ``particle_files`` (the coordinate files, indexed by ``source_file``), ``import`` (``input_format``,
    ``edge``, ``invert_contrast``, ``normalisation``, ``label_column``, the rescaling plan per tomogram,
    and for copick the config, object, voxel spacing and tomogram type), ``provenance``, ``classes`` and
    ``count`` (the manifest, written with the dataset).
Classes
    One group ``unlabelled``, or one per value of the label column (the value is the class id).
Arrays (class group attrs as for simulated classes)
    ``observed`` `(N, D, D, D)` float32, the box as the encoder sees it (contrast convention and per-box
    standardisation of :mod:`cryoengine.physics.box_cutting`), chunked like ``clean``; ``rotation``
    `(N, 3, 3)` the input orientation, identity where ``orientation_given`` `(N,)` bool is False;
    ``shift`` `(N, 3)` float32 sub-voxel offset of the particle centre from the box centre and
    ``position`` `(N, 3)` float32 particle centre, both in dataset voxels; ``tomogram`` `(N,)` int32;
    ``source_centre_A`` `(N, 3)` float64 particle centre in Å from the centre of the source tomogram's
    voxel 0, ``(z, y, x)``; ``source_pixel_size_A`` `(N,)` float64 the source tomogram's voxel;
    ``source_row`` `(N,)` int64 row in ``particle_files[source_file]``; ``source_file`` `(N,)` int32;
    ``edge_padded`` `(N,)` bool the box reached beyond the tomogram and was padded.
Atomic import
    The whole dataset is built in a hidden sibling directory and renamed into place, so a failed import
    leaves no dataset (an existing one at the path is replaced only on success).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from cryoengine.store.fields import (
    FORMAT,
    OBSERVED,
    OBSERVED_FORMAT_VERSION,
    OBSERVED_PER_PARTICLE,
    OBSERVED_VOLUMES,
    PER_PARTICLE,
    READABLE_VERSIONS,
    SIMULATED,
    VOLUMES,
    expected_shape,
    stored_arrays,
)

# Dataset-level keys every class group carries a copy of, checked against the root on open.
_SHARED_KEYS = ("voxel_size_A", "box", "snr_levels", "noise_realisations")


class DatasetNotFoundError(FileNotFoundError):
    """A path that does not exist or is not a Zarr group."""


class DatasetFormatError(ValueError):
    """A Zarr group that is not a readable ``cryoengine.subtomograms`` dataset, or is inconsistent."""


class ChecksumError(ValueError):
    """Stored data that do not match their checksum or cannot be decoded."""


class MissingChunkError(ChecksumError):
    """A chunk (shard) file of an array that is not on disk: the dataset is damaged, never read as zeros."""


class ClassNotFoundError(KeyError, ValueError):
    """A class id that has no group in the dataset (the message lists the available ones)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, eq=False)
class Item:
    """One subtomogram with its ground truth.

    Attributes
    ----------
    index
        Global index in the dataset (classes in label order, then particles in class order).
    class_id
        Class of the particle.
    class_index
        The class's stable label, its position in :attr:`Dataset.class_labels` (fixed from the config when
        the dataset was created, whatever groups exist).
    particle_index
        Row of the particle in its class group.
    clean
        `(D, D, D)` float32 noise-free volume (None in an observed dataset).
    noisy
        `(L, D, D, D)` float32 volume at each SNR level (None in an observed dataset).
    snr
        `(L,)` float32 measured SNR of each noisy volume (`(0,)` in an observed dataset).
    rotation
        `(3, 3)` float64, ``particle = R · reference + shift``.
    shift
        `(3,)` float32 voxels, ``(z, y, x)``.
    position
        `(3,)` float32 particle centre in the source tomogram, voxels, ``(z, y, x)``.
    tomogram
        Source tomogram index.
    defocus_um
        Defocus (µm, positive = underfocus); None in an observed dataset.
    noise
        `(K, D, D, D)` float32 independent unit-noise reconstructions at the particle (format 2; None
        in format 1): ``clean + noise_scale / √s · noise[k]`` is the particle at nominal SNR ``s``, for
        any ``s > 0`` and any ``k``.
    noise_scale
        α₁ of the particle's tomogram, class-blind (:mod:`cryoengine.physics.noise`); None in format 1.
    observed
        `(D, D, D)` float32 the user's standardised box (observed datasets; None for simulated ones).
    orientation_given, source_centre_A, source_pixel_size_A, source_row, source_file, edge_padded
        The observed particle's provenance (module docstring, Observed datasets); None for simulated.
    """

    index: int
    class_id: str
    class_index: int
    particle_index: int
    clean: np.ndarray | None
    noisy: np.ndarray | None
    snr: np.ndarray
    rotation: np.ndarray
    shift: np.ndarray
    position: np.ndarray
    tomogram: int
    defocus_um: float | None
    noise: np.ndarray | None = None
    noise_scale: float | None = None
    observed: np.ndarray | None = None
    orientation_given: bool | None = None
    source_centre_A: np.ndarray | None = None
    source_pixel_size_A: float | None = None
    source_row: int | None = None
    source_file: int | None = None
    edge_padded: bool | None = None


@dataclass(frozen=True, eq=False)
class Block:
    """Consecutive particles of one class (one shard when produced by :meth:`Dataset.iter_shards`).

    Attributes
    ----------
    class_id, class_index
        As in :class:`Item`.
    particle_indices
        Rows of the block in its class group.
    indices
        Global indices of the block's particles.
    clean, noisy, snr, rotation, shift, position, tomogram, defocus_um, noise, noise_scale
        As in :class:`Item` with a leading particle axis `n`: ``clean`` `(n, D, D, D)`, ``tomogram``
        `(n,)` int32, ``noise`` `(n, K, D, D, D)` and ``noise_scale`` `(n,)` float32 (None in format 1), ...
        A volume left out by :meth:`Dataset.read_block`'s ``arrays`` is None.
    observed, orientation_given, source_centre_A, source_pixel_size_A, source_row, source_file, edge_padded
        As in :class:`Item` with a leading particle axis (observed datasets; None for simulated ones, whose
        ``defocus_um`` is None in turn, and ``snr`` `(n, 0)`).
    """

    class_id: str
    class_index: int
    particle_indices: range
    indices: range
    snr: np.ndarray
    rotation: np.ndarray
    shift: np.ndarray
    position: np.ndarray
    tomogram: np.ndarray
    defocus_um: np.ndarray | None
    clean: np.ndarray | None = None
    noisy: np.ndarray | None = None
    noise: np.ndarray | None = None
    noise_scale: np.ndarray | None = None
    observed: np.ndarray | None = None
    orientation_given: np.ndarray | None = None
    source_centre_A: np.ndarray | None = None
    source_pixel_size_A: np.ndarray | None = None
    source_row: np.ndarray | None = None
    source_file: np.ndarray | None = None
    edge_padded: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.particle_indices)

    def volumes_at(self, level: int | None) -> np.ndarray:
        """Return `(n, D, D, D)` volumes: ``clean`` for ``level`` None, else ``noisy[:, level]``.

        In an observed dataset ``level`` None gives ``observed`` (it has no SNR levels).

        Raises ValueError when that volume was not read (:meth:`Dataset.read_block`'s ``arrays``).
        """
        if level is None and self.clean is None and self.observed is not None:
            return self.observed
        volumes = self.clean if level is None else None if self.noisy is None else self.noisy[:, level]
        if volumes is None:
            raise ValueError(
                f"block of class {self.class_id!r} was read without {'clean' if level is None else 'noisy'}"
            )
        return volumes


class Dataset:
    """Read-only view of a ``dataset.zarr``: `len()` subtomograms, random access, shard iteration.

    Items are numbered over the classes present in label order, then in class order; :attr:`classes`
    are the ids present (label order), :attr:`class_labels` every labelled id (format 2). Instances
    pickle as their path and reopen in the receiving process, so they can be handed to worker processes.

    Parameters
    ----------
    path
        The ``dataset.zarr`` directory.

    Raises
    ------
    DatasetNotFoundError
        ``path`` is missing or not a dataset.
    DatasetFormatError
        Wrong ``format`` or ``format_version``, or a class group inconsistent with the root.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.attrs: dict[str, Any] = _read_root_attrs(self.path)
        self._version = int(self.attrs["format_version"])
        self.content: str = str(self.attrs.get("content", SIMULATED))
        self._names = stored_arrays(self._version, self.content)
        observed = self.content == OBSERVED
        self._volumes = OBSERVED_VOLUMES if observed else tuple(n for n in VOLUMES if n in self._names)
        self._small = (
            OBSERVED_PER_PARTICLE if observed else tuple(n for n in PER_PARTICLE if n in self._names)
        )
        present = _list_class_ids(self.path)
        if self._version >= 2:
            self.class_labels: tuple[str, ...] = tuple(self.attrs["class_labels"])
        else:  # format 1 kept no label table: its labels were the sorted groups present
            self.class_labels = tuple(present)
        unlabelled = sorted(set(present) - set(self.class_labels))
        if unlabelled:
            raise DatasetFormatError(
                f"{self.path} holds class group(s) {', '.join(unlabelled)} that have no label in its "
                f"class_labels {list(self.class_labels)}; run write_manifest with the configuration"
            )
        manifest = self.attrs.get("classes") or {}
        lost = sorted(set(manifest) - set(present))
        if lost:
            raise ClassNotFoundError(
                f"class group(s) {', '.join(lost)} of {self.path} are in its manifest but missing from "
                f"{self.path / 'classes'}; rebuild them (e.g. snakemake --forcerun shard) before reading"
            )
        self.classes: tuple[str, ...] = tuple(c for c in self.class_labels if c in present)
        self._groups = {class_id: _open_group(self.path, f"classes/{class_id}") for class_id in self.classes}
        self.counts: dict[str, int] = {}
        for class_id, group in self._groups.items():
            attrs: dict[str, Any] = group.attrs.asdict()
            if attrs.get("format_version") != self._version:
                raise DatasetFormatError(
                    f"class {class_id!r} of {self.path} has format_version {attrs.get('format_version')!r}, "
                    f"the dataset {self._version}; re-run that class"
                )
            for key in _SHARED_KEYS:
                if key in self.attrs and attrs.get(key) != self.attrs[key]:
                    raise DatasetFormatError(
                        f"class {class_id!r} of {self.path} has {key} = {attrs.get(key)!r} but the dataset "
                        f"has {self.attrs[key]!r}; re-run that class or write_manifest"
                    )
            self.counts[class_id] = int(attrs["count"])
        self._starts = np.concatenate([[0], np.cumsum([self.counts[c] for c in self.classes])]).astype(int)
        self._arrays: dict[str, dict[str, zarr.Array]] = {}
        self._per_particle: dict[str, dict[str, np.ndarray]] = {}
        self._files_seen: dict[tuple[str, str], set[int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, classes={len(self.classes)}, items={len(self)})"

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def voxel_size_A(self) -> float:
        """Voxel size (Å)."""
        return float(self.attrs["voxel_size_A"])

    @property
    def box(self) -> int:
        """Edge `D` of the subtomograms (voxels)."""
        return int(self.attrs["box"])

    @property
    def format_version(self) -> int:
        """Store format version of the dataset (1 or 2; 3 for observed datasets)."""
        return self._version

    @property
    def observed(self) -> bool:
        """Whether the dataset holds a user's particles (``content: observed``), not simulated ones."""
        return self.content == OBSERVED

    @property
    def noise_realisations(self) -> int:
        """Unit-noise realisations `K` stored per particle (0 in format 1, which stores none)."""
        return int(self.attrs["noise_realisations"]) if self._version >= 2 else 0

    @property
    def snr_levels(self) -> tuple[float, ...]:
        """The `L` target SNR levels of ``noisy``, in level-axis order (∞ is ``clean``)."""
        return tuple(float(level) for level in self.attrs["snr_levels"])

    def class_index(self, class_id: str) -> int:
        """Stable label of ``class_id``: its position in :attr:`class_labels`.

        Raises :class:`ClassNotFoundError` if the class has no group.
        """
        if class_id not in self._groups:
            raise ClassNotFoundError(
                f"class {class_id!r} is not in {self.path} (available: {', '.join(self.classes) or 'none'})"
            )
        return self.class_labels.index(class_id)

    def _known(self, class_id: str) -> str:
        """``class_id`` after checking that it has a group."""
        self.class_index(class_id)
        return class_id

    def class_group(self, class_id: str) -> zarr.Group:
        """Return the read-only Zarr group of one class (its ``.attrs`` hold the class metadata)."""
        self.class_index(class_id)
        return self._groups[class_id]

    def __getitem__(self, index: int) -> Item:
        """Read subtomogram ``index`` (negative: from the end): one chunk of ``clean``, one of ``noisy``."""
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"dataset indices must be integers, got {type(index).__name__}")
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} subtomograms")
        position = int(np.searchsorted(self._starts, index, side="right")) - 1
        class_id = self.classes[position]
        row = index - int(self._starts[position])
        small = self.per_particle_arrays(class_id)
        if self.observed:
            return Item(
                index=index,
                class_id=class_id,
                class_index=self.class_labels.index(class_id),
                particle_index=row,
                clean=None,
                noisy=None,
                snr=np.zeros(0, dtype=np.float32),
                rotation=small["rotation"][row].copy(),
                shift=small["shift"][row].copy(),
                position=small["position"][row].copy(),
                tomogram=int(small["tomogram"][row]),
                defocus_um=None,
                observed=self._read(class_id, "observed", row),
                orientation_given=bool(small["orientation_given"][row]),
                source_centre_A=small["source_centre_A"][row].copy(),
                source_pixel_size_A=float(small["source_pixel_size_A"][row]),
                source_row=int(small["source_row"][row]),
                source_file=int(small["source_file"][row]),
                edge_padded=bool(small["edge_padded"][row]),
            )
        return Item(
            index=index,
            class_id=class_id,
            class_index=self.class_labels.index(class_id),
            particle_index=row,
            clean=self._read(class_id, "clean", row),
            noisy=self._read(class_id, "noisy", row),
            snr=small["snr"][row].copy(),
            rotation=small["rotation"][row].copy(),
            shift=small["shift"][row].copy(),
            position=small["position"][row].copy(),
            tomogram=int(small["tomogram"][row]),
            defocus_um=float(small["defocus_um"][row]),
            noise=self._read(class_id, "noise", row) if self._version >= 2 else None,
            noise_scale=float(small["noise_scale"][row]) if self._version >= 2 else None,
        )

    def shard_ranges(self, class_id: str | None = None) -> list[tuple[str, int, int]]:
        """List the shards as ``(class_id, start, stop)`` row ranges, for splitting work between workers.

        Parameters
        ----------
        class_id
            Only this class; all classes (sorted) when None.

        Returns
        -------
        list of tuple
            Rows ``start:stop`` of ``class_id`` held by one shard file of ``clean`` and of ``noisy``.
        """
        class_ids = self.classes if class_id is None else (self._known(class_id),)
        ranges: list[tuple[str, int, int]] = []
        for cid in class_ids:
            rows = _rows_per_file(self._class_arrays(cid)[self._volumes[0]])
            count = self.counts[cid]
            ranges.extend((cid, start, min(start + rows, count)) for start in range(0, count, rows))
        return ranges

    def read_block(
        self, class_id: str, start: int, stop: int, arrays: Collection[str] | None = None
    ) -> Block:
        """Read rows ``start:stop`` of one class; fastest when they are one of :meth:`shard_ranges`.

        Parameters
        ----------
        class_id
            A class present in the dataset.
        start, stop
            Rows of the class, ``0 ≤ start ≤ stop ≤`` its count.
        arrays
            The volumes to read (of ``clean``, ``noisy``, ``noise``); the others are None in the block.
            None reads every volume the format stores. The small per-particle arrays are always given.

        Returns
        -------
        Block
            The particles with their ground truth.
        """
        class_index = self.class_index(class_id)
        if not 0 <= start <= stop <= self.counts[class_id]:
            raise ValueError(f"rows {start}:{stop} are outside class {class_id!r} of {self.counts[class_id]}")
        volumes = self._volumes
        if arrays is not None:
            unknown = sorted(set(arrays) - set(volumes))
            if unknown:
                raise ValueError(f"arrays {unknown} are not volumes of this dataset; choose from {volumes}")
            volumes = tuple(name for name in volumes if name in arrays)
        small: dict[str, Any] = dict(self.per_particle_arrays(class_id))
        offset = int(self._starts[self.classes.index(class_id)])
        return Block(
            class_id=class_id,
            class_index=class_index,
            particle_indices=range(start, stop),
            indices=range(offset + start, offset + stop),
            **{name: self._read(class_id, name, slice(start, stop)) for name in volumes},
            **{name: small[name][start:stop].copy() for name in small},
            **(self._no_simulation(stop - start) if self.observed else {}),
        )

    @staticmethod
    def _no_simulation(n: int) -> dict[str, Any]:
        """Return the simulated-only fields of a block of `n` observed particles: no SNR, no defocus."""
        return {"snr": np.zeros((n, 0), np.float32), "defocus_um": None}

    def iter_shards(self, class_id: str | None = None) -> Iterator[Block]:
        """Yield the dataset (or one class) shard by shard, in index order: the fast sequential read.

        Yields
        ------
        Block
            One shard's particles.
        """
        for cid, start, stop in self.shard_ranges(class_id):
            yield self.read_block(cid, start, stop)

    def verify(self, class_id: str | None = None) -> None:
        """Recompute the checksums of one class, or of all classes and the manifest, from the stored data.

        Reads shard by shard, so memory stays at one shard per array.

        Raises
        ------
        ChecksumError
            Naming the class and array whose data are corrupt or differ from the checksum.
        ClassNotFoundError
            ``class_id`` is absent, or (all classes) the manifest lists a class that has no group.
        DatasetFormatError
            (All classes) the manifest is stale: a class is not in it or has another count.
        """
        if class_id is None:
            self._verify_manifest()
        class_ids = self.classes if class_id is None else (self._known(class_id),)
        for cid in class_ids:
            class_attrs: dict[str, Any] = self._groups[cid].attrs.asdict()
            stored = class_attrs["checksums"]
            arrays = self._class_arrays(cid)
            for name in self._names:
                rows = _rows_per_file(arrays[name])
                count = self.counts[cid]
                blocks = (
                    self._read(cid, name, slice(start, start + rows)) for start in range(0, count, rows)
                )
                computed = _sha256(blocks)
                if computed != stored.get(name):
                    raise ChecksumError(
                        f"class {cid!r} array {name!r} of {self.path} fails its checksum "
                        f"(stored sha256 {str(stored.get(name))[:16]}…, computed {computed[:16]}…)"
                    )

    def _verify_manifest(self) -> None:
        manifest = self.attrs.get("classes") or {}
        if not manifest:
            return
        for class_id in self.classes:
            if class_id not in manifest:
                raise DatasetFormatError(
                    f"class {class_id!r} of {self.path} is not in its manifest; re-run write_manifest"
                )
            if manifest[class_id].get("count") != self.counts[class_id]:
                raise DatasetFormatError(
                    f"class {class_id!r} of {self.path} holds {self.counts[class_id]} particles, its "
                    f"manifest says {manifest[class_id].get('count')}; re-run write_manifest"
                )

    def _class_arrays(self, class_id: str) -> dict[str, zarr.Array]:
        """Open the arrays of a class once, checking their shapes against the class attrs."""
        if class_id not in self._arrays:
            group = self._groups[class_id]
            n, d, levels = self.counts[class_id], self.box, len(self.snr_levels)
            sizes = {"particle": n, "box": d, "level": levels, "realisation": self.noise_realisations}
            expected = {name: expected_shape(name, sizes) for name in self._names}
            arrays = {}
            for name, shape in expected.items():
                node = group.get(name)
                if not isinstance(node, zarr.Array):
                    raise DatasetFormatError(f"class {class_id!r} of {self.path} has no array {name!r}")
                if node.shape[:1] != shape[:1]:
                    raise DatasetFormatError(
                        f"class {class_id!r} of {self.path}: count mismatch, array {name!r} holds "
                        f"{node.shape[0]} particles but the class's count is {n}; rewrite the class"
                    )
                if node.shape != shape:
                    raise DatasetFormatError(
                        f"class {class_id!r} array {name!r} of {self.path} has shape {node.shape}, "
                        f"expected {shape}"
                    )
                arrays[name] = node
            self._arrays[class_id] = arrays
        return self._arrays[class_id]

    def per_particle_arrays(self, class_id: str) -> dict[str, np.ndarray]:
        """Return the small per-particle arrays of one class, read whole on first use (~120 B/particle).

        Parameters
        ----------
        class_id
            A class present in the dataset.

        Returns
        -------
        dict
            Name → `(N, ...)` array, for every per-particle field the format stores (``snr``,
            ``rotation``, ``shift``, ``position``, ``tomogram``, ``defocus_um``, and ``noise_scale`` in
            format 2; for observed datasets those of :data:`~cryoengine.store.fields.OBSERVED_FIELDS`),
            cached: treat them as read-only.
        """
        self._known(class_id)
        if class_id not in self._per_particle:
            self._per_particle[class_id] = {
                name: self._read(class_id, name, slice(None)) for name in self._small
            }
        return self._per_particle[class_id]

    def _read(self, class_id: str, name: str, selection: int | slice) -> np.ndarray:
        array = self._class_arrays(class_id)[name]
        self._require_files(class_id, name, array, selection)
        try:
            return np.asarray(array[selection])
        except (ValueError, RuntimeError) as error:  # CRC-32C mismatch, undecodable or truncated chunk
            raise ChecksumError(
                f"class {class_id!r} array {name!r} of {self.path} has corrupt data at {selection}: {error}"
            ) from None

    def _require_files(self, class_id: str, name: str, array: zarr.Array, selection: int | slice) -> None:
        """Raise :class:`MissingChunkError` if a file holding rows ``selection`` is not on disk.

        Zarr reads a missing chunk as its fill value (zeros); every chunk is written (format 2), so a
        missing one is damage. Format 1 skipped all-zero chunks of the small arrays, so only its volumes
        are checked. Files already seen are not checked again.
        """
        if self._version < 2 and name not in VOLUMES:
            return
        rows = range(self.counts[class_id])[selection]
        rows = rows if isinstance(rows, range) else range(rows, rows + 1)
        if not rows:
            return
        per_file = _rows_per_file(array)
        seen = self._files_seen.setdefault((class_id, name), set())
        for file_index in range(rows[0] // per_file, rows[-1] // per_file + 1):
            if file_index in seen:
                continue
            key = ".".join(["c", str(file_index), *["0"] * (array.ndim - 1)])
            if not (self.path / "classes" / class_id / name / key).is_file():
                first = file_index * per_file
                raise MissingChunkError(
                    f"class {class_id!r} array {name!r} of {self.path}: chunk file {name}/{key} (rows "
                    f"{first}:{min(first + per_file, self.counts[class_id])}, read at index {selection}) is "
                    "missing; the class is damaged, rebuild it"
                )
            seen.add(file_index)


def open_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Open a ``dataset.zarr`` read-only.

    Parameters
    ----------
    path
        The dataset directory.

    Returns
    -------
    Dataset
        The reader; see its methods for random access, shard iteration and verification.
    """
    return Dataset(path)


def _open_group(root: Path, path: str) -> zarr.Group:
    return zarr.open_group(store=LocalStore(root, read_only=True), path=path, mode="r", zarr_format=3)


def _read_root_attrs(root: Path) -> dict[str, Any]:
    """Root attributes of a dataset after checking its format and version."""
    if not root.exists():
        raise DatasetNotFoundError(f"dataset {root} does not exist")
    if not (root / "zarr.json").is_file():
        raise DatasetNotFoundError(f"{root} is not a cryoengine dataset: it has no zarr.json")
    try:
        attrs = _open_group(root, "").attrs.asdict()
    except (ValueError, TypeError, KeyError) as error:
        raise DatasetFormatError(f"{root} is not a readable Zarr v3 group: {error}") from None
    if attrs.get("format") != FORMAT:
        raise DatasetFormatError(f"{root} has format {attrs.get('format')!r}, expected {FORMAT!r}")
    if attrs.get("format_version") not in READABLE_VERSIONS:
        raise DatasetFormatError(
            f"{root} has format_version {attrs.get('format_version')!r}; this cryoengine reads "
            f"format_version {', '.join(map(str, READABLE_VERSIONS))}"
        )
    observed = attrs["format_version"] == OBSERVED_FORMAT_VERSION
    if attrs.get("content", SIMULATED) != (OBSERVED if observed else SIMULATED):
        raise DatasetFormatError(
            f"{root} has content {attrs.get('content', SIMULATED)!r} at format_version "
            f"{attrs['format_version']}; version {OBSERVED_FORMAT_VERSION} holds {OBSERVED!r} particles "
            f"only, versions 1-2 {SIMULATED!r} ones"
        )
    if not (root / "classes" / "zarr.json").is_file():
        raise DatasetFormatError(f"{root} has no classes/ group")
    return attrs


def _list_class_ids(root: Path) -> list[str]:
    """Class groups on disk, sorted; dot-directories (temporary or old groups) are not classes."""
    with os.scandir(root / "classes") as entries:
        return sorted(
            entry.name
            for entry in entries
            if entry.is_dir()
            and not entry.name.startswith(".")
            and os.path.isfile(Path(entry.path, "zarr.json"))
        )


def _rows_per_file(array: zarr.Array) -> int:
    """Particles per stored file of ``array``: its shard, or for unsharded arrays its chunk."""
    return (array.shards or array.chunks)[0]


def _sha256(blocks: Iterable[np.ndarray]) -> str:
    """sha256 of the little-endian C-order bytes of the blocks, concatenated."""
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<")).data)
    return digest.hexdigest()
