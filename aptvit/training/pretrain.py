"""The pre-training LightningModule: MoCo-v3 + NRCL + SE(3) branch around an injected encoder.

The only Lightning code besides the data module (DESIGN §2). It owns what the objective must not know:
gathering keys across ranks (``self.all_gather``, gradient on the local query side only, as moco-v3),
the optimiser and its schedule, the momentum schedule, logging, the online kNN monitor and the checkpoint
record that :func:`aptvit.checkpoint.load_encoder` reads back.

Randomness inside a step (Gumbel phase sampling) is drawn from a generator seeded by ``(seed, global
step, rank)``, so a run resumed from a checkpoint repeats the uninterrupted run bit for bit, and the ranks
of a DDP run draw differently.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, Literal, cast

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn

from aptvit.models.heads import MLPHead, PoseHead
from aptvit.models.vit import APTViT
from aptvit.objectives import (
    MoCo,
    cosine_momentum,
    nrcl_loss,
    phase_agreement,
    phase_consistency_loss,
    pose_loss,
    symmetric_info_nce,
)
from aptvit.rotation import geodesic_angle_rad, point_group_rotations
from aptvit.tasks.classify import knn_accuracy
from aptvit.training.schedule import warmup_cosine_factor

__all__ = ["PretrainModule"]

CHECKPOINT_KEY = "aptvit"


class PretrainModule(L.LightningModule):
    """Self-supervised pre-training of an APT-ViT encoder.

    Loss per step: ``NRCL(noisy query, clean key) + pose_weight · pose + phase_weight · phase``
    (``aptvit.objectives``); with ``objective="moco"`` the key is a second, independently noisy view and the
    contrastive term is plain symmetric MoCo-v3 (the ablation).

    Parameters
    ----------
    encoder
        The encoder to pre-train, built by name (``aptvit.models.build_encoder``); injected.
    objective
        ``"nrcl"``: noisy queries against clean keys (the data module's ``key_view`` must be ``"clean"``);
        ``"moco"``: symmetric InfoNCE between two noisy views (``key_view="noisy"``).
    embedding_dim
        Output width of the projector and the predictor (moco-v3: 256).
    projector_hidden_dim
        Hidden width of the 3-layer projector (moco-v3: 4096; smaller for subtomograms).
    predictor_hidden_dim
        Hidden width of the 2-layer predictor.
    temperature
        InfoNCE temperature τ (moco-v3 ViT: 0.2).
    snr_half
        SNR at which a query's NRCL term has weight ½ (``w = s / (s + s½)``, ``aptvit.objectives.nrcl``);
        None weights every SNR alike.
    base_momentum
        Momentum at step 0; it rises to 1 along a half cosine over the run (moco-v3: 0.99).
    pose_weight
        λ of the SE(3) branch; 0 switches it off.
    pose_hidden_dim
        Width of the pose head.
    translation_weight
        Weight of the translation error (per voxel) against the rotation error (per radian) in the pose
        loss.
    phase_weight
        μ of the phase-consistency term between the clean and the noisy view's phase selection.
    train_phase_mode
        Phase pick of the trained branch: ``"gumbel"`` (straight-through Gumbel-softmax, the scorer also
        learns from the contrastive and pose terms) or ``"argmax"`` (the inference pick; the scorer learns
        from the phase term alone). The momentum branch always picks by argmax.
    symmetry
        Point group per class id for the pose loss (``"C1"`` when absent), e.g. ``{"groel": "D7"}``.
    lr
        Peak learning rate of AdamW (after warm-up).
    selector_lr_multiplier
        Learning rate of the phase selector's parameters relative to ``lr``: its gradients are orders of
        magnitude smaller than the trunk's.
    weight_decay
        AdamW weight decay, off for the encoder's ``no_weight_decay()`` parameters and every 1-D parameter.
    betas
        AdamW betas (moco-v3 ViT: 0.9, 0.95).
    warmup_fraction
        Fraction of the run spent in linear warm-up.
    final_lr_factor
        Learning rate at the end, relative to ``lr``.
    head_norm
        Normalisation in the projector and predictor: ``"batch"`` as moco-v3 (use
        ``trainer.sync_batchnorm: true`` on GPUs), ``"layer"`` where batch statistics cannot be shared
        across ranks (CPU gloo runs: SyncBatchNorm has no CPU kernel).
    knn_k
        Neighbours of the validation kNN monitor.
    compile
        Compile the encoder with ``torch.compile`` (GPU runs).
    seed
        Seed of the in-step randomness (Gumbel phase sampling).
    """

    def __init__(
        self,
        encoder: APTViT,
        objective: Literal["nrcl", "moco"] = "nrcl",
        embedding_dim: int = 256,
        projector_hidden_dim: int = 1024,
        predictor_hidden_dim: int = 1024,
        temperature: float = 0.2,
        snr_half: float | None = 0.03,
        base_momentum: float = 0.99,
        pose_weight: float = 0.5,
        pose_hidden_dim: int = 128,
        translation_weight: float = 0.1,
        phase_weight: float = 0.1,
        train_phase_mode: Literal["gumbel", "argmax"] = "gumbel",
        symmetry: dict[str, str] | None = None,
        lr: float = 1.5e-4,
        selector_lr_multiplier: float = 100.0,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_fraction: float = 0.1,
        final_lr_factor: float = 0.0,
        head_norm: Literal["batch", "layer"] = "batch",
        knn_k: int = 20,
        compile: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if objective not in ("nrcl", "moco"):
            raise ValueError(f"objective must be 'nrcl' or 'moco', got {objective!r}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        self.save_hyperparameters(ignore=["encoder"])
        width = int(encoder.embed_dim)
        norm = nn.BatchNorm1d if head_norm == "batch" else nn.LayerNorm
        projector = MLPHead(3, width, projector_hidden_dim, embedding_dim, last_bn=True, norm_layer=norm)
        predictor = MLPHead(
            2, embedding_dim, predictor_hidden_dim, embedding_dim, last_bn=False, norm_layer=norm
        )
        self.moco = MoCo(encoder, projector, predictor)
        self.pose_head = PoseHead(width, pose_hidden_dim) if pose_weight > 0 else None
        self._groups = {cid: point_group_rotations(symbol) for cid, symbol in (symmetry or {}).items()}
        self._validation: list[dict[str, Tensor]] = []
        self._bank: list[dict[str, Tensor]] = []
        self.dataset_record: dict[str, Any] = {}
        if compile:
            self.moco.encoder.compile()

    @property
    def encoder(self) -> APTViT:
        """The encoder being trained (the base, not the momentum copy)."""
        return self.moco.encoder

    # ------------------------------------------------------------------ set-up and checkpoints

    def setup(self, stage: str) -> None:
        """Record what the checkpoint must carry about the data (box, voxel size, class ids)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "dataset_record"):
            self.dataset_record = dict(datamodule.dataset_record())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the encoder's variant and the data's box and voxel size (DESIGN §8)."""
        checkpoint[CHECKPOINT_KEY] = {
            "encoder": dict(getattr(self.encoder, "variant", None) or {}),
            **self.dataset_record,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the data record saved with the checkpoint."""
        record = dict(checkpoint.get(CHECKPOINT_KEY, {}))
        record.pop("encoder", None)
        self.dataset_record = record

    # ------------------------------------------------------------------ training

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One step: contrastive term, SE(3) branch and phase consistency; logs every term."""
        momentum = cosine_momentum(self.global_step, self._total_steps(), self.hparams["base_momentum"])
        with self._step_randomness():
            losses, logs = self._losses(batch)
        total = losses["contrastive"]
        if self.pose_head is not None:
            total = total + self.hparams["pose_weight"] * losses["pose"]
        if self.hparams["phase_weight"] > 0 and "phase" in losses:
            total = total + self.hparams["phase_weight"] * losses["phase"]
        batch_size = batch["query"].shape[0]
        self.log_dict(
            {f"train/{k}": v.detach() for k, v in {**losses, **logs}.items()}, batch_size=batch_size
        )
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=batch_size)
        self.log("train/momentum", momentum, batch_size=batch_size)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=batch_size)  # type: ignore[union-attr]
        self._momentum = momentum
        return total

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Move the momentum encoder towards the base encoder after the optimiser step."""
        self.moco.update_momentum(self._momentum)

    def _losses(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        query = self.moco.embed_query(batch["query"], phase_mode=self.hparams["train_phase_mode"])
        key = self.moco.embed_key(batch["key"], phase_mode="argmax")
        gathered_keys = self._gather(key.vector)
        offset = self.global_rank * key.vector.shape[0]
        positive = torch.arange(key.vector.shape[0], device=key.vector.device) + offset
        losses: dict[str, Tensor] = {}
        logs: dict[str, Tensor] = {}
        temperature = self.hparams["temperature"]
        if self.hparams["objective"] == "nrcl":
            losses["contrastive"] = nrcl_loss(
                query.vector,
                gathered_keys,
                positive,
                temperature,
                snr_query=batch["query_snr"],
                snr_key=batch["key_snr"],
                snr_half=self.hparams["snr_half"],
            )
        else:
            # Plain MoCo-v3 over two independently noisy views: each is once the query and once the key.
            query_2 = self.moco.embed_query(batch["key"], phase_mode=self.hparams["train_phase_mode"])
            key_2 = self.moco.embed_key(batch["query"], phase_mode="argmax")
            losses["contrastive"] = symmetric_info_nce(
                query.vector, query_2.vector, self._gather(key_2.vector), gathered_keys, positive, temperature
            )
        if query.selection.scores is not None:
            # The pick the momentum scorer makes on the clean view at the query's own position and pose.
            target = key.selection.scores
            if "key_unrotated" in batch:
                with torch.no_grad():
                    target = self.moco.momentum_encoder.phase_sampler.score_phases(batch["key_unrotated"])
            sampler = self.encoder.phase_sampler
            losses["phase"] = phase_consistency_loss(query.selection.scores, target, sampler.temperature)
            logs["phase_agreement"] = phase_agreement(query.selection.scores, target)
            if sampler.log_score_scale is not None:
                logs["log_score_scale"] = sampler.log_score_scale.detach()
        embedding = nn.functional.normalize(self.encoder.forward_head(query.tokens), dim=1)
        logs["embedding_std"] = embedding.std(dim=0).mean() * math.sqrt(embedding.shape[1])
        if self.pose_head is not None:
            source = self.encoder.forward_features(
                batch["pose_source"], phase_mode=self.hparams["train_phase_mode"]
            )
            target = self.encoder.forward_features(
                batch["pose_target"], phase_mode=self.hparams["train_phase_mode"]
            )
            prediction = self.pose_head(source, target)
            terms = pose_loss(
                prediction,
                batch["pose_rotation"],
                batch["pose_shift"],
                groups=self._pose_groups(batch),
                frame=batch["rotation"] if self._groups else None,
                translation_weight=self.hparams["translation_weight"],
            )
            losses["pose"] = terms.total
            logs["pose_rotation_deg"] = torch.rad2deg(terms.rotation_rad)
            logs["pose_translation_vox"] = terms.translation_vox
        return losses, logs

    def _pose_groups(self, batch: dict[str, Tensor]) -> list[Tensor] | None:
        if not self._groups:
            return None
        class_ids = self.dataset_record.get("class_ids", [])
        identity = torch.eye(3, dtype=torch.float64)[None]
        return [self._groups.get(class_ids[int(label)], identity) for label in batch["label"]]

    def _gather(self, keys: Tensor) -> Tensor:
        """Keys of the whole global batch, rank-major; no gradient flows through them (moco-v3)."""
        if self.trainer is None or self.trainer.world_size == 1:
            return keys
        return cast(Tensor, self.all_gather(keys.detach())).flatten(0, 1)

    def _total_steps(self) -> int:
        total = (
            self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches
        )
        if not math.isfinite(total) or total < 1:
            raise ValueError(
                "set trainer.max_steps: the streaming loader has no length to derive the run from"
            )
        return int(total)

    @contextlib.contextmanager
    def _step_randomness(self) -> Iterator[None]:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            state = np.random.SeedSequence([self.hparams["seed"], self.global_step, self.global_rank])
            torch.manual_seed(int(state.generate_state(1, dtype=np.uint64)[0] % (2**63)))
            yield

    # ------------------------------------------------------------------ validation: the kNN monitor

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Embed validation views with the base encoder (hard phase pick); pose error on the validation split.

        With two validation loaders (the data module's kNN bank, then the validation split) the first
        fills the bank of the kNN monitor.
        """
        tokens = self.encoder.forward_features(batch["query"], phase_mode="argmax")
        record = {"embedding": self.encoder.forward_head(tokens).float(), "label": batch["label"]}
        if dataloader_idx == 0 and self._has_bank():
            self._bank.append(record)
            return
        if self.pose_head is not None:
            source = self.encoder.forward_features(batch["pose_source"], phase_mode="argmax")
            target = self.encoder.forward_features(batch["pose_target"], phase_mode="argmax")
            prediction = self.pose_head(source, target)
            error = geodesic_angle_rad(prediction.rotation, batch["pose_rotation"].to(prediction.rotation))
            record["pose_error_deg"] = torch.rad2deg(error)
        self._validation.append(record)

    def on_validation_epoch_end(self) -> None:
        """Log the kNN accuracy of the validation split against the bank, and the median pose error."""
        validation, bank = self._collected(self._validation), self._collected(self._bank)
        self._validation, self._bank = [], []
        if validation and bank:
            accuracy = knn_accuracy(
                bank["embedding"],
                bank["label"],
                validation["embedding"],
                validation["label"],
                k=self.hparams["knn_k"],
            )
            self.log("val/knn_accuracy", accuracy, prog_bar=True)
        if validation and "pose_error_deg" in validation:
            self.log("val/pose_median_error_deg", float(np.median(validation["pose_error_deg"])))

    def _collected(self, records: list[dict[str, Tensor]]) -> dict[str, np.ndarray]:
        """Concatenate one loader's records over its batches and (DDP) over the ranks."""
        if not records:
            return {}
        local = {key: torch.cat([record[key] for record in records]) for key in records[0]}
        if self.trainer.world_size > 1:  # every rank holds the same number of items (aptvit.data.stream)
            local = {key: cast(Tensor, self.all_gather(value)).flatten(0, 1) for key, value in local.items()}
        return {key: value.cpu().numpy() for key, value in local.items()}

    def _has_bank(self) -> bool:
        loaders = self.trainer.val_dataloaders
        return isinstance(loaders, list | tuple) and len(loaders) == 2

    # ------------------------------------------------------------------ optimiser

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """AdamW in three groups (decayed, not decayed, phase selector) with warm-up + cosine, per step."""
        no_decay = {f"moco.encoder.{name}" for name in self.encoder.no_weight_decay()}
        groups: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": [], "selector": []}
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            if name.startswith("moco.encoder.phase_sampler."):
                groups["selector"].append(parameter)
            elif name in no_decay or parameter.ndim <= 1:
                groups["no_decay"].append(parameter)
            else:
                groups["decay"].append(parameter)
        lr, decay = self.hparams["lr"], self.hparams["weight_decay"]
        optimizer = torch.optim.AdamW(
            [
                {"params": groups["decay"], "weight_decay": decay, "lr": lr},
                {"params": groups["no_decay"], "weight_decay": 0.0, "lr": lr},
                {
                    "params": groups["selector"],
                    "weight_decay": 0.0,
                    "lr": lr * self.hparams["selector_lr_multiplier"],
                },
            ],
            betas=tuple(self.hparams["betas"]),
        )
        total = self._total_steps()
        warmup = int(self.hparams["warmup_fraction"] * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine_factor(step, total, warmup, self.hparams["final_lr_factor"])
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
