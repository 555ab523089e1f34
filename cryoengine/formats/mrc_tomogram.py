"""A user's tomogram as an MRC file, memory-mapped so that cutting boxes reads only their regions.

Use :func:`open_mrc_tomogram` as a context manager; the array is valid while it is open.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mrcfile
import numpy as np

from cryoengine.formats.particle_tables import TomogramGeometry

__all__ = ["TomogramFileError", "mrc_tomogram_geometry", "open_mrc_tomogram"]


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
