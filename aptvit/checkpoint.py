"""Pre-trained checkpoints → frozen modules for the downstream tasks, with the checks DESIGN §8 asks for.

A checkpoint written by ``python -m aptvit.fit`` carries, beside the Lightning state, a record (key
``"aptvit"``) of the encoder variant (registry name and overrides) and of the data it was trained on
(box, voxel size, class ids). :func:`load_encoder` rebuilds the encoder from that record, loads the base
(not the momentum) encoder's weights, freezes it and puts it in eval mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aptvit.models.heads import PoseHead
from aptvit.models.registry import create_encoder
from aptvit.models.vit import APTViT

__all__ = [
    "CheckpointError",
    "checkpoint_record",
    "datamodule_settings",
    "load_encoder",
    "has_pose_head",
    "load_pose_head",
    "require_compatible",
    "untrained_encoder",
]

_RECORD_KEY = "aptvit"
_ENCODER_PREFIX = "moco.encoder."
_POSE_PREFIX = "pose_head."


class CheckpointError(ValueError):
    """A checkpoint that is missing, not from ``aptvit.fit``, or does not fit the data it is applied to."""


def checkpoint_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the record of a pre-training checkpoint: encoder variant, box, voxel size, class ids.

    Returns
    -------
    dict
        ``{"encoder": {"name", "overrides"}, "box", "voxel_size_A", "class_ids", ...}``.
    """
    return dict(_read(Path(path))[_RECORD_KEY])


def datamodule_settings(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the ``SubtomogramDataModule`` arguments of the run that wrote a checkpoint.

    Lightning stores them as ``datamodule_hyper_parameters``; its own bookkeeping keys (``_...``) are
    dropped, so ``SubtomogramDataModule(**settings)`` rebuilds the run's splits and views.
    """
    path = Path(path)
    stored = _read(path).get("datamodule_hyper_parameters")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: the checkpoint stores no data-module settings")
    return {key: value for key, value in stored.items() if not key.startswith("_")}


def load_encoder(
    path: str | os.PathLike[str],
    *,
    variant: str | None = None,
    box: int | None = None,
    voxel_size_A: float | None = None,
    device: torch.device | str = "cpu",
) -> APTViT:
    """Rebuild the pre-trained encoder of a checkpoint, frozen and in eval mode.

    Parameters
    ----------
    path
        A ``.ckpt`` written by ``python -m aptvit.fit``.
    variant
        Expected registry name; an error if the checkpoint holds another.
    box, voxel_size_A
        Box (voxels) and voxel size (Å) of the data it will be applied to; an error if they differ from the
        training data's.
    device
        Where to put the encoder.

    Returns
    -------
    APTViT
        The encoder, ``requires_grad=False`` everywhere, ``eval()``, its ``variant`` set.
    """
    path = Path(path)
    checkpoint = _read(path)
    record = checkpoint[_RECORD_KEY]
    spec = record.get("encoder") or {}
    if "name" not in spec:
        raise CheckpointError(
            f"{path}: the checkpoint does not record its encoder variant (key aptvit.encoder)"
        )
    if variant is not None and spec["name"] != variant:
        raise CheckpointError(f"{path}: the checkpoint holds encoder {spec['name']!r}, not {variant!r}")
    _check_data(path, record, box, voxel_size_A)
    encoder = create_encoder(spec["name"], **spec.get("overrides", {}))
    encoder.load_state_dict(_sub_state(checkpoint, _ENCODER_PREFIX, path))
    encoder.variant = dict(spec)
    return _frozen(encoder, device)


def require_compatible(
    path: str | os.PathLike[str],
    box: int,
    voxel_size_A: float,
    source: str = "the data",
    *,
    rel_tolerance: float = 1e-3,
) -> None:
    """Raise :class:`CheckpointError`, naming the checkpoint and ``source``, if box or voxel size differ.

    The voxel sizes may differ by ``rel_tolerance`` (relative to the checkpoint's); the box must be equal.
    """
    path = Path(path)
    _check_data(path, checkpoint_record(path), box, voxel_size_A, source, rel_tolerance)


def untrained_encoder(
    path: str | os.PathLike[str], *, seed: int = 0, device: torch.device | str = "cpu"
) -> APTViT:
    """Build the checkpoint's encoder variant freshly initialised (seeded), frozen: the untrained baseline."""
    spec = checkpoint_record(path).get("encoder") or {}
    if "name" not in spec:
        raise CheckpointError(
            f"{path}: the checkpoint does not record its encoder variant (key aptvit.encoder)"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = create_encoder(spec["name"], **spec.get("overrides", {}))
    encoder.variant = dict(spec)
    return _frozen(encoder, device)


def has_pose_head(path: str | os.PathLike[str]) -> bool:
    """Whether the run of the checkpoint trained an SE(3) head (``pose_weight > 0``)."""
    return any(key.startswith(_POSE_PREFIX) for key in _read(Path(path))["state_dict"])


def load_pose_head(path: str | os.PathLike[str], *, device: torch.device | str = "cpu") -> PoseHead:
    """Rebuild the SE(3) pose head of a checkpoint, frozen and in eval mode.

    Raises
    ------
    CheckpointError
        The run had no SE(3) branch (``pose_weight: 0``).
    """
    path = Path(path)
    checkpoint = _read(path)
    state = _sub_state(checkpoint, _POSE_PREFIX, path)
    hparams = checkpoint.get("hyper_parameters", {})
    encoder_state = _sub_state(checkpoint, _ENCODER_PREFIX, path)
    width = int(encoder_state["norm.weight"].shape[0])
    head = PoseHead(width, int(hparams.get("pose_hidden_dim", 128)))
    head.load_state_dict(state)
    return _frozen(head, device)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises pickle, zip and runtime errors alike
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({error})") from error
    if not isinstance(checkpoint, dict) or _RECORD_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a checkpoint of aptvit.fit (no {_RECORD_KEY!r} record)")
    return checkpoint


def _check_data(
    path: Path,
    record: dict[str, Any],
    box: int | None,
    voxel_size_A: float | None,
    source: str = "the data",
    rel_tolerance: float = 1e-3,
) -> None:
    trained_box, trained_voxel = record.get("box"), record.get("voxel_size_A")
    if box is not None and trained_box is not None and int(box) != int(trained_box):
        raise CheckpointError(f"{path} was trained on box {trained_box}, {source} has box {box}")
    if (
        voxel_size_A is not None
        and trained_voxel is not None
        and abs(voxel_size_A - trained_voxel) > rel_tolerance * trained_voxel
    ):
        raise CheckpointError(
            f"{path} was trained at {trained_voxel} Å/voxel, {source} has {voxel_size_A} Å/voxel "
            f"(more than {rel_tolerance:.1%} apart)"
        )


def _sub_state(checkpoint: dict[str, Any], prefix: str, path: Path) -> dict[str, torch.Tensor]:
    state = {
        key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)
    }
    if not state:
        raise CheckpointError(f"{path}: the checkpoint has no weights under {prefix.rstrip('.')!r}")
    return state


def _frozen(module: nn.Module, device: torch.device | str) -> Any:
    module.requires_grad_(False)
    return module.to(device).eval()
