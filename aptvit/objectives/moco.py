"""MoCo-v3: query encoder + projector + predictor, its momentum twin, InfoNCE and the momentum schedule.

Chen, Xie & He, "An empirical study of training self-supervised vision transformers", ICCV 2021. Keys are
passed in by the caller: gathering them across ranks is the LightningModule's job, so nothing here touches
``torch.distributed`` or a device.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aptvit.models.phase_sampler import PhaseMode, PhaseSelection
from aptvit.models.vit import APTViT

__all__ = ["Embedding", "MoCo", "cosine_momentum", "info_nce", "symmetric_info_nce"]


def info_nce(
    queries: Tensor,
    keys: Tensor,
    positive_index: Tensor,
    temperature: float,
    weights: Tensor | None = None,
) -> Tensor:
    """InfoNCE of queries against a set of keys, scaled by ``2τ`` as in MoCo-v3.

    With ``q̂ = q/‖q‖`` and ``k̂ = k/‖k‖``, sample ``i`` contributes
    ``ℓ_i = −log( exp(q̂_i·k̂_{p_i}/τ) / Σ_j exp(q̂_i·k̂_j/τ) )`` where ``p_i = positive_index[i]`` and ``j``
    runs over all ``M`` keys (the other keys are the negatives); the loss is
    ``2τ · (1/B) Σ_i w_i ℓ_i`` (``w_i = 1`` by default). The ``2τ`` factor keeps the gradient scale
    independent of ``τ``. Weighted terms are averaged over ``B``, not normalised by ``Σ w``, so that the
    mean of the losses of equal per-rank batches is the loss of the global batch. Computed in float32 at
    least, with autocast off.

    Parameters
    ----------
    queries : Tensor
        `(B, C)` query embeddings (with gradient).
    keys : Tensor
        `(M, C)` key embeddings, typically gathered from all ranks (no gradient needed).
    positive_index : Tensor
        `(B,)` int64: row of ``keys`` that is the positive of each query.
    temperature : float
        ``τ`` (> 0).
    weights : Tensor, optional
        `(B,)` non-negative per-sample weights.

    Returns
    -------
    Tensor
        Scalar loss.
    """
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"expected queries (B, C) and keys (M, C), got {tuple(queries.shape)} and {tuple(keys.shape)}"
        )
    if positive_index.shape != (queries.shape[0],) or positive_index.dtype != torch.long:
        raise ValueError(
            f"positive_index must be int64 of shape ({queries.shape[0]},), "
            f"got {positive_index.dtype} {tuple(positive_index.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if weights is not None and weights.shape != (queries.shape[0],):
        raise ValueError(f"weights must have shape ({queries.shape[0]},), got {tuple(weights.shape)}")
    # Cosines under bf16 autocast would carry ~3 digits, i.e. logit errors of ~0.01/τ: compute in float32.
    dtype = torch.promote_types(queries.dtype, torch.float32)
    with torch.autocast(device_type=queries.device.type, enabled=False):
        logits = F.normalize(queries.to(dtype), dim=1) @ F.normalize(keys.to(dtype), dim=1).T / temperature
        if weights is None:
            return F.cross_entropy(logits, positive_index) * (2 * temperature)
        per_sample = F.cross_entropy(logits, positive_index, reduction="none")
        return (weights.to(dtype) * per_sample).mean() * (2 * temperature)


def symmetric_info_nce(
    queries_1: Tensor,
    queries_2: Tensor,
    keys_1: Tensor,
    keys_2: Tensor,
    positive_index: Tensor,
    temperature: float,
) -> Tensor:
    """MoCo-v3's symmetric loss of two views: ``info_nce(q₁, k₂) + info_nce(q₂, k₁)``.

    Parameters
    ----------
    queries_1, queries_2 : Tensor
        `(B, C)` predictor outputs of views 1 and 2 of the same ``B`` particles.
    keys_1, keys_2 : Tensor
        `(M, C)` momentum projector outputs of views 1 and 2 (gathered, in the same particle order).
    positive_index : Tensor
        `(B,)` int64: row of the keys holding each query's particle.
    temperature : float
        ``τ`` (> 0).

    Returns
    -------
    Tensor
        Scalar loss (the sum of the two terms, as in MoCo-v3).
    """
    return info_nce(queries_1, keys_2, positive_index, temperature) + info_nce(
        queries_2, keys_1, positive_index, temperature
    )


def cosine_momentum(step: int, total_steps: int, base_momentum: float) -> float:
    """Momentum of the key encoder, rising from ``base_momentum`` to 1 along a half cosine.

    ``m(t) = 1 − (1 − m₀) · (1 + cos(π t / T)) / 2``, so ``m(0) = m₀`` and ``m(T) = 1``.

    Parameters
    ----------
    step : int
        Current optimiser step ``t`` (``0 ≤ t ≤ T``).
    total_steps : int
        ``T`` (≥ 1).
    base_momentum : float
        ``m₀`` in ``[0, 1]``.

    Returns
    -------
    float
        ``m(t)``.
    """
    if total_steps < 1 or not 0 <= step <= total_steps:
        raise ValueError(f"need 0 <= step <= total_steps and total_steps >= 1, got {step}, {total_steps}")
    if not 0 <= base_momentum <= 1:
        raise ValueError(f"base_momentum must lie in [0, 1], got {base_momentum}")
    return 1 - (1 - base_momentum) * (1 + math.cos(math.pi * step / total_steps)) / 2


class Embedding(NamedTuple):
    """Outputs of one branch of :class:`MoCo` for a batch of views.

    Attributes
    ----------
    vector : Tensor
        `(B, out_dim)`: predictor output for queries, momentum projector output for keys.
    tokens : Tensor
        `(B, N, C)` the encoder's token grid (``(z, y, x)`` raster order), e.g. for the pose head.
    selection : PhaseSelection
        The encoder's phase selection; ``selection.scores`` is `(B, p³)`, or None for the fixed grid.
    """

    vector: Tensor
    tokens: Tensor
    selection: PhaseSelection


class MoCo(nn.Module):
    """MoCo-v3 branches: encoder → projector → predictor for queries, a momentum twin for keys.

    The momentum encoder and projector are deep copies of the query ones, frozen
    (``requires_grad=False``) and moved towards them by :meth:`update_momentum`; the predictor exists only
    on the query side. Like the encoder, the projector and predictor are injected (e.g.
    ``MLPHead(3, C, 4096, 256)`` and ``MLPHead(2, 256, 4096, 256)``).

    Parameters
    ----------
    encoder : APTViT
        Or any module with ``forward_features(volume, phase_mode=..., return_selection=True)`` returning
        ``(tokens, PhaseSelection)`` and ``forward_head(tokens) -> (B, C)``.
    projector : nn.Module
        `(B, C) -> (B, D)`.
    predictor : nn.Module
        `(B, D) -> (B, D)`.
    """

    def __init__(self, encoder: APTViT, projector: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.predictor = predictor
        self.momentum_encoder = copy.deepcopy(encoder)
        self.momentum_projector = copy.deepcopy(projector)
        for parameter in self.momentum_parameters():
            parameter.requires_grad_(False)

    def momentum_parameters(self) -> list[Tensor]:
        """Return the frozen key-side parameters, in the order of :meth:`query_parameters`."""
        return [*self.momentum_encoder.parameters(), *self.momentum_projector.parameters()]

    def query_parameters(self) -> list[Tensor]:
        """Return the query-side parameters that the momentum twin tracks (encoder and projector)."""
        return [*self.encoder.parameters(), *self.projector.parameters()]

    def _embed(
        self, encoder: APTViT, projector: nn.Module, volume: Tensor, phase_mode: PhaseMode
    ) -> tuple[Tensor, Tensor, PhaseSelection]:
        tokens, selection = encoder.forward_features(volume, phase_mode=phase_mode, return_selection=True)
        return projector(encoder.forward_head(tokens)), tokens, selection

    def embed_query(self, volume: Tensor, phase_mode: PhaseMode = "gumbel") -> Embedding:
        """Embed views with the query branch (with gradient).

        Parameters
        ----------
        volume : Tensor
            `(B, C_in, D, H, W)` views.
        phase_mode : {"gumbel", "argmax"}
            Phase-selection mode passed to the encoder (``"gumbel"`` to train the scorer).

        Returns
        -------
        Embedding
            ``vector`` is the predictor output `(B, D)`.
        """
        projected, tokens, selection = self._embed(self.encoder, self.projector, volume, phase_mode)
        return Embedding(self.predictor(projected), tokens, selection)

    @torch.no_grad()
    def embed_key(self, volume: Tensor, phase_mode: PhaseMode = "argmax") -> Embedding:
        """Embed views with the momentum branch, without gradient.

        Parameters
        ----------
        volume : Tensor
            `(B, C_in, D, H, W)` views.
        phase_mode : {"argmax", "gumbel"}
            Phase-selection mode passed to the momentum encoder (``"argmax"``: a deterministic pick).

        Returns
        -------
        Embedding
            ``vector`` is the momentum projector output `(B, D)`.
        """
        projected, tokens, selection = self._embed(
            self.momentum_encoder, self.momentum_projector, volume, phase_mode
        )
        return Embedding(projected, tokens, selection)

    @torch.no_grad()
    def update_momentum(self, momentum: float) -> None:
        """Move the momentum branch towards the query branch in place: ``θ_k ← m·θ_k + (1 − m)·θ_q``.

        Parameters
        ----------
        momentum : float
            ``m`` in ``[0, 1]`` (e.g. from :func:`cosine_momentum`).
        """
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        keys, queries = self.momentum_parameters(), self.query_parameters()
        # Two roundings, as the formula reads (a fused multiply-add would differ in the last bit).
        torch._foreach_mul_(keys, momentum)
        torch._foreach_add_(keys, torch._foreach_mul(queries, 1 - momentum))
