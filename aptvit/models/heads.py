"""Heads on top of an encoder for pre-training: the MoCo-v3 projector/predictor MLP and the SE(3) pose head.

The heads hold no loss: ``aptvit.objectives`` turns their outputs into the contrastive and pose losses.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aptvit.models.vit import Block

__all__ = ["MLPHead", "PoseHead", "PosePrediction", "matrix_to_rotation_6d", "rotation_6d_to_matrix"]


class MLPHead(nn.Sequential):
    """MoCo-v3 projector/predictor: ``num_layers`` bias-free linear layers, each followed by batch norm.

    Hidden layers are ``Linear → BatchNorm1d → ReLU``; the last is ``Linear`` followed, when ``last_bn``, by
    a ``BatchNorm1d`` without affine parameters (Chen, Xie & He 2021, "An empirical study of training
    self-supervised vision transformers"; a 3-layer projector and a 2-layer predictor there). In DDP the
    batch norms should be synchronised (``Trainer(sync_batchnorm=True)``) as in moco-v3.

    Parameters
    ----------
    num_layers : int
        Number of linear layers (≥ 1).
    input_dim, hidden_dim, output_dim : int
        Input width, width of the hidden layers, output width.
    last_bn : bool
        Normalise the output with a parameter-free batch norm.
    norm_layer : callable
        The normalisation, called with the width (and ``affine=False`` or ``elementwise_affine=False`` for
        the last one): ``nn.BatchNorm1d`` as moco-v3, or ``nn.LayerNorm`` where batch statistics cannot be
        synchronised across ranks.
    """

    def __init__(
        self,
        num_layers: int,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        last_bn: bool = True,
        norm_layer: type[nn.BatchNorm1d] | type[nn.LayerNorm] = nn.BatchNorm1d,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if min(input_dim, hidden_dim, output_dim) < 1:
            raise ValueError(f"widths must be positive, got {(input_dim, hidden_dim, output_dim)}")
        layers: list[nn.Module] = []
        for index in range(num_layers):
            width_in = input_dim if index == 0 else hidden_dim
            last = index == num_layers - 1
            width_out = output_dim if last else hidden_dim
            layers.append(nn.Linear(width_in, width_out, bias=False))
            if not last:
                layers += [norm_layer(width_out), nn.ReLU(inplace=True)]
            elif last_bn:
                parameter_free = (
                    {"elementwise_affine": False} if norm_layer is nn.LayerNorm else {"affine": False}
                )
                layers.append(norm_layer(width_out, **parameter_free))
        super().__init__(*layers)


def rotation_6d_to_matrix(rotation_6d: Tensor) -> Tensor:
    """Map the continuous 6D representation to a rotation matrix by Gram–Schmidt.

    Zhou, Barnes, Lu, Yang & Li, "On the continuity of rotation representations in neural networks",
    CVPR 2019: the six numbers are two 3-vectors ``a1, a2``; ``b1 = a1/|a1|``,
    ``b2 = normalise(a2 − (b1·a2) b1)``, ``b3 = b1 × b2`` are the matrix's columns, so the result is a proper
    rotation for any input with ``a1, a2`` linearly independent.

    Parameters
    ----------
    rotation_6d : Tensor
        `(..., 6)`: ``a1`` then ``a2``.

    Returns
    -------
    Tensor
        `(..., 3, 3)` rotations with columns ``b1, b2, b3``.
    """
    if rotation_6d.shape[-1] != 6:
        raise ValueError(f"rotation_6d must have a last dimension of 6, got shape {tuple(rotation_6d.shape)}")
    a1, a2 = rotation_6d[..., :3], rotation_6d[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(rotation: Tensor) -> Tensor:
    """Return the 6D representation of rotations: their first two columns (inverse of the map above).

    Parameters
    ----------
    rotation : Tensor
        `(..., 3, 3)` rotations.

    Returns
    -------
    Tensor
        `(..., 6)`: column 0 then column 1.
    """
    if rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape (..., 3, 3), got {tuple(rotation.shape)}")
    return torch.cat([rotation[..., :, 0], rotation[..., :, 1]], dim=-1)


class PosePrediction(NamedTuple):
    """A predicted rigid transform ``view_b = R · view_a + t`` about the box centre.

    Attributes
    ----------
    rotation : Tensor
        `(B, 3, 3)` proper rotations acting on ``(z, y, x)``.
    translation_vox : Tensor
        `(B, 3)` translation in voxels, ``(z, y, x)``.
    """

    rotation: Tensor
    translation_vox: Tensor


class PoseHead(nn.Module):
    """Predict the rigid transform between two views from their token grids.

    Both token sets are projected to ``hidden_dim`` and tagged with a learned view embedding and a learned
    map of Fourier features of each token's ``(z, y, x)`` grid position; ``depth`` transformer blocks attend
    jointly over the ``2N`` tokens, so every token of one view can compare itself with every token of the
    other at known relative positions. Each view's tokens are then mean-pooled, the two pooled vectors
    concatenated and an MLP regresses the 6D rotation (:func:`rotation_6d_to_matrix`) and the translation.
    The output layer starts near the identity transform; the outputs are float32 at least (also under
    autocast).

    Parameters
    ----------
    embed_dim : int
        Width of the encoder's tokens.
    hidden_dim : int
        Width inside the head.
    num_heads : int
        Attention heads (dividing ``hidden_dim``).
    depth : int
        Joint attention blocks (≥ 1).
    num_frequencies : int
        Octaves of the sinusoidal position features per axis (≥ 1).
    """

    def __init__(
        self,
        embed_dim: int,
        hidden_dim: int = 128,
        num_heads: int = 4,
        depth: int = 2,
        num_frequencies: int = 4,
    ) -> None:
        super().__init__()
        if depth < 1 or num_frequencies < 1:
            raise ValueError(f"depth and num_frequencies must be at least 1, got {depth}, {num_frequencies}")
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} must be divisible by num_heads={num_heads}")
        self.num_frequencies = num_frequencies
        self.token_proj = nn.Linear(embed_dim, hidden_dim)
        self.position_proj = nn.Linear(6 * num_frequencies, hidden_dim)
        self.view_embed = nn.Parameter(torch.zeros(2, hidden_dim))
        self.blocks = nn.Sequential(*(Block(hidden_dim, num_heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(hidden_dim)
        output = nn.Linear(hidden_dim, 9)
        self.regressor = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.GELU(), output)
        nn.init.trunc_normal_(self.view_embed, std=0.02)
        nn.init.trunc_normal_(output.weight, std=0.02)
        with torch.no_grad():
            output.bias.zero_()
            output.bias[:6] = matrix_to_rotation_6d(torch.eye(3))

    def position_features(self, num_tokens: int, reference: Tensor) -> Tensor:
        """Fourier features of the token positions of an ``n³`` grid in ``(z, y, x)`` raster order.

        Parameters
        ----------
        num_tokens : int
            ``N = n³``.
        reference : Tensor
            Tensor whose dtype and device the features take.

        Returns
        -------
        Tensor
            `(N, 6 · num_frequencies)`: ``sin`` and ``cos`` of ``2^k π c`` for each axis coordinate
            ``c ∈ (−½, ½)`` (grid centred, in units of the grid size).
        """
        side = round(num_tokens ** (1 / 3))
        if side**3 != num_tokens:
            raise ValueError(f"the token count must be a cube n³, got {num_tokens}")
        axis = (torch.arange(side, dtype=reference.dtype, device=reference.device) - (side - 1) / 2) / side
        grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        scales = math.pi * 2.0 ** torch.arange(self.num_frequencies, dtype=reference.dtype)
        angles = (grid[:, :, None] * scales.to(reference.device)).flatten(1)  # (N, 3F)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    def forward(self, tokens_a: Tensor, tokens_b: Tensor) -> PosePrediction:
        """Predict the transform taking view ``a`` to view ``b``.

        Parameters
        ----------
        tokens_a, tokens_b : Tensor
            `(B, N, embed_dim)` token grids of the two views (``N = n³``, ``(z, y, x)`` raster order).

        Returns
        -------
        PosePrediction
            `(B, 3, 3)` rotation and `(B, 3)` translation in voxels.
        """
        if tokens_a.ndim != 3 or tokens_a.shape != tokens_b.shape:
            raise ValueError(
                f"expected two token grids of one shape (B, N, C), got {tuple(tokens_a.shape)} "
                f"and {tuple(tokens_b.shape)}"
            )
        num_tokens = tokens_a.shape[1]
        position = self.position_proj(self.position_features(num_tokens, tokens_a))  # (N, hidden)
        views = [
            self.token_proj(tokens) + position + self.view_embed[index]
            for index, tokens in enumerate((tokens_a, tokens_b))
        ]
        joint = self.norm(self.blocks(torch.cat(views, dim=1)))
        pooled = torch.cat([joint[:, :num_tokens].mean(1), joint[:, num_tokens:].mean(1)], dim=1)
        output = self.regressor(pooled)
        # Gram-Schmidt in bf16 would leave the rotation orthonormal to ~1e-2 only.
        output = output.to(torch.promote_types(output.dtype, torch.float32))
        return PosePrediction(rotation_6d_to_matrix(output[:, :6]), output[:, 6:])
