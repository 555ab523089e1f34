"""Small pre-training runs for the tests: a narrow nano_p8 encoder, small heads, the simulated dataset."""

from __future__ import annotations

import lightning as L
import torch

from aptvit.data import SubtomogramDataModule
from aptvit.models import build_encoder
from aptvit.training import PretrainModule

SMALL_HEADS = {
    "embedding_dim": 32,
    "projector_hidden_dim": 64,
    "predictor_hidden_dim": 64,
    "pose_hidden_dim": 32,
}


def tiny_module(selector: str = "steerable", **overrides) -> PretrainModule:
    torch.manual_seed(0)
    encoder = build_encoder("aptvit_nano_p8", phase_selector=selector, embed_dim=48, depth=2, num_heads=2)
    return PretrainModule(encoder, **{**SMALL_HEADS, "lr": 2e-3, "knn_k": 5, **overrides})


def tiny_data(dataset, **overrides) -> SubtomogramDataModule:
    settings = {
        "batch_size": 16,
        "num_workers": 0,
        "val_fraction": 0.34,  # one tomogram of three per class
        "snr_range": (0.02, 0.2),
        "val_snr": 0.05,
        "shuffle_buffer": 64,
        "seed": 0,
    }
    return SubtomogramDataModule([str(dataset)], **{**settings, **overrides})


def tiny_trainer(root, max_steps: int, **overrides) -> L.Trainer:
    settings = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": max_steps,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "check_val_every_n_epoch": 1000,
        "default_root_dir": str(root),
        "callbacks": [L.pytorch.callbacks.ModelCheckpoint(dirpath=str(root / "checkpoints"), save_last=True)],
    }
    return L.Trainer(**{**settings, **overrides})
