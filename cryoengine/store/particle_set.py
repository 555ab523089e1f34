"""Particle sets: the in-memory and on-disk intermediate between the simulate, noise and shard steps.

A :class:`ParticleSet` holds the subtomograms of one class with their ground truth; it is saved as an
uncompressed ``.npz`` (one array per field, ``attrs`` as a JSON string) and read back bit for bit.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from cryoengine.formats.atomic_write import atomic_path
from cryoengine.store.fields import FIELDS, VOLUMES, expected_shape

__all__ = ["ParticleFileError", "ParticleSet", "concatenate"]

# Field → dtype every array is converted to, and the fields a set may lack: from the record's field table.
_DTYPES: dict[str, np.dtype] = {f.name: f.dtype for f in FIELDS}
_OPTIONAL = tuple(f.name for f in FIELDS if not f.required)


class ParticleFileError(ValueError):
    """A particle-set file that is truncated, corrupt or not a particle set."""


@dataclass(kw_only=True, eq=False)
class ParticleSet:
    """Subtomograms of one class with their ground truth, ``N`` particles in `D`³ boxes at `L` SNR levels.

    Arrays are converted to the dtypes below (C-contiguous) on construction, and their shapes checked.

    Parameters
    ----------
    clean
        `(N, D, D, D)` float32 noise-free reconstructions, ``(z, y, x)``.
    rotation
        `(N, 3, 3)` float64 ground-truth rotations, ``particle = R · reference + shift`` on ``(z, y, x)``
        (:mod:`cryoengine.physics.rotation`).
    shift
        `(N, 3)` float32 offset of the particle centre from the box centre (index ``D // 2``), voxels,
        ``(z, y, x)``.
    position
        `(N, 3)` float32 particle centre in the source tomogram, voxels, ``(z, y, x)``; the box is centred
        on the voxel ``position − shift``.
    tomogram
        `(N,)` int32 index of the source tomogram (within the class).
    defocus_um
        `(N,)` float32 defocus of the source tilt series (µm, positive = underfocus).
    noise
        `(N, K, D, D, D)` float32 reconstructions of unit-variance detector noise, K independent
        realisations (one tilt series each); or None. Given together with ``noise_scale``.
    noise_scale
        `(N,)` float32 α₁ of :mod:`~.physics.noise`: ``clean + noise_scale / √s · noise[:, k]`` is the
        particle at nominal SNR ``s``; or None.
    signal_variance
        `(N,)` float64 box variance of each particle's own isolated signal (the numerator of its measured
        SNR); or None.
    noisy
        `(N, L, D, D, D)` float32 particle at each of the `L` SNR levels; or None (then ``snr`` is None).
    snr
        `(N, L)` float32 measured SNR of each noisy volume; or None.
    attrs
        JSON-serialisable metadata (class id, ``voxel_size_A``, ``snr_levels``, provenance, ...). If it has
        ``snr_levels`` and ``noisy`` is given, their lengths must agree.
    """

    clean: np.ndarray
    rotation: np.ndarray
    shift: np.ndarray
    position: np.ndarray
    tomogram: np.ndarray
    defocus_um: np.ndarray
    noise: np.ndarray | None = None
    noise_scale: np.ndarray | None = None
    signal_variance: np.ndarray | None = None
    noisy: np.ndarray | None = None
    snr: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, dtype in _DTYPES.items():
            value = getattr(self, name)
            if value is None:
                if name not in _OPTIONAL:
                    raise ValueError(f"ParticleSet.{name} is required, got None")
                continue
            setattr(self, name, _as_array(value, name, dtype))
        clean = self.clean
        if clean.ndim != 4 or not clean.shape[1] == clean.shape[2] == clean.shape[3]:
            raise ValueError(f"ParticleSet.clean must have shape (N, D, D, D), got {clean.shape}")
        n, d = clean.shape[0], clean.shape[1]
        if (self.noise is None) != (self.noise_scale is None):
            raise ValueError(
                "ParticleSet.noise and ParticleSet.noise_scale must both be given or both be None"
            )
        if (self.noisy is None) != (self.snr is None):
            raise ValueError("ParticleSet.noisy and ParticleSet.snr must both be given or both be None")
        sizes: dict[str, int | str] = {
            "particle": n,
            "box": d,
            "realisation": self.noise.shape[1] if self.noise is not None and self.noise.ndim == 5 else "K",
            "level": self.noisy.shape[1] if self.noisy is not None and self.noisy.ndim == 5 else "L",
        }
        expected = {f.name: expected_shape(f.name, sizes) for f in FIELDS if f.name != "clean"}
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                wanted = "(" + ", ".join(map(str, shape)) + ")"
                raise ValueError(f"ParticleSet.{name} must have shape {wanted}, got {value.shape}")
        if not isinstance(self.attrs, dict):
            raise ValueError(f"ParticleSet.attrs must be a dict, got {type(self.attrs).__name__}")
        try:
            json.dumps(self.attrs, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"ParticleSet.attrs is not JSON-serialisable: {error}") from None
        levels_attr = self.attrs.get("snr_levels")
        if self.noisy is not None and levels_attr is not None and len(levels_attr) != self.noisy.shape[1]:
            raise ValueError(
                f"ParticleSet.attrs['snr_levels'] has {len(levels_attr)} levels but noisy has "
                f"{self.noisy.shape[1]}"
            )

    def __len__(self) -> int:
        return self.clean.shape[0]

    @property
    def box(self) -> int:
        """Edge `D` of the cubic boxes (voxels)."""
        return self.clean.shape[1]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the set atomically as an uncompressed ``.npz`` (``attrs`` as a JSON string).

        Parameters
        ----------
        path
            Output file, conventionally ``*.npz``.

        Returns
        -------
        Path
            ``path``.
        """
        arrays = {name: getattr(self, name) for name in _DTYPES if getattr(self, name) is not None}
        return write_npz(path, arrays, self.attrs)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ParticleSet:
        """Read a set written by :meth:`save`.

        Parameters
        ----------
        path
            ``.npz`` file.

        Returns
        -------
        ParticleSet
            With the same array bytes and attrs as the saved set.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ParticleFileError
            If the file is truncated, corrupt (zip CRC) or lacks a required field, naming ``path``.
        """
        contents = read_npz(path, "particle set")
        missing = [name for name in ("attrs", *_DTYPES) if name not in contents and name not in _OPTIONAL]
        if missing:
            raise ParticleFileError(f"{path} is not a particle set: missing field(s) {', '.join(missing)}")
        try:
            attrs = json.loads(str(contents.pop("attrs")))
            return cls(**contents, attrs=attrs)
        except (TypeError, ValueError) as error:
            raise ParticleFileError(f"{path} holds an invalid particle set: {error}") from None


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], attrs: dict[str, Any]) -> Path:
    """Write ``arrays`` and ``attrs`` (JSON, under ``"attrs"``) atomically as an uncompressed ``.npz``.

    The one writer of the intermediates (:class:`ParticleSet`, :class:`~.observed_set.ObservedParticles`).
    """
    path = Path(path)
    contents: dict[str, Any] = {**arrays, "attrs": np.array(json.dumps(attrs, sort_keys=True))}
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        np.savez(file, **contents)
    return path


def read_npz(path: str | os.PathLike[str], kind: str) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` written by :func:`write_npz` (``attrs`` still a JSON string).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ParticleFileError
        If the file is truncated or corrupt (zip CRC), naming ``path`` and ``kind`` (e.g. "particle set").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file {path} does not exist")
    try:
        with path.open("rb") as file, np.load(file, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ParticleFileError(f"{path} is not a readable {kind} (truncated or corrupt): {error}") from None


def concatenate(sets: Sequence[ParticleSet]) -> ParticleSet:
    """Join particle sets of one class (e.g. one per tomogram) along the particle axis, in order.

    Every set must carry the same optional arrays, box and level count, and the same ``attrs`` apart from
    ``provenance``. The result's ``provenance`` is the list of the parts' records (a part whose
    provenance is already such a list contributes its items), so that each tomogram's seed is kept.

    Parameters
    ----------
    sets
        One or more :class:`ParticleSet`.

    Returns
    -------
    ParticleSet
        `N = Σ Nᵢ` particles.
    """
    sets = list(sets)
    if not sets:
        raise ValueError("concatenate needs at least one ParticleSet, got none")
    first = sets[0]
    common_attrs = {key: value for key, value in first.attrs.items() if key != "provenance"}
    for index, part in enumerate(sets[1:], start=1):
        if not isinstance(part, ParticleSet):
            raise ValueError(f"sets[{index}] is a {type(part).__name__}, not a ParticleSet")
        part_attrs = {key: value for key, value in part.attrs.items() if key != "provenance"}
        if part_attrs != common_attrs:
            differing = sorted(
                key
                for key in common_attrs.keys() | part_attrs.keys()
                if common_attrs.get(key) != part_attrs.get(key)
            )
            raise ValueError(f"sets[{index}].attrs differ from sets[0].attrs in {', '.join(differing)}")
        for name in _OPTIONAL:
            if (getattr(part, name) is None) != (getattr(first, name) is None):
                raise ValueError(f"sets[{index}].{name} and sets[0].{name} are not both given or both None")
        for name in VOLUMES:
            ours, theirs = getattr(part, name), getattr(first, name)
            if ours is not None and ours.shape[1:] != theirs.shape[1:]:
                raise ValueError(
                    f"sets[{index}].{name} has item shape {ours.shape[1:]}, sets[0] {theirs.shape[1:]}"
                )
    provenance: list[Any] = []
    for part in sets:
        record = part.attrs.get("provenance")
        provenance.extend(record if isinstance(record, list) else [record])
    arrays: dict[str, Any] = {
        f.name: None if getattr(first, f.name) is None else np.concatenate([getattr(s, f.name) for s in sets])
        for f in fields(ParticleSet)
        if f.name != "attrs"
    }
    return ParticleSet(**arrays, attrs={**common_attrs, "provenance": provenance})


def _as_array(value: Any, name: str, dtype: np.dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``, refusing lossy or non-finite input."""
    array = np.asarray(value)
    if dtype.kind == "i":
        if array.dtype.kind not in "iu":
            raise ValueError(f"ParticleSet.{name} must hold integers, got dtype {array.dtype}")
        if array.size and (array.min() < np.iinfo(dtype).min or array.max() > np.iinfo(dtype).max):
            raise ValueError(f"ParticleSet.{name} has values outside the {dtype} range")
    else:
        if array.dtype.kind not in "iuf":
            raise ValueError(f"ParticleSet.{name} must hold real numbers, got dtype {array.dtype}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"ParticleSet.{name} contains non-finite values")
    return np.ascontiguousarray(array, dtype=dtype)
