"""Named encoder variants: tiny factories over ``APTViT``, listed in a registry and built by name.

``create_encoder("aptvit_small", phase_selector="norm", gumbel_temperature=0.5)`` builds a variant with
any constructor argument overridden; ``list_encoders()`` names them all. ``aptvit_tiny``/``small``/``base``
follow the ViT-Ti/S/B widths at 4³ patches, the ``_p8`` twins use 8³ patches (8× fewer tokens), and
``aptvit_nano_p8`` (96 wide, 4 blocks, 8³ patches) is the small demo variant that the CPU demo pre-trains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from torch import nn

from aptvit.models.phase_sampler import NormScorer
from aptvit.models.steerable import SteerableScorer
from aptvit.models.vit import APTViT

PhaseSelector = Literal["steerable", "norm", "fixed"]
EncoderFactory = Callable[..., APTViT]

_ENCODERS: dict[str, EncoderFactory] = {}


def build_phase_scorer(
    phase_selector: PhaseSelector, in_chans: int = 1, scorer_kwargs: dict[str, Any] | None = None
) -> nn.Module | None:
    """Build the per-component phase scorer named by ``phase_selector``.

    Parameters
    ----------
    phase_selector : {"steerable", "norm", "fixed"}
        ``"steerable"``: the learned rotation-invariant SO(3)-steerable scorer (APT-ViT);
        ``"norm"``: the parameter-free component norm (adaptive polyphase sampling, ablation);
        ``"fixed"``: no selection, the fixed patch grid of a plain ViT (baseline).
    in_chans : int
        Input channels.
    scorer_kwargs : dict, optional
        Further ``SteerableScorer`` arguments (e.g. ``irreps_hidden``, ``hidden_dim``); steerable only.

    Returns
    -------
    nn.Module or None
        The scorer; None for the fixed grid.
    """
    if phase_selector not in ("steerable", "norm", "fixed"):
        raise ValueError(f"phase_selector must be 'steerable', 'norm' or 'fixed', got {phase_selector!r}")
    if scorer_kwargs and phase_selector != "steerable":
        raise ValueError(f"scorer_kwargs apply to the steerable scorer only, got {phase_selector!r}")
    if phase_selector == "steerable":
        return SteerableScorer(in_chans, **(scorer_kwargs or {}))
    return NormScorer() if phase_selector == "norm" else None


def register_encoder(factory: EncoderFactory) -> EncoderFactory:
    """Register an encoder factory under its function name (decorator)."""
    name = factory.__name__
    if name in _ENCODERS:
        raise ValueError(f"an encoder named {name!r} is already registered")
    _ENCODERS[name] = factory
    return factory


def list_encoders() -> list[str]:
    """Return the names of all registered encoders, sorted."""
    return sorted(_ENCODERS)


def create_encoder(name: str, **overrides: Any) -> APTViT:
    """Build a registered encoder, overriding any of its arguments.

    Parameters
    ----------
    name : str
        A name from ``list_encoders()``.
    **overrides
        ``phase_selector`` and ``scorer_kwargs`` (see ``build_phase_scorer``) or any ``APTViT``
        constructor argument.

    Returns
    -------
    APTViT
        The encoder, freshly initialised.
    """
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; registered: {', '.join(list_encoders())}")
    return _ENCODERS[name](**overrides)


def _build(
    phase_selector: PhaseSelector = "steerable", scorer_kwargs: dict[str, Any] | None = None, **kwargs: Any
) -> APTViT:
    if "phase_scorer" in kwargs:
        raise ValueError("pass phase_selector by name, or build APTViT directly with a phase_scorer module")
    scorer = build_phase_scorer(phase_selector, kwargs.get("in_chans", 1), scorer_kwargs)
    return APTViT(phase_scorer=scorer, **kwargs)


# Widths follow ViT-Ti/S/B (DeiT): 192/384/768 wide, 12 blocks, 64-wide heads.
_TINY = {"embed_dim": 192, "depth": 12, "num_heads": 3}
_SMALL = {"embed_dim": 384, "depth": 12, "num_heads": 6}
_BASE = {"embed_dim": 768, "depth": 12, "num_heads": 12}


@register_encoder
def aptvit_tiny(**overrides: Any) -> APTViT:
    """ViT-Ti width, 4³ patches (512 tokens for a 32³ box); the variant CPU tests run."""
    return _build(**{"patch_size": 4, **_TINY, **overrides})


@register_encoder
def aptvit_small(**overrides: Any) -> APTViT:
    """ViT-S width, 4³ patches (512 tokens for a 32³ box)."""
    return _build(**{"patch_size": 4, **_SMALL, **overrides})


@register_encoder
def aptvit_base(**overrides: Any) -> APTViT:
    """ViT-B width, 4³ patches (512 tokens for a 32³ box)."""
    return _build(**{"patch_size": 4, **_BASE, **overrides})


@register_encoder
def aptvit_nano_p8(**overrides: Any) -> APTViT:
    """96 wide, 4 blocks of 3 heads, 8³ patches (64 tokens for a 32³ box): the CPU demo's variant."""
    return _build(**{"patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3, **overrides})


@register_encoder
def aptvit_tiny_p8(**overrides: Any) -> APTViT:
    """ViT-Ti width, 8³ patches (64 tokens for a 32³ box)."""
    return _build(**{"patch_size": 8, **_TINY, **overrides})


@register_encoder
def aptvit_small_p8(**overrides: Any) -> APTViT:
    """ViT-S width, 8³ patches (64 tokens for a 32³ box)."""
    return _build(**{"patch_size": 8, **_SMALL, **overrides})


@register_encoder
def aptvit_base_p8(**overrides: Any) -> APTViT:
    """ViT-B width, 8³ patches (64 tokens for a 32³ box)."""
    return _build(**{"patch_size": 8, **_BASE, **overrides})


def build_encoder(
    name: str = "aptvit_nano_p8",
    phase_selector: PhaseSelector = "steerable",
    embed_dim: int | None = None,
    depth: int | None = None,
    num_heads: int | None = None,
    gumbel_temperature: float | None = None,
    drop_path_rate: float | None = None,
    scorer_kwargs: dict[str, Any] | None = None,
) -> APTViT:
    """Build a registered encoder from typed arguments, and record how (for checkpoints and configs).

    The trainer's YAML names this function as the encoder's ``class_path``; its arguments are the knobs a
    run may turn. The returned encoder's ``variant`` attribute holds ``{"name": ..., "overrides": {...}}``,
    from which :func:`aptvit.checkpoint.load_encoder` rebuilds it.

    Parameters
    ----------
    name
        A name from ``list_encoders()``.
    phase_selector
        ``"steerable"`` (APT-ViT), ``"norm"`` (adaptive polyphase sampling) or ``"fixed"`` (plain ViT).
    embed_dim, depth, num_heads, gumbel_temperature, drop_path_rate
        Overrides of the variant's ``APTViT`` arguments; None keeps the variant's value.
    scorer_kwargs
        Overrides of the steerable scorer's arguments.

    Returns
    -------
    APTViT
        The encoder, freshly initialised.
    """
    given = {
        "phase_selector": phase_selector,
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": num_heads,
        "gumbel_temperature": gumbel_temperature,
        "drop_path_rate": drop_path_rate,
        "scorer_kwargs": scorer_kwargs,
    }
    overrides = {key: value for key, value in given.items() if value is not None}
    encoder = create_encoder(name, **overrides)
    encoder.variant = {"name": name, "overrides": overrides}
    return encoder
