"""Noise-resilient contrastive loss (NRCL): noisy views as queries, clean views as keys, weighted by SNR.

Loss
----
For a batch of ``B`` particles on this rank, with ``M`` keys gathered from all ranks,

    L_NRCL = 2τ · (1/B) Σ_i w(s_i) · ℓ_i,
    ℓ_i    = −log[ exp(q̂_i · k̂_{p_i} / τ) / Σ_{j=1..M} exp(q̂_i · k̂_j / τ) ],
    w(s)   = s / (s + s½),        1/s_i = 1/s_i^q + 1/s_i^k,

``q_i = predictor(projector(f_θ(noisy_i)))`` (query branch, with gradient, Gumbel phase pick),
``k_j = projector_ξ(f_ξ(clean_j))`` (momentum branch, stop-gradient, argmax phase pick), ``p_i`` the row of
particle ``i``'s own key, all other keys the negatives; hats are L2 normalisation, ``τ`` the temperature
(0.2). ``s^q`` is the SNR of the noisy view and ``s^k`` that of the key view (``∞`` for the clean view, so
``s_i = s^q_i``); ``s½ = None`` gives ``w ≡ 1``. Unlike MoCo-v3 the loss is not symmetrised: the
clean view is only a target, never pulled towards a noisy embedding.

Why an SNR weight, and this one
-------------------------------
At the low end of the SNR range (0.01) a 32³ view carries little evidence of which particle it is, so its
InfoNCE term is large and its gradient mostly follows the noise realisation, not the particle; at moderate
SNR the term carries exactly the invariance to noise we want the encoder to learn. Treating the per-sample
gradients as noisy estimates of one direction, the minimum-variance combination weights each by the share
of its input that is signal, the Wiener gain ``S/(S+N) = s/(1+s)``; the encoder pools many voxels, so its
effective SNR is ``s/s½`` with ``s½`` the SNR at which a view is half signal for it, giving
``w = s/(s + s½)``. When the key is itself a noisy (higher-SNR) view, the two views' noise variances add
relative to the signal's: ``1/s = 1/s^q + 1/s^k``. A curriculum over SNR is the alternative; it needs the
sampler to change with the step and makes the loss non-stationary, whereas the weight keeps every SNR in
every batch, stays stationary and reduces to plain InfoNCE with ``snr_half=None``. The default
``s½ = 0.03`` is the geometric middle of the default range 0.01–0.1 (weights 0.25 at 0.01, 0.5 at
0.03, 0.77 at 0.1). The paper's exact form is not public; this is our choice.

Ablation: plain MoCo-v3 (two noisy views with independent noise, symmetric, unweighted) is
:func:`aptvit.objectives.moco.symmetric_info_nce`.

Phase consistency
-----------------
The encoder picks one of ``P = p³`` patch-grid phases per view; the pick of the noisy view should be the
pick of the clean view of the same particle at the same position. The Gumbel pick of the noisy view is
distributed as ``softmax(scores_noisy / τ_g)``; the term is the negative log-probability that it equals the
clean view's argmax pick:

    L_phase = (1/B) Σ_i −log softmax(scores_i^noisy / τ_g)[ argmax_k scores_ik^clean ].

A hard target, rather than the KL divergence to the clean softmax, because a scorer that gives every phase
the same score (no information) makes both views uniform and that KL zero, its minimum, while it makes this
term maximal (``log P``); with a hard target the only way down is noisy scores that peak where the clean
ones do. The clean scores come from the key branch (the pick its keys were computed with), the noisy
ones from the query branch, so the gradient reaches the query scorer only.
:func:`phase_agreement` is the monitored quantity: the fraction of equal argmax picks (chance ``1/P``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from aptvit.objectives.moco import info_nce

__all__ = ["nrcl_loss", "phase_agreement", "phase_consistency_loss", "snr_weight"]

DEFAULT_SNR_HALF = 0.03


def snr_weight(
    snr_query: Tensor, snr_key: Tensor | None = None, snr_half: float = DEFAULT_SNR_HALF
) -> Tensor:
    """Weight ``w = s / (s + s½)`` of each query–key pair from its effective SNR ``1/s = 1/s_q + 1/s_k``.

    Parameters
    ----------
    snr_query : Tensor
        `(B,)` SNR (signal variance / noise variance) of each query's noisy view, positive.
    snr_key : Tensor, optional
        `(B,)` SNR of each positive key's view, positive or ``inf``; None: clean keys (``inf``).
    snr_half : float
        ``s½`` (> 0), the effective SNR given weight one half.

    Returns
    -------
    Tensor
        `(B,)` weights in ``(0, 1)``.
    """
    if not snr_half > 0:
        raise ValueError(f"snr_half must be positive, got {snr_half}")
    if snr_query.ndim != 1 or (snr_key is not None and snr_key.shape != snr_query.shape):
        shape_key = None if snr_key is None else tuple(snr_key.shape)
        raise ValueError(
            f"snr_query and snr_key must be (B,) alike, got {tuple(snr_query.shape)}, {shape_key}"
        )
    snr = snr_query if snr_key is None else 1 / (1 / snr_query + 1 / snr_key)
    return snr / (snr + snr_half)


def nrcl_loss(
    noisy_queries: Tensor,
    clean_keys: Tensor,
    positive_index: Tensor,
    temperature: float = 0.2,
    snr_query: Tensor | None = None,
    snr_key: Tensor | None = None,
    snr_half: float | None = DEFAULT_SNR_HALF,
) -> Tensor:
    """Noise-resilient contrastive loss of noisy-view queries against clean-view keys (module docstring).

    Parameters
    ----------
    noisy_queries : Tensor
        `(B, C)` predictor outputs of the noisy views (with gradient).
    clean_keys : Tensor
        `(M, C)` momentum projector outputs of the clean (or higher-SNR) views of the global batch; detached.
    positive_index : Tensor
        `(B,)` int64: row of ``clean_keys`` holding each query's own particle.
    temperature : float
        ``τ`` (> 0).
    snr_query : Tensor, optional
        `(B,)` SNR of each noisy view; required unless ``snr_half`` is None.
    snr_key : Tensor, optional
        `(B,)` SNR of each query's positive key view; None: the clean view.
    snr_half : float or None
        ``s½`` of :func:`snr_weight`; None: unweighted InfoNCE.

    Returns
    -------
    Tensor
        Scalar loss.
    """
    weights = None
    if snr_half is not None:
        if snr_query is None:
            raise ValueError("snr_query is required when snr_half is set (pass snr_half=None for no weight)")
        weights = snr_weight(snr_query, snr_key, snr_half).to(noisy_queries.dtype)
    return info_nce(noisy_queries, clean_keys.detach(), positive_index, temperature, weights)


def _checked_scores(scores_a: Tensor | None, scores_b: Tensor | None) -> tuple[Tensor, Tensor]:
    if scores_a is None or scores_b is None:
        raise ValueError("phase scores are None: the fixed-grid encoder selects no phase")
    if scores_a.ndim != 2 or scores_a.shape != scores_b.shape:
        shapes = f"{tuple(scores_a.shape)} and {tuple(scores_b.shape)}"
        raise ValueError(f"expected two (B, P) score arrays of one shape, got {shapes}")
    return scores_a, scores_b


def phase_consistency_loss(
    scores_noisy: Tensor | None, scores_clean: Tensor | None, temperature: float = 1.0
) -> Tensor:
    """Negative log-probability that the noisy view's Gumbel pick is the clean view's argmax pick.

    Parameters
    ----------
    scores_noisy : Tensor
        `(B, P)` phase scores of the noisy views (query branch, with gradient).
    scores_clean : Tensor
        `(B, P)` phase scores of the clean views of the same particles at the same position (the target).
    temperature : float
        ``τ_g`` of the noisy branch's Gumbel-softmax (> 0), so that ``softmax(scores / τ_g)`` is the
        distribution of its pick.

    Returns
    -------
    Tensor
        Scalar loss, in ``[0, ∞)``; ``log P`` for uniform noisy scores.
    """
    scores_noisy, scores_clean = _checked_scores(scores_noisy, scores_clean)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    target = scores_clean.detach().argmax(dim=1)
    return F.cross_entropy(scores_noisy / temperature, target)


def phase_agreement(scores_a: Tensor | None, scores_b: Tensor | None) -> Tensor:
    """Fraction of samples whose two views pick the same phase (equal argmax of the scores).

    Parameters
    ----------
    scores_a, scores_b : Tensor
        `(B, P)` phase scores of two views of the same particles at the same position.

    Returns
    -------
    Tensor
        0-dim float in ``[0, 1]``; chance is ``1/P``.
    """
    scores_a, scores_b = _checked_scores(scores_a, scores_b)
    return (scores_a.argmax(dim=1) == scores_b.argmax(dim=1)).float().mean()
