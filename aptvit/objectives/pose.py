"""Loss of the SE(3) branch: geodesic rotation error, minimised over the point group, plus translation error.

The pose head (``aptvit.models.heads.PoseHead``) predicts ``view_b = R · view_a + t``; for a particle with
point group ``G`` every ``R`` of the coset ``R_true · G`` (in the frame of view ``a``) is a correct answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from aptvit.models.heads import PosePrediction
from aptvit.rotation import symmetric_geodesic_angle_rad

__all__ = ["PoseLoss", "pose_loss"]

# One voxel of shift costs as much as a rotation that moves the surface of a ~10-voxel-radius particle
# (a 32³ box) by one voxel: 0.1 rad.
DEFAULT_TRANSLATION_WEIGHT = 0.1


class PoseLoss(NamedTuple):
    """Terms of the pose loss, each a scalar averaged over the batch.

    Attributes
    ----------
    rotation_rad : Tensor
        Mean geodesic angle between predicted and true rotation, minimised over the point group (radians).
    translation_vox : Tensor
        Mean Euclidean distance between predicted and true translation (voxels).
    total : Tensor
        ``rotation_rad + translation_weight · translation_vox``.
    """

    rotation_rad: Tensor
    translation_vox: Tensor
    total: Tensor


def pose_loss(
    prediction: PosePrediction,
    rotation_true: Tensor,
    translation_true: Tensor,
    groups: Tensor | Sequence[Tensor] | None = None,
    frame: Tensor | None = None,
    translation_weight: float = DEFAULT_TRANSLATION_WEIGHT,
) -> PoseLoss:
    """Geodesic-angle plus translation loss of a predicted rigid transform.

    The rotation term is ``min_{g ∈ G} ∠(R_pred, R_true · F g Fᵀ)`` with ``F = frame`` (identity when
    None; see :func:`aptvit.rotation.symmetric_geodesic_angle_rad`). The translation term compares with
    ``translation_true`` as given, i.e. the translation of the identity element: a symmetry ``g`` about the
    centre of an off-centre first particle (shift ``s_a``) would also move the translation, by
    ``R_true (I − F g Fᵀ) s_a``, which is at most ``2 |s_a|`` and zero for centred particles.

    Parameters
    ----------
    prediction : PosePrediction
        `(B, 3, 3)` rotation and `(B, 3)` translation (voxels) predicted for ``view_b = R · view_a + t``.
    rotation_true : Tensor
        `(B, 3, 3)` true rotation.
    translation_true : Tensor
        `(B, 3)` true translation (voxels, ``(z, y, x)``).
    groups : Tensor or sequence of Tensor, optional
        `(G, 3, 3)` point group shared by the batch (:func:`aptvit.rotation.point_group_rotations`), or
        one `(G_i, 3, 3)` group per sample (samples sharing a group object are evaluated together); None:
        C1 (no symmetry).
    frame : Tensor, optional
        `(B, 3, 3)` orientation of the first view's particle for relative poses; None: the group acts in
        the frame of view ``a`` as it is.
    translation_weight : float
        Weight of the translation term (≥ 0, radians per voxel).

    Returns
    -------
    PoseLoss
        The rotation and translation terms and their weighted sum, float32 at least (autocast is off).
    """
    rotation_pred, translation_pred = prediction
    batch = rotation_pred.shape[0]
    if rotation_pred.shape != (batch, 3, 3) or rotation_true.shape != (batch, 3, 3):
        raise ValueError(
            f"rotations must be ({batch}, 3, 3), got {tuple(rotation_pred.shape)} "
            f"and {tuple(rotation_true.shape)}"
        )
    if translation_pred.shape != (batch, 3) or translation_true.shape != (batch, 3):
        raise ValueError(
            f"translations must be ({batch}, 3), got {tuple(translation_pred.shape)} "
            f"and {tuple(translation_true.shape)}"
        )
    if frame is not None and frame.shape != (batch, 3, 3):
        raise ValueError(f"frame must be ({batch}, 3, 3), got {tuple(frame.shape)}")
    if not translation_weight >= 0:
        raise ValueError(f"translation_weight must be non-negative, got {translation_weight}")
    # Under autocast the matrix products would run in bf16 and the angles near 0 be off by ~0.1 rad.
    dtype = torch.promote_types(rotation_pred.dtype, torch.float32)
    with torch.autocast(device_type=rotation_pred.device.type, enabled=False):
        frame = None if frame is None else frame.to(dtype)
        angles = _symmetric_angles(rotation_pred.to(dtype), rotation_true.to(dtype), groups, frame)
        rotation_rad = angles.mean()
        error = translation_pred.to(dtype) - translation_true.to(dtype)
        translation_vox = torch.linalg.vector_norm(error, dim=-1).mean()
    return PoseLoss(rotation_rad, translation_vox, rotation_rad + translation_weight * translation_vox)


def _symmetric_angles(
    rotation_pred: Tensor,
    rotation_true: Tensor,
    groups: Tensor | Sequence[Tensor] | None,
    frame: Tensor | None,
) -> Tensor:
    if groups is None:
        groups = torch.eye(3, dtype=rotation_true.dtype, device=rotation_true.device)[None]
    if isinstance(groups, Tensor):
        if groups.ndim != 3 or groups.shape[1:] != (3, 3):
            raise ValueError(f"groups must be (G, 3, 3), got {tuple(groups.shape)}")
        return symmetric_geodesic_angle_rad(rotation_pred, rotation_true, groups, frame)
    batch = rotation_pred.shape[0]
    if len(groups) != batch:
        raise ValueError(f"need one group per sample, got {len(groups)} groups for a batch of {batch}")
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(id(group), []).append(index)
    parts, order = [], []
    for indices in members.values():
        rows = torch.tensor(indices, device=rotation_pred.device)
        group_frame = None if frame is None else frame[rows]
        parts.append(
            _symmetric_angles(rotation_pred[rows], rotation_true[rows], groups[indices[0]], group_frame)
        )
        order.append(rows)
    return torch.cat(parts)[torch.argsort(torch.cat(order))]
