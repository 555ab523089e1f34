"""Pre-training objectives in pure torch: MoCo-v3, the noise-resilient contrastive loss and the pose loss.

No Lightning and no ``torch.distributed`` here: the caller gathers keys across ranks and passes them in.
"""

from aptvit.objectives.moco import Embedding, MoCo, cosine_momentum, info_nce, symmetric_info_nce
from aptvit.objectives.nrcl import nrcl_loss, phase_agreement, phase_consistency_loss, snr_weight
from aptvit.objectives.pose import PoseLoss, pose_loss

__all__ = [
    "Embedding",
    "MoCo",
    "PoseLoss",
    "cosine_momentum",
    "info_nce",
    "nrcl_loss",
    "phase_agreement",
    "phase_consistency_loss",
    "pose_loss",
    "snr_weight",
    "symmetric_info_nce",
]
