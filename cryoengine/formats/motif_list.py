"""The ground truth of a simulated tomogram: every particle and crowder placed, as a STAR motif list.

One row per placed particle (PolNet's motif list): its class, role (target or crowder), centre in the
tomogram in voxels and in Å (``(z, y, x)`` index × voxel size, origin at voxel 0), rotation as the
``(z, y, x)`` matrix of ``particle = R · reference`` and as RELION ZYZ Euler angles, its B-factor, and
the model of its class it was drawn from (0 = the class's own source). A
subtomogram's neighbours are the rows near its position. Written as a one-block STAR file (``particles``)
with starfile, so that RELION-style tools and pandas read it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryoengine.formats.atomic_write import atomic_path
from cryoengine.physics.rotation import relion_euler_deg_to_rotation, rotation_to_relion_euler_deg

__all__ = ["MOTIF_ROTATION_COLUMNS", "read_motif_list", "write_motif_list"]

#: Columns of the rotation matrix entries ``R[i, j]`` (axes ``(z, y, x)``), row-major.
MOTIF_ROTATION_COLUMNS = tuple(f"cryoengineRotation{a}{b}" for a in "ZYX" for b in "ZYX")


def write_motif_list(
    path: str | os.PathLike[str],
    class_ids: Sequence[str],
    class_index: np.ndarray,
    centre_zyx_vox: np.ndarray,
    rotation: np.ndarray,
    voxel_size_A: float,
    *,
    target_class: int,
    b_factor_A2: np.ndarray | None = None,
    model_index: np.ndarray | None = None,
) -> Path:
    """Write the motif list of one tomogram (atomically).

    Parameters
    ----------
    path
        Output ``.star`` path.
    class_ids
        Class id of each class index.
    class_index
        `(M,)` class index of each placed particle.
    centre_zyx_vox
        `(M, 3)` centres in the tomogram (voxels, ``(z, y, x)``).
    rotation
        `(M, 3, 3)` rotations (``particle = R · reference``, ``(z, y, x)``).
    voxel_size_A
        Voxel size (Å, > 0).
    target_class
        Index of the tomogram's target class (its rows are ``target``, the others ``crowder``).
    b_factor_A2
        `(M,)` B-factor of each particle (Å²); None = zeros.
    model_index
        `(M,)` model of its class each particle was drawn from (0 = the class's own source); None = zeros.

    Returns
    -------
    Path
        ``path``.
    """
    index = np.asarray(class_index, dtype=np.int64)
    centre = np.asarray(centre_zyx_vox, dtype=np.float64).reshape(-1, 3)
    matrices = np.asarray(rotation, dtype=np.float64).reshape(-1, 3, 3)
    m = len(index)
    if centre.shape != (m, 3) or matrices.shape != (m, 3, 3):
        raise ValueError(f"need (M,), (M, 3), (M, 3, 3); got {index.shape}, {centre.shape}, {matrices.shape}")
    if m and not 0 <= index.min() <= index.max() < len(class_ids):
        raise ValueError(f"class_index must index class_ids (0 to {len(class_ids) - 1})")
    if not voxel_size_A > 0:
        raise ValueError(f"voxel_size_A must be > 0, got {voxel_size_A}")
    b_factor = np.zeros(m) if b_factor_A2 is None else np.asarray(b_factor_A2, dtype=np.float64)
    if b_factor.shape != (m,):
        raise ValueError(f"b_factor_A2 must have shape ({m},), got {b_factor.shape}")
    model = np.zeros(m, dtype=np.int64) if model_index is None else np.asarray(model_index, dtype=np.int64)
    if model.shape != (m,):
        raise ValueError(f"model_index must have shape ({m},), got {model.shape}")
    rot, tilt, psi = rotation_to_relion_euler_deg(matrices) if m else (np.zeros(0),) * 3
    table = {
        "cryoengineClass": [class_ids[k] for k in index],
        "cryoengineRole": ["target" if k == target_class else "crowder" for k in index],
        "rlnCoordinateX": centre[:, 2],
        "rlnCoordinateY": centre[:, 1],
        "rlnCoordinateZ": centre[:, 0],
        "cryoenginePositionXAngst": centre[:, 2] * voxel_size_A,
        "cryoenginePositionYAngst": centre[:, 1] * voxel_size_A,
        "cryoenginePositionZAngst": centre[:, 0] * voxel_size_A,
        "rlnAngleRot": np.atleast_1d(rot),
        "rlnAngleTilt": np.atleast_1d(tilt),
        "rlnAnglePsi": np.atleast_1d(psi),
        **{name: matrices.reshape(m, 9)[:, j] for j, name in enumerate(MOTIF_ROTATION_COLUMNS)},
        "cryoengineBFactorAngst2": b_factor,
        "cryoengineModel": model,
    }
    with atomic_path(path) as tmp:
        starfile.write({"particles": pd.DataFrame(table)}, tmp, float_format="%.6f")
    return Path(path)


def read_motif_list(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a motif list; its rotation matrices are checked against its Euler angles.

    Returns
    -------
    pandas.DataFrame
        One row per placed particle, the columns of :func:`write_motif_list`.

    Raises
    ------
    ValueError
        If a rotation column is missing or the matrices and angles disagree (by more than 1e-4).
    """
    table = starfile.read(path, always_dict=True)["particles"]
    missing = [name for name in MOTIF_ROTATION_COLUMNS if name not in table.columns]
    if missing:
        raise ValueError(f"{path} is not a motif list: no column {missing[0]}")
    matrices = table[list(MOTIF_ROTATION_COLUMNS)].to_numpy(np.float64).reshape(-1, 3, 3)
    if len(table):
        from_angles = relion_euler_deg_to_rotation(
            table["rlnAngleRot"].to_numpy(), table["rlnAngleTilt"].to_numpy(), table["rlnAnglePsi"].to_numpy()
        )
        if not np.allclose(from_angles, matrices, atol=1e-4):
            raise ValueError(f"{path}: rotation matrices and Euler angles disagree")
    return table
