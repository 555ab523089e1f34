"""DDP equivalence: a global batch split over two gloo ranks gives the single-process loss and updates."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from aptvit.models import build_encoder
from aptvit.rotation import random_rotations
from aptvit.training import PretrainModule

BOX = 16
ITEMS = 8


class _FixedViews(Dataset):
    """Eight fixed items in the data module's batch format (views already made)."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(7)
        volumes = torch.randn(ITEMS, 4, 1, BOX, BOX, BOX, generator=generator)
        self.items = [
            {
                "query": volumes[i, 0],
                "key": volumes[i, 1],
                "query_snr": torch.tensor(0.05 * (i + 1)),
                "key_snr": torch.tensor(float("inf")),
                "pose_source": volumes[i, 2],
                "pose_target": volumes[i, 3],
                "pose_rotation": random_rotations(1, generator)[0],
                "pose_shift": torch.randn(3, generator=generator),
                "label": torch.tensor(i % 3),
                "tomogram": torch.tensor(i % 2),
            }
            for i in range(ITEMS)
        ]

    def __len__(self) -> int:
        return ITEMS

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


class _Record(L.Callback):
    """Save each rank's first-step loss and its final parameters."""

    def __init__(self, directory) -> None:
        self.directory = directory

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 1:
            torch.save(outputs["loss"].detach(), self.directory / f"loss_{trainer.global_rank}.pt")

    def on_train_end(self, trainer, module) -> None:
        torch.save(module.state_dict(), self.directory / f"state_{trainer.global_rank}.pt")


def _module() -> PretrainModule:
    torch.manual_seed(0)
    encoder = build_encoder("aptvit_tiny_p8", phase_selector="fixed", embed_dim=32, depth=1, num_heads=2)
    return PretrainModule(
        encoder,
        embedding_dim=16,
        projector_hidden_dim=32,
        predictor_hidden_dim=32,
        pose_hidden_dim=16,
        head_norm="layer",  # SyncBatchNorm has no CPU kernel; BN would make rank statistics differ
        phase_weight=0.0,
        warmup_fraction=0.0,
        lr=1e-3,
    )


def _fit(directory, devices: int, batch_size: int, steps: int) -> None:
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[_Record(directory)],
        deterministic=True,
        limit_val_batches=0,
    )
    trainer.fit(_module(), DataLoader(_FixedViews(), batch_size=batch_size, shuffle=False))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning")
def test_two_gloo_ranks_equal_one_process_on_the_same_global_batch(tmp_path):
    single, split = tmp_path / "single", tmp_path / "split"
    single.mkdir()
    split.mkdir()
    _fit(single, devices=1, batch_size=ITEMS, steps=3)
    _fit(split, devices=2, batch_size=ITEMS // 2, steps=3)

    # The loss of the global batch: each rank's queries against all ranks' keys (negatives from the other
    # rank), averaged over ranks, is the single-process loss.
    single_loss = torch.load(single / "loss_0.pt")
    rank_losses = [torch.load(split / f"loss_{rank}.pt") for rank in (0, 1)]
    assert not torch.isclose(rank_losses[0], rank_losses[1])
    assert torch.isclose((rank_losses[0] + rank_losses[1]) / 2, single_loss, rtol=1e-5)

    # Identical parameters on both ranks after the steps, and equal to the single-process run.
    states = [torch.load(split / f"state_{rank}.pt") for rank in (0, 1)]
    reference = torch.load(single / "state_0.pt")
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), name
        assert torch.allclose(value, reference[name], atol=1e-5), name
