"""APT-ViT: a shift-equivariant, self-supervised Vision Transformer encoder for cryo-ET subtomograms."""

from aptvit.checkpoint import load_encoder
from aptvit.models import (
    AdaptivePhaseSampler,
    APTViT,
    NormScorer,
    SteerableScorer,
    build_encoder,
    create_encoder,
    list_encoders,
    polyphase_components,
)

__all__ = [
    "APTViT",
    "AdaptivePhaseSampler",
    "NormScorer",
    "SteerableScorer",
    "build_encoder",
    "create_encoder",
    "load_encoder",
    "list_encoders",
    "polyphase_components",
]
