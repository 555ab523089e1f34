"""The particle record, once: every field of a subtomogram's record with its dimensions and dtype.

A dataset holds one of two kinds of content (root attr ``content``):

``simulated``
    CryoEngine's own particles with their ground truth, :data:`FIELDS` (format versions 1 and 2).
    :class:`~cryoengine.store.particle_set.ParticleSet` (the intermediate), the writer (which arrays, their
    dimension names and chunking), the reader (expected shapes, :class:`~cryoengine.store.reader.Item` and
    :class:`~cryoengine.store.reader.Block`) and the tests all derive from it.
``observed``
    A user's particles cut from their tomograms, :data:`OBSERVED_FIELDS` (format version 3): the
    standardised boxes as the encoder sees them and the provenance needed to write results back.
    :class:`~cryoengine.store.observed_set.ObservedParticles` and the writer derive from it.

The pose and position fields are the same :class:`Field` in both tables. Imports no zarr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ARRAYS",
    "CONTENTS",
    "FIELDS",
    "FORMAT",
    "FORMAT_VERSION",
    "OBSERVED",
    "OBSERVED_ARRAYS",
    "OBSERVED_FIELDS",
    "OBSERVED_FORMAT_VERSION",
    "OBSERVED_PER_PARTICLE",
    "OBSERVED_VOLUMES",
    "SIMULATED",
    "PER_PARTICLE",
    "READABLE_VERSIONS",
    "VOLUMES",
    "Field",
    "expected_shape",
    "field",
    "stored_arrays",
]

FORMAT = "cryoengine.subtomograms"
#: Version of the simulated datasets written.
FORMAT_VERSION = 2
#: Version of the observed datasets written (the first that has the ``content`` root attr).
OBSERVED_FORMAT_VERSION = 3
#: Versions the reader opens (version 1 has no ``noise`` / ``noise_scale``; version 3 is observed only).
READABLE_VERSIONS = (1, 2, 3)
#: The kinds of content (root attr ``content``; absent in versions 1 and 2, which are simulated).
SIMULATED, OBSERVED = "simulated", "observed"
CONTENTS = (SIMULATED, OBSERVED)


@dataclass(frozen=True)
class Field:
    """One field of the particle record.

    Attributes
    ----------
    name
        Array name, in the ``.npz`` intermediate and in the dataset.
    dims
        Dimension names, particle axis first (the store's ``dimension_names``). ``z, y, x`` are the box
        edge `D`, ``level`` the SNR levels `L`, ``realisation`` the noise realisations `K`, ``row``,
        ``column`` and ``zyx`` have length 3.
    dtype
        The dtype every value is converted to.
    volume
        True for the `D`³ volumes (one chunk per particle in the store), False for the small
        per-particle arrays (read whole per class).
    stored
        Whether the dataset stores it (False: only the intermediate carries it).
    required
        Whether a :class:`~cryoengine.store.particle_set.ParticleSet` must have it (the simulate step's
        output); the noise step adds the others.
    since_version
        First store ``format_version`` that has the array.
    """

    name: str
    dims: tuple[str, ...]
    dtype: np.dtype
    volume: bool
    stored: bool = True
    required: bool = False
    since_version: int = 1


_F32, _F64, _I32, _I64 = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))
_BOOL = np.dtype(np.bool_)

# The pose and position, shared by both kinds of content.
_ROTATION = Field("rotation", ("particle", "row", "column"), _F64, volume=False, required=True)
_SHIFT = Field("shift", ("particle", "zyx"), _F32, volume=False, required=True)
_POSITION = Field("position", ("particle", "zyx"), _F32, volume=False, required=True)
_TOMOGRAM = Field("tomogram", ("particle",), _I32, volume=False, required=True)

#: The simulated record, in the store's array order (volumes first).
FIELDS: tuple[Field, ...] = (
    Field("clean", ("particle", "z", "y", "x"), _F32, volume=True, required=True),
    Field("noisy", ("particle", "level", "z", "y", "x"), _F32, volume=True),
    Field("noise", ("particle", "realisation", "z", "y", "x"), _F32, volume=True, since_version=2),
    Field("snr", ("particle", "level"), _F32, volume=False),
    _ROTATION,
    _SHIFT,
    _POSITION,
    _TOMOGRAM,
    Field("defocus_um", ("particle",), _F32, volume=False, required=True),
    Field("noise_scale", ("particle",), _F32, volume=False, since_version=2),
    Field("signal_variance", ("particle",), _F64, volume=False, stored=False),
)

#: The observed record (format 3), in the store's array order; every field is required. ``rotation`` is
#: the input orientation where ``orientation_given``, else the identity; ``shift`` and ``position`` are in
#: voxels of the dataset's (effective) voxel size; the ``source_*`` fields locate the particle in its
#: source tomogram and file, for writing results back.
OBSERVED_FIELDS: tuple[Field, ...] = (
    Field("observed", ("particle", "z", "y", "x"), _F32, volume=True, required=True, since_version=3),
    _ROTATION,
    _SHIFT,
    _POSITION,
    _TOMOGRAM,
    Field("orientation_given", ("particle",), _BOOL, volume=False, required=True, since_version=3),
    Field("source_centre_A", ("particle", "zyx"), _F64, volume=False, required=True, since_version=3),
    Field("source_pixel_size_A", ("particle",), _F64, volume=False, required=True, since_version=3),
    Field("source_row", ("particle",), _I64, volume=False, required=True, since_version=3),
    Field("source_file", ("particle",), _I32, volume=False, required=True, since_version=3),
    Field("edge_padded", ("particle",), _BOOL, volume=False, required=True, since_version=3),
)

_BY_NAME = {f.name: f for f in (*FIELDS, *OBSERVED_FIELDS)}

#: Names of the stored simulated arrays, in store order; the volumes; the small per-particle arrays.
ARRAYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.stored)
VOLUMES: tuple[str, ...] = tuple(f.name for f in FIELDS if f.stored and f.volume)
PER_PARTICLE: tuple[str, ...] = tuple(f.name for f in FIELDS if f.stored and not f.volume)
#: The same for observed datasets.
OBSERVED_ARRAYS: tuple[str, ...] = tuple(f.name for f in OBSERVED_FIELDS)
OBSERVED_VOLUMES: tuple[str, ...] = tuple(f.name for f in OBSERVED_FIELDS if f.volume)
OBSERVED_PER_PARTICLE: tuple[str, ...] = tuple(f.name for f in OBSERVED_FIELDS if not f.volume)

_FIXED_LENGTHS = {"row": 3, "column": 3, "zyx": 3}


def field(name: str) -> Field:
    """Return the :class:`Field` called ``name``."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown particle field {name!r}; fields are {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def stored_arrays(format_version: int, content: str = SIMULATED) -> tuple[str, ...]:
    """Names of the arrays a dataset of ``format_version`` and ``content`` stores, in store order."""
    if content == OBSERVED:
        return OBSERVED_ARRAYS
    if content != SIMULATED:
        raise ValueError(f"content must be one of {', '.join(CONTENTS)}, got {content!r}")
    return tuple(name for name in ARRAYS if _BY_NAME[name].since_version <= format_version)


def expected_shape(name: str, sizes: Mapping[str, int | str]) -> tuple[int | str, ...]:
    """Shape of field ``name`` given the sizes of its variable dimensions.

    Parameters
    ----------
    name
        Field name.
    sizes
        ``particle`` (`N`), ``box`` (`D`), and where the field has them ``level`` (`L`) and
        ``realisation`` (`K`); a string stands for a size not known (shown as is in a message).

    Returns
    -------
    tuple
        One entry per dimension of the field.
    """
    shape: list[int | str] = []
    for dim in field(name).dims:
        if dim in _FIXED_LENGTHS:
            shape.append(_FIXED_LENGTHS[dim])
        elif dim in ("z", "y", "x"):
            shape.append(sizes["box"])
        else:
            shape.append(sizes[dim])
    return tuple(shape)
