"""Pre-training: schedules, resume, the checkpoint record, the CLI and its errors, and that it learns."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from aptvit import load_encoder
from aptvit.checkpoint import CheckpointError, checkpoint_record, datamodule_settings
from aptvit.data import SubtomogramDataModule
from aptvit.fit import main as fit_main
from aptvit.training import warmup_cosine_factor
from cryoengine.config import load_config
from tests.aptvit.pretrain_factory import SMALL_HEADS, tiny_data, tiny_module, tiny_trainer

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
]


@pytest.fixture(autouse=True)
def _command_line(monkeypatch):
    """LightningCLI warns when given args while sys.argv holds pytest's own."""
    monkeypatch.setattr(sys, "argv", ["python -m aptvit.fit"])


@pytest.mark.parametrize(("warmup", "final"), [(0, 0.0), (10, 0.1)])
def test_warmup_cosine_reaches_its_end_points(warmup, final):
    total = 100
    factors = [warmup_cosine_factor(step, total, warmup, final) for step in range(total + 1)]
    assert factors[max(warmup - 1, 0)] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(final)
    assert factors[warmup + (total - warmup) // 2] == pytest.approx((1 + final) / 2, abs=1e-2)
    if warmup:
        assert factors[0] == pytest.approx(1 / warmup)
        assert np.all(np.diff(factors[:warmup]) > 0)
    assert np.all(np.diff(factors[warmup:]) <= 1e-12)


class _Killed(Exception):
    """Stands for a killed job."""


class _KillAtEpoch(L.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch == self.epoch:
            raise _Killed


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")  # resuming into it
def test_resume_from_a_checkpoint_repeats_the_uninterrupted_run(simulated_dataset, tmp_path):
    """8 steps (2 epochs) straight = killed after epoch 0 + resumed from its last.ckpt, every tensor.

    The checkpoint is the one written after the epoch's validation (Lightning restarts at the next epoch);
    from a checkpoint written mid-epoch the streaming loader restarts that epoch's stream instead.
    """
    validated = {"check_val_every_n_epoch": 1, "limit_val_batches": 1}
    straight = tiny_module()
    tiny_trainer(tmp_path / "straight", max_steps=8, **validated).fit(
        straight, datamodule=tiny_data(simulated_dataset)
    )
    killed = tiny_trainer(tmp_path / "run", max_steps=8, **validated)
    killed.callbacks.append(_KillAtEpoch(1))
    with pytest.raises(_Killed):
        killed.fit(tiny_module(), datamodule=tiny_data(simulated_dataset))
    resumed = tiny_module(seed=0)
    tiny_trainer(tmp_path / "run", max_steps=8, **validated).fit(
        resumed,
        datamodule=tiny_data(simulated_dataset),
        ckpt_path=str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
    )
    reference = straight.state_dict()
    assert resumed.global_step == straight.global_step == 8
    for name, value in resumed.state_dict().items():
        assert torch.equal(value, reference[name]), name


@pytest.mark.slow
def test_datamodule_settings_rebuild_the_runs_validation_split(straight_run, simulated_dataset, tmp_path):
    _, checkpoint = straight_run
    settings = datamodule_settings(checkpoint)
    assert not any(key.startswith("_") for key in settings)
    rebuilt, original = SubtomogramDataModule(**settings), tiny_data(simulated_dataset)
    for data in (rebuilt, original):
        data.setup("validate")
    batches = [next(iter(data.val_dataloader()[-1])) for data in (rebuilt, original)]
    for key in ("query", "key"):
        assert torch.equal(batches[0][key], batches[1][key]), key

    plain = tmp_path / "plain.ckpt"
    record = torch.load(checkpoint, map_location="cpu", weights_only=False)
    del record["datamodule_hyper_parameters"]
    torch.save(record, plain)
    with pytest.raises(CheckpointError, match="stores no data-module settings"):
        datamodule_settings(plain)


@pytest.mark.slow
def test_load_encoder_rebuilds_the_frozen_trained_encoder(straight_run, simulated_dataset):
    module, checkpoint = straight_run
    record = checkpoint_record(checkpoint)
    assert record["encoder"]["name"] == "aptvit_nano_p8"
    assert (record["box"], record["voxel_size_A"]) == (24, 10.0)
    assert record["class_ids"] == ["ring", "cage", "rod", "blob"]

    encoder = load_encoder(checkpoint, variant="aptvit_nano_p8", box=24, voxel_size_A=10.0)
    assert not encoder.training
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    volume = torch.randn(3, 1, 24, 24, 24, generator=torch.Generator().manual_seed(0))
    module.eval()
    with torch.no_grad():
        assert torch.equal(encoder(volume), module.encoder(volume, phase_mode="argmax"))

    with pytest.raises(CheckpointError, match="holds encoder 'aptvit_nano_p8', not 'aptvit_small'"):
        load_encoder(checkpoint, variant="aptvit_small")
    with pytest.raises(CheckpointError, match="trained on box 24, the data has box 32"):
        load_encoder(checkpoint, box=32)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_encoder(checkpoint.with_name("missing.ckpt"))


@pytest.mark.slow
def test_a_short_run_learns(simulated_dataset, tmp_path):
    """Loss falls, validation kNN accuracy rises above the untrained encoder's, the pose head beats chance.

    Fixed seeds; 4 classes (chance 0.25) at validation SNR 0.05 on held-out tomograms, the kNN bank from
    the training split; pose error on the validation pairs (a random guess: ~126°). The plain-ViT grid
    (``phase_selector="fixed"``): with the default steerable or the norm selector the phase picks of a noisy
    view are at chance at patch 8 and the encoder hardly learns in this budget; the test below runs the
    steerable selector with its centring term (docs/benchmarks.md, "Pre-training").
    """
    module, data = tiny_module("fixed", phase_weight=0.0), tiny_data(simulated_dataset)
    logger = L.pytorch.loggers.CSVLogger(tmp_path)
    trainer = tiny_trainer(tmp_path, max_steps=300, logger=logger, log_every_n_steps=4)
    before = trainer.validate(module, datamodule=data, verbose=False)[0]
    trainer.fit(module, datamodule=data)
    after = trainer.validate(module, datamodule=data, verbose=False)[0]

    metrics_csv = tmp_path / "lightning_logs" / "version_0" / "metrics.csv"
    metrics = np.genfromtxt(metrics_csv, delimiter=",", names=True)
    loss = metrics["traincontrastive"][np.isfinite(metrics["traincontrastive"])]
    assert loss[-5:].mean() < loss[:5].mean()
    assert after["val/knn_accuracy"] >= before["val/knn_accuracy"] + 0.15
    assert after["val/pose_median_error_deg"] < 120.0


@pytest.mark.slow
def test_a_short_run_learns_with_the_centring_steerable_selector(simulated_dataset, tmp_path):
    """APT-ViT learns when its picks follow the signal: the steerable scorer with the centring term.

    Same budget and seeds as the fixed grid above. Without the centring term the noisy and clean views'
    picks agree at chance (1/512) and the kNN accuracy hardly moves; with it (picks by argmax in training)
    they agree for ~1 item in 4 on held-out tomograms (docs/benchmarks.md, "Pre-training").
    """
    module = tiny_module("steerable", {"centring_weight": 1.0}, train_phase_mode="argmax")
    data = tiny_data(simulated_dataset)
    trainer = tiny_trainer(tmp_path, max_steps=300)
    before = trainer.validate(module, datamodule=data, verbose=False)[0]
    trainer.fit(module, datamodule=data)
    after = trainer.validate(module, datamodule=data, verbose=False)[0]
    assert after["val/knn_accuracy"] >= before["val/knn_accuracy"] + 0.1

    sampler = module.encoder.phase_sampler
    loaders = data.val_dataloader()
    split = loaders[-1] if isinstance(loaders, list) else loaders  # the first of two is the kNN bank
    agree = []
    with torch.no_grad():
        for batch in split:
            clean = batch.get("key_unrotated", batch["key"])
            picks = sampler(batch["query"]).offsets_zyx, sampler(clean).offsets_zyx
            agree.append((picks[0] == picks[1]).all(dim=1))
    assert torch.cat(agree).float().mean() >= 50 / 512  # chance: 1/512


def _cli_config(tmp_path, dataset, **model) -> str:
    config = {
        "seed_everything": 0,
        "model": {
            "encoder": {
                "class_path": "aptvit.models.build_encoder",
                "init_args": {"name": "aptvit_nano_p8", "embed_dim": 48, "depth": 1, "num_heads": 2},
            },
            **SMALL_HEADS,
            **model,
        },
        "data": {"datasets": [str(dataset)], "batch_size": 16, "num_workers": 0, "val_fraction": 0.34},
        "trainer": {
            "accelerator": "cpu",
            "max_steps": 2,
            "val_check_interval": 2,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "default_root_dir": str(tmp_path / "run"),
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(tmp_path)},
            },
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {
                        "dirpath": str(tmp_path / "checkpoints"),
                        "monitor": "val/knn_accuracy",
                        "mode": "max",
                        "save_last": True,
                    },
                }
            ],
        },
    }
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")  # resuming into it
def test_cli_fits_validates_before_and_after_and_resumes(simulated_dataset, tmp_path, capsys):
    config = _cli_config(tmp_path, simulated_dataset)
    result = fit_main(["--config", config])
    assert 0 <= result["knn_before"] <= 1 and 0 <= result["knn_after"] <= 1
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert "validation kNN accuracy: before" in capsys.readouterr().err
    resumed = fit_main(["--config", config, "--trainer.max_steps", "4", "--ckpt_path", "last"])
    assert math.isnan(resumed["knn_before"])  # a resumed run does not re-validate the untrained encoder
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4


def test_cli_rejects_an_unknown_yaml_key(simulated_dataset, tmp_path, capsys):
    config = _cli_config(tmp_path, simulated_dataset, temprature=0.1)
    with pytest.raises(SystemExit):
        fit_main(["--config", config])
    assert "temprature" in capsys.readouterr().err


def test_cli_names_a_missing_dataset(tmp_path):
    config = _cli_config(tmp_path, tmp_path / "absent.zarr")
    with pytest.raises(FileNotFoundError, match="absent.zarr"):
        fit_main(["--config", config])


def test_every_trainer_config_parses_and_the_unseen_classes_are_not_in_the_corpus(capsys):
    for config in sorted((REPO_ROOT / "configs").glob("pretrain_*.yaml")):
        configs = (
            ["--config", str(REPO_ROOT / "configs" / "pretrain_demo.yaml")] if "plain" in config.name else []
        )
        with pytest.raises(SystemExit) as printed:
            fit_main([*configs, "--config", str(config), "--print_config"])
        assert printed.value.code == 0, config
        assert "class_path: aptvit.models.build_encoder" in capsys.readouterr().out
    corpus = load_config(REPO_ROOT / "config.yaml").classes
    unseen = load_config(REPO_ROOT / "configs" / "cryoengine_unseen.yaml").classes
    assert unseen and not set(unseen) & set(corpus)
    assert not {source.pdb_id for source in unseen.values()} & {
        getattr(source, "pdb_id", None) for source in corpus.values()
    }
