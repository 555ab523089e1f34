"""Rotations in torch, in CryoEngine's convention: sampling, resampling volumes, geodesic error, point groups.

The trainer and the tasks re-implement here what they need of ``cryoengine.physics.rotation`` (DESIGN §2:
aptvit never converts angles itself), and ``tests/aptvit/test_rotation.py`` checks them against it.

Conventions (DESIGN §3)
-----------------------
``R`` is a `(3, 3)` proper rotation acting on column vectors of ``(z, y, x)`` offsets from the box centre
(voxel ``D // 2``), with ``particle = R · reference + shift``: ``P(q) = Ref(Rᵀ (q − c − shift) + c)``.
The relative pose of particles ``a`` and ``b`` is ``R_ab = R_b R_aᵀ``, ``t_ab = s_b − R_ab s_a``.
Point groups have their main axis along ``z`` and their 2-fold axis (Dn) along ``x``, as in RELION.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

__all__ = [
    "geodesic_angle_rad",
    "point_group_rotations",
    "random_rotations",
    "relative_pose",
    "rotate_volumes",
    "symmetric_geodesic_angle_rad",
]


def random_rotations(
    n: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw rotations uniformly from SO(3) (Haar measure) as unit quaternions of normal components.

    Parameters
    ----------
    n
        Number of rotations (≥ 0).
    generator
        Source of randomness (on ``device``); the global generator when None.

    Returns
    -------
    Tensor
        `(n, 3, 3)` rotation matrices acting on ``(z, y, x)``.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    quaternion = torch.randn(n, 4, generator=generator, dtype=torch.float64, device=device)
    w, a, b, c = (quaternion / quaternion.norm(dim=1, keepdim=True)).unbind(dim=1)
    matrix = torch.stack(
        [
            1 - 2 * (b * b + c * c),
            2 * (a * b - c * w),
            2 * (a * c + b * w),
            2 * (a * b + c * w),
            1 - 2 * (a * a + c * c),
            2 * (b * c - a * w),
            2 * (a * c - b * w),
            2 * (b * c + a * w),
            1 - 2 * (a * a + b * b),
        ],
        dim=1,
    )
    return matrix.reshape(n, 3, 3).to(dtype)


def rotate_volumes(
    volumes: Tensor, rotation: Tensor, shift_zyx_vox: Tensor | None = None, mode: str = "bilinear"
) -> Tensor:
    """Resample each volume as the particle ``R · volume + shift`` about the box centre.

    Computes ``P(q) = V(Rᵀ (q − c − shift) + c)`` with ``c = D // 2`` by trilinear (``"bilinear"``) or
    nearest interpolation (``torch.nn.functional.grid_sample``); outside the box the volume is zero.
    Runs on the volumes' device, differentiable in the volumes.

    Parameters
    ----------
    volumes
        `(B, C, D, H, W)` real volumes.
    rotation
        `(B, 3, 3)` rotations acting on ``(z, y, x)``.
    shift_zyx_vox
        `(B, 3)` translations after rotation (voxels); zero when None.
    mode
        ``"bilinear"`` (trilinear in 3D) or ``"nearest"``.

    Returns
    -------
    Tensor
        `(B, C, D, H, W)` resampled volumes, the dtype of ``volumes``.
    """
    if volumes.ndim != 5:
        raise ValueError(f"volumes must have shape (B, C, D, H, W), got {tuple(volumes.shape)}")
    batch = volumes.shape[0]
    if rotation.shape != (batch, 3, 3):
        raise ValueError(f"rotation must have shape ({batch}, 3, 3), got {tuple(rotation.shape)}")
    if shift_zyx_vox is not None and shift_zyx_vox.shape != (batch, 3):
        raise ValueError(f"shift_zyx_vox must have shape ({batch}, 3), got {tuple(shift_zyx_vox.shape)}")
    size = torch.tensor(volumes.shape[2:], dtype=volumes.dtype, device=volumes.device)
    centre = torch.div(size, 2, rounding_mode="floor")
    axes = [torch.arange(n, dtype=volumes.dtype, device=volumes.device) for n in volumes.shape[2:]]
    grid_zyx = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1) - centre  # (D, H, W, 3)
    offsets = grid_zyx.expand(batch, *grid_zyx.shape)
    if shift_zyx_vox is not None:
        offsets = offsets - shift_zyx_vox.to(volumes.dtype)[:, None, None, None, :]
    # Row vectors: (Rᵀ v)ᵀ = vᵀ R.
    source_zyx = torch.einsum("bdhwi,bij->bdhwj", offsets, rotation.to(volumes.dtype)) + centre
    normalised = 2 * source_zyx / (size - 1) - 1  # align_corners=True: -1 and 1 are the edge voxels
    return torch.nn.functional.grid_sample(
        volumes, normalised.flip(-1), mode=mode, padding_mode="zeros", align_corners=True
    )


def relative_pose(
    rotation_a: Tensor, shift_a: Tensor, rotation_b: Tensor, shift_b: Tensor
) -> tuple[Tensor, Tensor]:
    """Pose of particle ``b`` relative to particle ``a`` of one class (DESIGN §8).

    Parameters
    ----------
    rotation_a, rotation_b
        `(..., 3, 3)` ground-truth orientations, ``particle = R · reference + shift``.
    shift_a, shift_b
        `(..., 3)` ground-truth offsets from the box centre (voxels, ``(z, y, x)``).

    Returns
    -------
    tuple of Tensor
        ``R_ab = R_b R_aᵀ`` `(..., 3, 3)` and ``t_ab = s_b − R_ab s_a`` `(..., 3)`: ``b = R_ab · a + t_ab``.
    """
    rotation_ab = rotation_b @ rotation_a.transpose(-1, -2)
    return rotation_ab, shift_b - (rotation_ab @ shift_a.unsqueeze(-1)).squeeze(-1)


def geodesic_angle_rad(rotation_a: Tensor, rotation_b: Tensor) -> Tensor:
    """Angle of the rotation ``R_a R_bᵀ`` (the geodesic distance on SO(3)), in radians.

    Computed as ``atan2(‖axis‖, trace − 1)`` from the skew and trace parts, accurate (and with finite
    gradients) near 0 and π where ``arccos`` of the trace is not.

    Parameters
    ----------
    rotation_a, rotation_b
        `(..., 3, 3)` rotations (broadcast).

    Returns
    -------
    Tensor
        `(...)` angles in ``[0, π]``.
    """
    difference = rotation_a @ rotation_b.transpose(-1, -2)
    trace = difference.diagonal(dim1=-2, dim2=-1).sum(-1)
    skew = torch.stack(
        [
            difference[..., 2, 1] - difference[..., 1, 2],
            difference[..., 0, 2] - difference[..., 2, 0],
            difference[..., 1, 0] - difference[..., 0, 1],
        ],
        dim=-1,
    )
    # |skew| = 2 sin θ, trace - 1 = 2 cos θ; the epsilon keeps the norm's gradient finite at θ = 0.
    return torch.atan2(torch.sqrt((skew * skew).sum(-1) + 1e-12), trace - 1)


def symmetric_geodesic_angle_rad(
    rotation_pred: Tensor, rotation_true: Tensor, group: Tensor, frame: Tensor | None = None
) -> Tensor:
    """Geodesic angle minimised over the symmetry-equivalent poses of a particle with point group ``G``.

    A reference with ``Ref(g r) = Ref(r)`` makes ``R`` and ``R g`` the same particle. For a relative pose
    ``R_ab = R_b R_aᵀ`` the equivalents are ``R_ab · (R_a g R_aᵀ)``: the group acts in the frame of
    particle ``a``, which is ``frame`` (the identity for absolute orientations).

    Parameters
    ----------
    rotation_pred, rotation_true
        `(B, 3, 3)` predicted and true rotations.
    group
        `(G, 3, 3)` point-group rotations in the reference frame (:func:`point_group_rotations`).
    frame
        `(B, 3, 3)` orientation ``R_a`` of the first particle of a relative pose; None: absolute poses.

    Returns
    -------
    Tensor
        `(B,)` smallest angle over the group, radians.
    """
    group = group.to(rotation_true)
    if frame is not None:
        group = frame[:, None] @ group[None] @ frame.transpose(-1, -2)[:, None]  # (B, G, 3, 3)
    equivalents = rotation_true[:, None] @ group  # (B, G, 3, 3)
    return geodesic_angle_rad(rotation_pred[:, None], equivalents).amin(dim=1)


def point_group_rotations(symbol: str, dtype: torch.dtype = torch.float64) -> Tensor:
    """Rotations of a point group in RELION's orientation, on ``(z, y, x)`` coordinates.

    Parameters
    ----------
    symbol
        ``"C1"``, ``"Cn"`` (n-fold axis along z), ``"Dn"`` (plus a 2-fold axis along x), ``"T"``
        (tetrahedral, 2-fold axes along x, y, z) or ``"O"`` (octahedral, 4-fold axes along x, y, z).

    Returns
    -------
    Tensor
        `(G, 3, 3)` the group's rotations, the identity first.
    """
    name = symbol.strip().upper()
    order = int(name[1:]) if name[:1] in ("C", "D") and name[1:].isdigit() and int(name[1:]) >= 1 else 0
    if name[:1] in ("C", "D") and order:
        generators = [_axis_rotation((1.0, 0.0, 0.0), 2 * math.pi / order)]  # z axis in (z, y, x)
        if name[0] == "D":
            generators.append(_axis_rotation((0.0, 0.0, 1.0), math.pi))  # x axis
    elif name == "T":
        generators = [
            _axis_rotation((1.0, 0.0, 0.0), math.pi),
            _axis_rotation((1.0, 1.0, 1.0), 2 * math.pi / 3),
        ]
    elif name == "O":
        generators = [
            _axis_rotation((1.0, 0.0, 0.0), math.pi / 2),
            _axis_rotation((1.0, 1.0, 1.0), 2 * math.pi / 3),
        ]
    else:
        raise ValueError(f"unsupported point group {symbol!r}; use C1, Cn, Dn, T or O")
    return _closure(generators).to(dtype)


def _axis_rotation(axis_zyx: tuple[float, float, float], angle_rad: float) -> Tensor:
    axis = torch.tensor(axis_zyx, dtype=torch.float64)
    k = axis / axis.norm()
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    return (
        torch.eye(3, dtype=torch.float64)
        + math.sin(angle_rad) * cross
        + (1 - math.cos(angle_rad)) * cross @ cross
    )


def _closure(generators: list[Tensor]) -> Tensor:
    elements = [torch.eye(3, dtype=torch.float64)]
    frontier = list(elements)
    while frontier:
        found = []
        for element, generator in itertools.product(frontier, generators):
            candidate = generator @ element
            if not any(torch.allclose(candidate, known, atol=1e-9) for known in elements):
                elements.append(candidate)
                found.append(candidate)
        frontier = found
    return torch.stack(elements)
