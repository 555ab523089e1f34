"""Observed particles: the ``.npz`` intermediate between importing one tomogram and writing the dataset.

An :class:`ObservedParticles` holds the boxes cut from a user's tomogram with the provenance of each
(the fields of :data:`~cryoengine.store.fields.OBSERVED_FIELDS`) and its class label; it is saved as an
uncompressed ``.npz`` (one array per field, ``label`` as a string array, ``attrs`` as a JSON string) and
read back bit for bit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cryoengine.store.fields import OBSERVED_FIELDS, expected_shape
from cryoengine.store.particle_set import ParticleFileError, read_npz, write_npz

__all__ = ["ObservedParticles"]

_DTYPES: dict[str, np.dtype] = {f.name: f.dtype for f in OBSERVED_FIELDS}


@dataclass(kw_only=True, eq=False)
class ObservedParticles:
    """`N` observed particles in `D`³ boxes (meanings in :mod:`cryoengine.store.reader`, Observed datasets).

    Arrays are converted to the dtypes of the field table on construction and their shapes checked.

    Parameters
    ----------
    observed
        `(N, D, D, D)` float32 standardised boxes.
    rotation, shift, position, tomogram, orientation_given, source_centre_A, source_pixel_size_A,
    source_row, source_file, edge_padded
        As in :data:`~cryoengine.store.fields.OBSERVED_FIELDS`: `(N, 3, 3)`, `(N, 3)`, `(N, 3)`, `(N,)`, ...
    label
        `(N,)` class id of each particle (the dataset's class groups).
    attrs
        JSON metadata: the tomogram record, the coordinate files, the import settings.
    """

    observed: np.ndarray
    rotation: np.ndarray
    shift: np.ndarray
    position: np.ndarray
    tomogram: np.ndarray
    orientation_given: np.ndarray
    source_centre_A: np.ndarray
    source_pixel_size_A: np.ndarray
    source_row: np.ndarray
    source_file: np.ndarray
    edge_padded: np.ndarray
    label: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, dtype in _DTYPES.items():
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=dtype))
        volumes = self.observed
        if volumes.ndim != 4 or not volumes.shape[1] == volumes.shape[2] == volumes.shape[3]:
            raise ValueError(f"ObservedParticles.observed must have shape (N, D, D, D), got {volumes.shape}")
        sizes: dict[str, int | str] = {"particle": volumes.shape[0], "box": volumes.shape[1]}
        for name in _DTYPES:
            shape = expected_shape(name, sizes)
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"ObservedParticles.{name} must have shape {shape}, got {getattr(self, name).shape}"
                )
        self.label = np.asarray(self.label, dtype=str)
        if self.label.shape != (len(self),):
            raise ValueError(
                f"ObservedParticles.label must have shape ({len(self)},), got {self.label.shape}"
            )
        try:
            json.dumps(self.attrs, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"ObservedParticles.attrs is not JSON-serialisable: {error}") from None

    def __len__(self) -> int:
        return self.observed.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the stored fields, name → array, in store order."""
        return {name: getattr(self, name) for name in _DTYPES}

    def select(self, mask: np.ndarray) -> ObservedParticles:
        """Return the particles where ``mask`` `(N,)` bool is True (same attrs)."""
        return ObservedParticles(
            **{name: value[mask] for name, value in self.arrays().items()},
            label=self.label[mask],
            attrs=self.attrs,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically as an uncompressed ``.npz``; return ``path``."""
        return write_npz(path, {**self.arrays(), "label": self.label}, self.attrs)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ObservedParticles:
        """Read a file written by :meth:`save` (:class:`~.particle_set.ParticleFileError` if unreadable)."""
        contents = read_npz(path, "observed particle file")
        try:
            attrs = json.loads(str(contents.pop("attrs")))
            return cls(**contents, attrs=attrs)
        except (ValueError, KeyError, TypeError) as error:
            raise ParticleFileError(f"{path} is not a readable observed particle file: {error}") from None
