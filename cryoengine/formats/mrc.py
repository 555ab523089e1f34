"""MRC files: density volumes written and read whole, users' tomograms memory-mapped.

Volumes are written atomically with the voxel size in the header and provenance beside them. A user's
tomogram is memory-mapped (:func:`open_mrc_tomogram`), so that cutting boxes reads only their regions (the
array is valid while the context is open). The only module that imports mrcfile.

Provenance is too long for the MRC header's ten 80-character labels, so the labels carry a short stamp
and the full record goes to ``<file>.json``, written before the map so that a map never lacks it.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from cryoengine.formats.atomic_write import atomic_path

__all__ = [
    "MrcError",
    "TomogramFileError",
    "TomogramGeometry",
    "mrc_tomogram_geometry",
    "open_mrc_tomogram",
    "read_volume",
    "write_volume",
]


class MrcError(ValueError):
    """An MRC file that cannot be read as a density volume."""


def write_volume(
    path: str | os.PathLike[str],
    volume_zyx: np.ndarray,
    voxel_size_A: float,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a 3D volume as float32 MRC (atomically), with its voxel size, and its provenance as JSON.

    Parameters
    ----------
    path
        Output ``.mrc`` path.
    volume_zyx
        `(nz, ny, nx)` volume.
    voxel_size_A
        Voxel size written to the header (Å).
    provenance
        Record written to ``<path>.json``; its version and commit also go in the header labels.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    volume = np.asarray(volume_zyx, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (z, y, x), got shape {volume.shape}")
    record = None if provenance is None else json.dumps(provenance, indent=2, sort_keys=True, default=str)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(volume)
            mrc.voxel_size = voxel_size_A
            if provenance is not None:
                mrc.add_label(
                    f"cryoengine {provenance.get('version')} {provenance.get('git_commit', '')[:12]}"[:80]
                )
                mrc.add_label(f"created {provenance.get('created_utc')} seed {provenance.get('seed')}"[:80])
    if record is not None:  # after the map, so that a failed map write leaves no orphan record
        try:
            with atomic_path(path.with_name(path.name + ".json")) as tmp:
                tmp.write_text(record + "\n")
        except BaseException:
            path.unlink(missing_ok=True)  # neither file rather than a map without its provenance
            raise
    return path


# The fixed MRC header, and the bits per voxel of each data mode (MRC2014; 101 = 4-bit).
_HEADER_BYTES = 1024
_MODE_BITS = {0: 8, 1: 16, 2: 32, 3: 32, 4: 64, 6: 16, 12: 16, 101: 4}


def read_volume(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Read a 3D MRC volume.

    Parameters
    ----------
    path
        ``.mrc`` / ``.map`` file.

    Returns
    -------
    volume : np.ndarray
        `(nz, ny, nx)` float32.
    voxel_size_A : float
        From the header (x spacing). Anisotropic voxels are an error.

    Raises
    ------
    MrcError
        Missing, empty, corrupt or non-3D file, or a header without a usable voxel size.
    """
    path = Path(path)
    if not path.is_file():
        raise MrcError(f"map file {path} does not exist")
    if path.stat().st_size == 0:
        raise MrcError(f"map file {path} is empty")
    _check_size_fits_header(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mrcfile warns about fixable header quirks of other programs
            with mrcfile.open(path, permissive=True) as mrc:
                if mrc.data is None:
                    raise MrcError(f"{path} is not a readable MRC file (bad header or truncated data)")
                volume = np.array(mrc.data, dtype=np.float32)
                spacing = mrc.voxel_size
    except (ValueError, OSError, EOFError) as error:
        if isinstance(error, MrcError):
            raise
        raise MrcError(f"{path} is not a readable MRC file: {error}") from None
    if volume.ndim != 3:
        raise MrcError(f"{path} holds a {volume.ndim}D image, expected a 3D volume")
    voxel = (float(spacing.z), float(spacing.y), float(spacing.x))
    if voxel[2] <= 0:
        raise MrcError(f"{path} has no voxel size in its header")
    if not np.allclose(voxel, voxel[2], rtol=1e-3):
        raise MrcError(f"{path} has anisotropic voxels {voxel} Å (z, y, x)")
    return volume, voxel[2]


def _check_size_fits_header(path: Path) -> None:
    """Refuse a file whose header's dimensions, mode and extended header need more bytes than it has.

    Checked before the data are read, so that a corrupt header cannot make the reader allocate for the
    volume it claims (a 2 KiB file with a garbled size field would otherwise ask for gigabytes).
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        header = file.read(_HEADER_BYTES)
    if len(header) < _HEADER_BYTES:
        raise MrcError(f"{path} is not a readable MRC file: {len(header)} bytes, shorter than the header")
    stamp = header[212:214]
    order = ">" if stamp in (b"\x11\x11", b"\x11\x00") else "<"
    nx, ny, nz, mode = np.frombuffer(header[:16], dtype=f"{order}i4")
    extended = int(np.frombuffer(header[92:96], dtype=f"{order}i4")[0])
    if mode not in _MODE_BITS or min(nx, ny, nz) < 1 or extended < 0:
        return  # not a header this check understands; mrcfile reports it
    needed = _HEADER_BYTES + extended + (int(nx) * int(ny) * int(nz) * _MODE_BITS[int(mode)]) // 8
    if size < needed:
        raise MrcError(
            f"{path} is not a readable MRC file: its header says {nx}×{ny}×{nz} voxels of mode {mode} "
            f"({needed} bytes), the file has {size}"
        )


@dataclass(frozen=True)
class TomogramGeometry:
    """What a reader needs to know of a tomogram: its shape and voxel (from its header).

    Attributes
    ----------
    shape_zyx
        Voxel counts ``(nz, ny, nx)``.
    voxel_size_A
        Voxel (Å); 0 or NaN when the header has none.
    source
        Where it was read (for messages).
    """

    shape_zyx: tuple[int, int, int]
    voxel_size_A: float
    source: str = ""

    @property
    def size_zyx_A(self) -> np.ndarray:
        """`(3,)` extent in Å (NaN without a voxel size)."""
        voxel = self.voxel_size_A if math.isfinite(self.voxel_size_A) and self.voxel_size_A > 0 else math.nan
        return np.asarray(self.shape_zyx, dtype=np.float64) * voxel


class TomogramFileError(ValueError):
    """A tomogram file that is missing or not a 3D volume (the message names the file)."""


@contextmanager
def open_mrc_tomogram(path: str | os.PathLike[str]) -> Iterator[tuple[np.ndarray, TomogramGeometry]]:
    """Memory-map an MRC tomogram read-only.

    Parameters
    ----------
    path
        ``.mrc`` / ``.rec`` / ``.map`` file holding one 3D volume.

    Yields
    ------
    data : np.ndarray
        `(nz, ny, nx)` memory map (no data is read until sliced).
    geometry : TomogramGeometry
        Shape and header voxel (0 when the header has none; anisotropic voxels are an error).

    Raises
    ------
    TomogramFileError
        Missing file, unreadable header, an image stack or 2D image, or anisotropic voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise TomogramFileError(f"tomogram {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # header quirks of other programs
            mrc = mrcfile.mmap(path, mode="r", permissive=True)
    except (ValueError, OSError, EOFError) as error:
        raise TomogramFileError(f"{path} is not a readable MRC file ({error})") from None
    with mrc:
        data = mrc.data
        if data is None or data.ndim != 3 or mrc.is_image_stack() or min(data.shape) < 2:
            shape = None if data is None else data.shape
            raise TomogramFileError(
                f"{path} is not a 3D volume (data shape {shape}, header ispg {int(mrc.header.ispg)})"
            )
        spacing = mrc.voxel_size
        voxels = [float(spacing.z), float(spacing.y), float(spacing.x)]
        if voxels[2] > 0 and not np.allclose(voxels, voxels[2], rtol=1e-4):
            raise TomogramFileError(f"{path} has anisotropic voxels (z, y, x) = {voxels} Å")
        shape_zyx = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
        yield data, TomogramGeometry(shape_zyx, voxels[2], str(path))


def mrc_tomogram_geometry(path: str | os.PathLike[str]) -> TomogramGeometry:
    """Shape and header voxel of an MRC tomogram (reads the header only).

    Parameters
    ----------
    path
        MRC tomogram.

    Returns
    -------
    TomogramGeometry
        As :func:`open_mrc_tomogram` yields it.
    """
    with open_mrc_tomogram(path) as (_, geometry):
        return geometry
