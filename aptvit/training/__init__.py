"""Pre-training with Lightning: the LightningModule and its learning-rate schedule (the Lightning code)."""

from aptvit.training.pretrain import PretrainModule
from aptvit.training.schedule import warmup_cosine_factor

__all__ = ["PretrainModule", "warmup_cosine_factor"]
