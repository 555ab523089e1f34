"""Pre-training data: shard-streaming views of ``dataset.zarr`` for NRCL, MoCo-v3 and the SE(3) branch."""

from aptvit.data.datamodule import SubtomogramDataModule
from aptvit.data.splits import split_tomograms
from aptvit.data.stream import ShardPiece, ShardPlan, SubtomogramStream
from aptvit.data.views import apply_pose_views, mix_noise_at_snr, standardise_volumes

__all__ = [
    "ShardPiece",
    "ShardPlan",
    "SubtomogramDataModule",
    "SubtomogramStream",
    "apply_pose_views",
    "mix_noise_at_snr",
    "split_tomograms",
    "standardise_volumes",
]
