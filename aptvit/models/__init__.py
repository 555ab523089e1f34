"""Encoders of APT-ViT: adaptive polyphase tokenization, the steerable phase scorer and the transformer.

Build one by name with ``create_encoder``; ``list_encoders`` names the registered variants.
"""

from aptvit.models.patch_embed import PatchEmbed3d, patchify_volume
from aptvit.models.phase_sampler import (
    AdaptivePhaseSampler,
    NormScorer,
    PhaseMode,
    PhaseSelection,
    phase_offsets_zyx,
    polyphase_components,
    roll_volume_zyx,
)
from aptvit.models.position import ConvPositionEncoding3d
from aptvit.models.registry import (
    build_encoder,
    build_phase_scorer,
    create_encoder,
    list_encoders,
    register_encoder,
)
from aptvit.models.steerable import SteerableConv3d, SteerableScorer
from aptvit.models.vit import APTViT, Attention, Block, DropPath, Mlp

__all__ = [
    "APTViT",
    "AdaptivePhaseSampler",
    "Attention",
    "Block",
    "ConvPositionEncoding3d",
    "DropPath",
    "Mlp",
    "NormScorer",
    "PatchEmbed3d",
    "PhaseMode",
    "PhaseSelection",
    "SteerableConv3d",
    "SteerableScorer",
    "build_encoder",
    "build_phase_scorer",
    "create_encoder",
    "list_encoders",
    "patchify_volume",
    "phase_offsets_zyx",
    "polyphase_components",
    "register_encoder",
    "roll_volume_zyx",
]
