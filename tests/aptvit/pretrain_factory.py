"""Pytest plugin of the pre-training tests: a small simulated dataset and short runs of a narrow encoder.

Registered by ``tests/conftest.py`` (``pytest_plugins``), so its session fixtures are shared by every test
file and computed once.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from aptvit.data import SubtomogramDataModule
from aptvit.models import build_encoder
from aptvit.training import PretrainModule
from cryoengine import stages
from cryoengine.config import validate_config

SMALL_HEADS = {
    "embedding_dim": 32,
    "projector_hidden_dim": 64,
    "predictor_hidden_dim": 64,
    "pose_hidden_dim": 32,
}


def tiny_module(selector: str = "steerable", scorer_kwargs=None, **overrides) -> PretrainModule:
    torch.manual_seed(0)
    encoder = build_encoder(
        "aptvit_nano_p8",
        phase_selector=selector,
        embed_dim=48,
        depth=2,
        num_heads=2,
        scorer_kwargs=scorer_kwargs,
    )
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
        "callbacks": [
            L.pytorch.callbacks.ModelCheckpoint(
                dirpath=str(root / "checkpoints"), save_last=True, save_on_train_epoch_end=False
            )
        ],
    }
    return L.Trainer(**{**settings, **overrides})


CLASSES = {
    "ring": {"kind": "phantom", "shape": "ring", "diameter_A": 150, "subunits": 7, "seed": 1},
    "cage": {"kind": "phantom", "shape": "cage", "diameter_A": 160, "subunits": 24, "seed": 3},
    "rod": {"kind": "phantom", "shape": "rod", "diameter_A": 170, "subunits": 6, "seed": 4},
    "blob": {"kind": "phantom", "shape": "blob", "diameter_A": 130, "subunits": 5, "seed": 5},
}


def simulated_config(workdir: Path):
    """Box 24 (3³ tokens at patch 8), three tomograms of eight particles per class."""
    return validate_config(
        {
            "voxel_size_A": 10.0,
            "box": 24,
            "structures": {"cache_dir": str(workdir / "structures"), "download": False},
            "density": {"resolution_A": 25.0, "oversampling": 2},
            "sample": {
                "slab_shape_zyx": [32, 112, 112],
                "tomograms_per_class": 3,
                "particles_per_tomogram": 8,
                "crowding_fraction": 0.02,
            },
            "tilt": {"step_deg": 6.0},
            "noise": {"snr_levels": [0.1, 0.03, 0.01]},
            "dataset": {"path": str(workdir / "dataset.zarr"), "shard_size": 8},
            "classes": CLASSES,
        },
        origin="tests/aptvit/conftest.py",
    )


@pytest.fixture(scope="session")
def simulated_dataset(tmp_path_factory) -> Path:
    """``dataset.zarr`` of 96 subtomograms (4 classes × 3 tomograms × 8) through the generator's stages."""
    workdir = tmp_path_factory.mktemp("simulated")
    config = simulated_config(workdir)
    dataset = Path(config.dataset.path)
    for class_id in CLASSES:
        particles = stages.simulate_class(
            config, class_id, workdir / "densities", workdir / f"{class_id}.npz"
        )
        stages.shard(config, class_id, particles, dataset)
    stages.manifest(config, list(CLASSES), dataset, workdir / "manifest.json")
    return dataset


@pytest.fixture(scope="session")
def straight_run(simulated_dataset, tmp_path_factory):
    """Eight steps (two epochs of four batches) without interruption; its last.ckpt."""
    root = tmp_path_factory.mktemp("straight")
    module = tiny_module()
    tiny_trainer(root, max_steps=8).fit(module, datamodule=tiny_data(simulated_dataset))
    return module, root / "checkpoints" / "last.ckpt"
