"""MRC volume files: atomic writes with the voxel size in the header and provenance beside them.

Provenance is too long for the MRC header's ten 80-character labels, so the labels carry a short stamp
and the full record goes to ``<file>.json``, written before the map so that a map never lacks it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from cryoengine.formats.atomic_write import atomic_path

__all__ = ["MrcError", "read_volume", "write_volume"]


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
