"""The particle record, once: every field of a subtomogram's record with its dimensions and dtype.

:class:`~cryoengine.store.particle_set.ParticleSet` (the intermediate), the writer (which arrays, their
dimension names and chunking), the reader (expected shapes, :class:`~cryoengine.store.reader.Item` and
:class:`~cryoengine.store.reader.Block`) and the tests all derive from :data:`FIELDS`. Imports no zarr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ARRAYS",
    "FIELDS",
    "FORMAT",
    "FORMAT_VERSION",
    "PER_PARTICLE",
    "READABLE_VERSIONS",
    "VOLUMES",
    "Field",
    "expected_shape",
    "field",
    "stored_arrays",
]

FORMAT = "cryoengine.subtomograms"
FORMAT_VERSION = 2
#: Versions the reader opens (version 1 has no ``noise`` / ``noise_scale``).
READABLE_VERSIONS = (1, 2)


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


_F32, _F64, _I32 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32)

#: The record, in the store's array order (volumes first).
FIELDS: tuple[Field, ...] = (
    Field("clean", ("particle", "z", "y", "x"), _F32, volume=True, required=True),
    Field("noisy", ("particle", "level", "z", "y", "x"), _F32, volume=True),
    Field("noise", ("particle", "realisation", "z", "y", "x"), _F32, volume=True, since_version=2),
    Field("snr", ("particle", "level"), _F32, volume=False),
    Field("rotation", ("particle", "row", "column"), _F64, volume=False, required=True),
    Field("shift", ("particle", "zyx"), _F32, volume=False, required=True),
    Field("position", ("particle", "zyx"), _F32, volume=False, required=True),
    Field("tomogram", ("particle",), _I32, volume=False, required=True),
    Field("defocus_um", ("particle",), _F32, volume=False, required=True),
    Field("noise_scale", ("particle",), _F32, volume=False, since_version=2),
    Field("signal_variance", ("particle",), _F64, volume=False, stored=False),
)

_BY_NAME = {f.name: f for f in FIELDS}

#: Names of the stored arrays, in store order; the volumes; the small per-particle arrays.
ARRAYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.stored)
VOLUMES: tuple[str, ...] = tuple(f.name for f in FIELDS if f.stored and f.volume)
PER_PARTICLE: tuple[str, ...] = tuple(f.name for f in FIELDS if f.stored and not f.volume)

_FIXED_LENGTHS = {"row": 3, "column": 3, "zyx": 3}


def field(name: str) -> Field:
    """Return the :class:`Field` called ``name``."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown particle field {name!r}; fields are {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def stored_arrays(format_version: int) -> tuple[str, ...]:
    """Names of the arrays a dataset of ``format_version`` stores, in store order."""
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
