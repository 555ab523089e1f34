"""Rotations of ``(z, y, x)`` coordinates about the box centre: uniform SO(3) sampling, RELION Eulers.

Resampling a volume by a rotation lives in :mod:`cryoengine.physics.resampling`.

The one place that converts rotation matrices to and from RELION's ``rlnAngleRot/Tilt/Psi``.

Conventions
-----------
Centre
    The centre of a box of ``n`` voxels along an axis is index ``n // 2`` (the RELION / teamtomo
    convention): voxel 16 of a 32-voxel box, voxel 12 of a 25-voxel box.
Rotation matrix
    ``R`` is a ``(3, 3)`` proper rotation (``det R = +1``) acting on column vectors of ``(z, y, x)``
    coordinates relative to the box centre.
``particle = R · reference + shift``
    The particle volume ``P`` satisfies ``P(R r + shift) = Ref(r)`` for ``r`` relative to the centre,
    i.e. ``P(q) = Ref(Rᵀ (q − shift))``: a feature of the reference at offset ``r`` from the centre is
    found in the particle at ``R r + shift``. ``shift`` is in voxels, ``(z, y, x)``.
RELION Euler angles
    RELION builds ``A = Euler_angles2matrix(rot, tilt, psi)`` (``src/euler.cpp``) acting on ``(x, y, z)``.
    Its projector (``src/projector.cpp``, ``Projector::rotate3D`` and ``project``) fills the rotated map
    at ``x`` from the reference at ``Aᵀ x``, i.e. ``P(x) = Ref(Aᵀ x)``: ``A`` takes the reference onto
    the particle, which is our ``R`` written in ``(x, y, z)``. Equivalently the active ZYZ intrinsic
    rotation ``Rz(rot) Ry(tilt) Rz(psi) = Aᵀ`` takes the particle back onto the reference, which is how
    eulerangles (alisterburt) files RELION: ZYZ, intrinsic, ``reference_frame='rotate_particle'``.
    With ``J`` the axis-reversal permutation ``(x, y, z) ↔ (z, y, x)``, ``R = J A J``: the RELION
    matrix with its rows and columns both reversed.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

__all__ = [
    "octahedral_rotations",
    "random_rotations",
    "relion_euler_deg_to_rotation",
    "rotation_to_relion_euler_deg",
]

# Largest tolerated deviation of RᵀR from the identity; rotations stored as float32 are well inside it.
_ORTHONORMAL_TOL = 1e-5
# |sin(tilt)| below which the rotation is treated as gimbal-locked (tilt 0 or 180): rot is set to 0 as
# RELION's Euler_matrix2angles does, and snapping tilt to 0 or 180 changes the matrix by less than this.
_GIMBAL_LOCK_SIN = 1e-9


def _check_rotations(rotation: np.ndarray, name: str) -> np.ndarray:
    """Return ``rotation`` as float64 after checking it is a (batch of) proper rotation matrices."""
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.ndim < 2 or rotation.shape[-2:] != (3, 3):
        raise ValueError(f"{name} must have shape (3, 3) or (n, 3, 3), got {rotation.shape}")
    if not np.all(np.isfinite(rotation)):
        raise ValueError(f"{name} contains non-finite values")
    gram = np.swapaxes(rotation, -1, -2) @ rotation
    error = np.abs(gram - np.eye(3)).max(initial=0.0)
    if error > _ORTHONORMAL_TOL:
        raise ValueError(f"{name} is not orthonormal: max |RᵀR − I| = {error:.3g} > {_ORTHONORMAL_TOL}")
    det = np.linalg.det(rotation)
    if np.any(det < 0):
        raise ValueError(f"{name} has determinant −1 (a reflection, not a rotation)")
    return rotation


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw rotations uniformly (Haar measure) on SO(3).

    Unit quaternions from normalised 4D Gaussian vectors are uniform on S³, hence their rotations are
    uniform on SO(3) in any axis order, ``(z, y, x)`` included.

    Parameters
    ----------
    n
        Number of rotations, ``>= 0``.
    rng
        Source of randomness; the same generator state gives the same rotations.

    Returns
    -------
    np.ndarray
        `(n, 3, 3)` float64 rotation matrices.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if n == 0:
        return np.empty((0, 3, 3))
    quaternions = rng.standard_normal((int(n), 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    return Rotation.from_quat(quaternions).as_matrix()


def octahedral_rotations() -> np.ndarray:
    """List the 24 rotations of the cube: signed permutation matrices with determinant +1.

    Returns
    -------
    np.ndarray
        `(24, 3, 3)` float64 matrices whose entries are exactly 0, 1 or −1; the identity is first.
    """
    matrices = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[range(3), perm] = signs
            if np.linalg.det(matrix) > 0:
                matrices.append(matrix)
    return np.stack(matrices)


def relion_euler_deg_to_rotation(rot_deg: ArrayLike, tilt_deg: ArrayLike, psi_deg: ArrayLike) -> np.ndarray:
    """Convert RELION Euler angles (``rlnAngleRot``, ``rlnAngleTilt``, ``rlnAnglePsi``) to rotations.

    Builds RELION's ``Euler_angles2matrix`` ``A`` on ``(x, y, z)`` and returns ``R = J A J`` on
    ``(z, y, x)``, the rotation with ``particle = R · reference`` (module docstring).

    Parameters
    ----------
    rot_deg, tilt_deg, psi_deg
        Angles in degrees, scalars or arrays broadcastable to a common shape `batch`.

    Returns
    -------
    np.ndarray
        `(*batch, 3, 3)` float64 rotation matrices.
    """
    angles = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (rot_deg, tilt_deg, psi_deg)))
    for label, values in zip(("rot_deg", "tilt_deg", "psi_deg"), angles, strict=True):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{label} contains non-finite values: {values!r}")
    alpha, beta, gamma = (np.deg2rad(a) for a in angles)
    ca, sa = np.cos(alpha), np.sin(alpha)
    cb, sb = np.cos(beta), np.sin(beta)
    cg, sg = np.cos(gamma), np.sin(gamma)
    relion_xyz = np.empty((*alpha.shape, 3, 3))
    relion_xyz[..., 0, 0] = cg * cb * ca - sg * sa
    relion_xyz[..., 0, 1] = cg * cb * sa + sg * ca
    relion_xyz[..., 0, 2] = -cg * sb
    relion_xyz[..., 1, 0] = -sg * cb * ca - cg * sa
    relion_xyz[..., 1, 1] = -sg * cb * sa + cg * ca
    relion_xyz[..., 1, 2] = sg * sb
    relion_xyz[..., 2, 0] = sb * ca
    relion_xyz[..., 2, 1] = sb * sa
    relion_xyz[..., 2, 2] = cb
    return relion_xyz[..., ::-1, ::-1].copy()


def rotation_to_relion_euler_deg(rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert rotations (``particle = R · reference``, ``(z, y, x)``) to RELION Euler angles in degrees.

    Inverse of :func:`relion_euler_deg_to_rotation`. With ``A`` RELION's matrix, rot comes from the third
    row ``(A20, A21) ∝ (cos rot, sin rot)``; psi comes from the 2×2 block, through ``rot + psi`` (from
    ``A00 + A11`` and ``A01 − A10``) for tilt ≤ 90 and ``rot − psi`` (from ``A11 − A00`` and
    ``−(A01 + A10)``) beyond, the combination that is well-conditioned there, so the matrix is recovered
    to rounding error even near tilt 0 and 180. At gimbal lock (``|sin tilt| < 1e-9``) rot is set to 0,
    tilt to exactly 0 or 180, and the whole in-plane angle goes to psi, as RELION's
    ``Euler_matrix2angles`` does.

    Parameters
    ----------
    rotation
        `(3, 3)` or `(n, 3, 3)` rotation matrices.

    Returns
    -------
    rot_deg : np.ndarray
        `batch` angles in ``(−180, 180]`` (0-d for a single matrix).
    tilt_deg : np.ndarray
        `batch` angles in ``[0, 180]``.
    psi_deg : np.ndarray
        `batch` angles in ``(−180, 180]``.
    """
    a = _check_rotations(rotation, "rotation")[..., ::-1, ::-1]  # RELION's A on (x, y, z)
    sin_beta = 0.5 * (np.hypot(a[..., 2, 0], a[..., 2, 1]) + np.hypot(a[..., 0, 2], a[..., 1, 2]))
    locked = sin_beta < _GIMBAL_LOCK_SIN
    upright = a[..., 2, 2] >= 0
    alpha = np.where(locked, 0.0, np.arctan2(a[..., 2, 1], a[..., 2, 0]))
    sum_angle = np.arctan2(a[..., 0, 1] - a[..., 1, 0], a[..., 0, 0] + a[..., 1, 1])
    diff_angle = np.arctan2(-(a[..., 0, 1] + a[..., 1, 0]), a[..., 1, 1] - a[..., 0, 0])
    gamma = np.where(upright, sum_angle - alpha, alpha - diff_angle)
    beta = np.where(locked, np.where(upright, 0.0, np.pi), np.arctan2(sin_beta, a[..., 2, 2]))

    rot_deg, tilt_deg, psi_deg = (np.rad2deg(x) for x in (alpha, beta, gamma))
    return _wrap_deg(rot_deg), tilt_deg, _wrap_deg(psi_deg)


def _wrap_deg(angle_deg: np.ndarray) -> np.ndarray:
    """Wrap angles to ``(−180, 180]`` degrees."""
    return angle_deg - 360.0 * np.ceil((angle_deg - 180.0) / 360.0)
