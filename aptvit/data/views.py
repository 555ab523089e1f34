"""Views of one particle for pre-training: noise mixed at a drawn SNR, SE(3) pose pairs, standardisation.

The worker side (:class:`ViewSampler`) turns rows of a :class:`cryoengine.store.Block` into raw views with
per-item randomness seeded from ``(seed, epoch, index)``; the device side (:func:`apply_pose_views`) finishes
a batch after transfer: rigid transforms and per-subtomogram standardisation, on the GPU when training there.

SNR convention (DESIGN §3): ``SNR = var(clean) / var(noise)`` over the box. Format 2 stores `K ≥ 2` unit-noise
volumes per particle and a scale, so that ``clean + noise_scale / √s · noise[k]`` is the particle at SNR `s`
for any `s > 0`, and two noisy views of one particle use two different `k` (independent noise). Format 1
stores only the levels ``noisy[:, l]``, which share one noise draw: there the key must be the clean view.
The SNR reported with a view is the nominal `s` in format 2 (the store's class-blind scale: a reference
particle would have SNR `s`; :mod:`cryoengine.physics.noise`) and the stored measured SNR of the level in
format 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from aptvit.rotation import relative_pose, rotate_volumes
from cryoengine.physics.rotation import random_rotations

__all__ = [
    "ViewSampler",
    "apply_pose_views",
    "collate_items",
    "mix_noise_at_snr",
    "standardise_volumes",
]

# Per-item random streams: training and validation draw from different streams of one seed.
TRAIN_STREAM, VAL_STREAM = 0, 1


def standardise_volumes(volumes: Tensor, eps: float = 1e-12) -> Tensor:
    """Standardise each subtomogram to zero mean and unit variance over its box.

    Parameters
    ----------
    volumes
        `(..., D, H, W)` real volumes; the statistics are over the last three axes.
    eps
        Floor on the variance, so that a flat box becomes zeros instead of NaN.

    Returns
    -------
    Tensor
        `(..., D, H, W)` standardised volumes, the dtype and device of ``volumes``.
    """
    if volumes.ndim < 3:
        raise ValueError(
            f"volumes must have at least 3 axes (..., D, H, W), got shape {tuple(volumes.shape)}"
        )
    variance, mean = torch.var_mean(volumes, dim=(-3, -2, -1), keepdim=True, correction=0)
    return (volumes - mean) * torch.rsqrt(variance.clamp_min(eps))


def mix_noise_at_snr(clean: np.ndarray, noise: np.ndarray, noise_scale: float, snr: float) -> np.ndarray:
    """Particle at nominal SNR ``snr`` from its clean volume and one stored unit-noise volume (format 2).

    Parameters
    ----------
    clean
        `(D, D, D)` noise-free volume.
    noise
        `(D, D, D)` unit-noise volume (one of the particle's `K` realisations).
    noise_scale
        The particle's stored scale: ``noise_scale / √snr · noise`` has variance ``var(clean) / snr``.
    snr
        Target SNR (> 0, finite).

    Returns
    -------
    np.ndarray
        `(D, D, D)` float32 ``clean + noise_scale / √snr · noise``.
    """
    if not 0 < snr < math.inf:
        raise ValueError(f"snr must be positive and finite, got {snr}")
    return (clean + np.float32(noise_scale / math.sqrt(snr)) * noise).astype(np.float32, copy=False)


@dataclass(frozen=True)
class ViewSampler:
    """Draws the raw views of items, reproducibly from ``(seed, stream, epoch, index)``.

    Parameters
    ----------
    format_version
        Store format of the dataset read: 1 (stored levels) or 2 (unit-noise volumes).
    snr_levels
        Format 1: indices of the stored levels to draw from are given by ``level_indices``; format 2:
        nominal levels drawn uniformly when ``snr_range`` is None.
    level_indices
        Format 1: the stored levels (positions on the ``noisy`` level axis) a query may use.
    snr_range
        Format 2: ``(low, high)``, SNR drawn log-uniformly; None draws from ``snr_levels``.
    key_view
        ``"clean"`` (NRCL) or ``"noisy"`` (a second noisy view with independent noise; format 2 only).
    pose_pairing
        ``"transform"`` (a random rigid transform of the query) or ``"particle"`` (another particle of the
        class, read by the caller and passed as the partner).
    max_shift_vox
        Largest shift of the ``"transform"`` pairing (voxels); drawn uniformly in the ball of that radius.
    seed, stream
        Base seed and stream (:data:`TRAIN_STREAM` or :data:`VAL_STREAM`).
    rotate_key
        Also draw a uniform random ``key_rotation``, applied to the key on the batch's device.
    """

    format_version: int
    snr_levels: tuple[float, ...]
    level_indices: tuple[int, ...]
    snr_range: tuple[float, float] | None
    key_view: str
    pose_pairing: str
    max_shift_vox: float
    seed: int
    stream: int
    rotate_key: bool = False

    def item_rng(self, epoch: int, index: int) -> np.random.Generator:
        """Return the generator of one item: the same ``(seed, stream, epoch, index)``, the same draws."""
        return np.random.default_rng([self.seed, self.stream, epoch, index])

    def draw_snr(self, rng: np.random.Generator) -> tuple[int, float]:
        """Draw a query level: ``(level position, nominal SNR)``; position is -1 for a continuous draw."""
        if self.format_version == 1:
            level = self.level_indices[int(rng.integers(len(self.level_indices)))]
            return level, self.snr_levels[level]
        if self.snr_range is not None:
            low, high = self.snr_range
            return -1, float(math.exp(rng.uniform(math.log(low), math.log(high))))
        return -1, self.snr_levels[int(rng.integers(len(self.snr_levels)))]

    def noisy_view(self, block: Any, row: int, rng: np.random.Generator, avoid: int = -1) -> tuple:
        """One noisy view of block row ``row``: ``(volume (D, D, D), SNR, noise realisation used)``.

        Format 1 reports the stored measured SNR of the level; format 2 the nominal SNR (exact by
        construction). ``avoid`` is a realisation the view must not use (for independent noise).
        """
        level, snr = self.draw_snr(rng)
        if self.format_version == 1:
            return block.noisy[row, level].copy(), float(block.snr[row, level]), 0
        realisations = block.noise.shape[1]
        if avoid < 0:
            k = int(rng.integers(realisations))
        else:
            k = (avoid + 1 + int(rng.integers(realisations - 1))) % realisations
        volume = mix_noise_at_snr(block.clean[row], block.noise[row, k], float(block.noise_scale[row]), snr)
        return volume, snr, k

    def item(
        self, block: Any, row: int, index: int, label: int, epoch: int, partner: tuple[Any, int] | None
    ) -> dict[str, Any]:
        """Raw views and ground truth of block row ``row`` (the batch before :func:`apply_pose_views`).

        Parameters
        ----------
        block
            A :class:`cryoengine.store.Block` holding the row.
        row
            Row within the block.
        index
            Global index of the item (seeds its draws; reported as ``index``).
        label
            Stable class label of the block's class.
        epoch
            Epoch of the draws (fixed for validation).
        partner
            ``(block, row)`` of the other particle for ``pose_pairing="particle"``; None otherwise.

        Every array is a copy, never a view of the block, so that items waiting in a shuffle buffer do not
        keep whole blocks alive.

        Returns
        -------
        dict
            ``query`` `(D, D, D)`, ``query_snr``, ``key`` `(D, D, D)`, ``key_snr`` (∞ for clean),
            ``pose_rotation`` `(3, 3)` and ``pose_shift`` `(3,)` ("transform"), or ``partner`` `(D, D, D)`,
            ``partner_rotation`` `(3, 3)`, ``partner_shift`` `(3,)` ("particle"), ``key_rotation``
            `(3, 3)` (``rotate_key``), and ``label``, ``rotation``, ``shift``, ``tomogram``, ``index`` of
            the particle.
        """
        rng = self.item_rng(epoch, index)
        query, query_snr, k = self.noisy_view(block, row, rng)
        if self.key_view == "clean":
            key, key_snr = block.clean[row].copy(), math.inf
        else:
            key, key_snr, _ = self.noisy_view(block, row, rng, avoid=k)
        out: dict[str, Any] = {
            "query": query,
            "query_snr": query_snr,
            "key": key,
            "key_snr": key_snr,
            "label": label,
            "rotation": block.rotation[row].copy(),
            "shift": block.shift[row].copy(),
            "tomogram": int(block.tomogram[row]),
            "index": index,
        }
        if partner is None:
            # cryoengine's NumPy sampler (the convention aptvit.rotation is tested against): drawing one
            # rotation from the item's own generator costs ~30 µs there, ~150 µs through a torch.Generator.
            out["pose_rotation"] = random_rotations(1, rng)[0]
            direction = rng.standard_normal(3)
            radius = self.max_shift_vox * rng.random() ** (1 / 3)
            out["pose_shift"] = direction / max(float(np.linalg.norm(direction)), 1e-12) * radius
        else:
            partner_block, partner_row = partner
            out["partner"], _, _ = self.noisy_view(partner_block, partner_row, rng)
            out["partner_rotation"] = partner_block.rotation[partner_row].copy()
            out["partner_shift"] = partner_block.shift[partner_row].copy()
        if self.rotate_key:
            out["key_rotation"] = random_rotations(1, rng)[0]
        return out


def collate_items(items: list[dict[str, Any]]) -> dict[str, Tensor]:
    """Stack raw items into the batch the loader yields (before :func:`apply_pose_views`).

    Parameters
    ----------
    items
        Outputs of :meth:`ViewSampler.item`, all of one pose pairing.

    Returns
    -------
    dict of Tensor
        ``query``, ``key`` `(B, 1, D, D, D)` float32 (raw, not yet standardised), ``query_snr``,
        ``key_snr`` `(B,)` float32, ``pose_rotation`` `(B, 3, 3)`, ``pose_shift`` `(B, 3)` float32,
        ``label``, ``tomogram``, ``index`` `(B,)` int64, ``rotation`` `(B, 3, 3)`, ``shift`` `(B, 3)`
        float32, with the particle pairing ``partner`` `(B, 1, D, D, D)`, and ``key_rotation``
        `(B, 3, 3)` when the items drew one.
    """

    def stack(name: str, dtype: torch.dtype) -> Tensor:
        return torch.from_numpy(np.stack([np.asarray(item[name]) for item in items])).to(dtype)

    batch = {
        "query": stack("query", torch.float32).unsqueeze(1),
        "key": stack("key", torch.float32).unsqueeze(1),
        "query_snr": torch.tensor([item["query_snr"] for item in items], dtype=torch.float32),
        "key_snr": torch.tensor([item["key_snr"] for item in items], dtype=torch.float32),
        "label": torch.tensor([item["label"] for item in items], dtype=torch.int64),
        "rotation": stack("rotation", torch.float32),
        "shift": stack("shift", torch.float32),
        "tomogram": torch.tensor([item["tomogram"] for item in items], dtype=torch.int64),
        "index": torch.tensor([item["index"] for item in items], dtype=torch.int64),
    }
    if "partner" in items[0]:
        batch["partner"] = stack("partner", torch.float32).unsqueeze(1)
        rotation, shift = relative_pose(
            stack("rotation", torch.float64),
            stack("shift", torch.float64),
            stack("partner_rotation", torch.float64),
            stack("partner_shift", torch.float64),
        )
    else:
        rotation, shift = stack("pose_rotation", torch.float64), stack("pose_shift", torch.float64)
    batch["pose_rotation"] = rotation.to(torch.float32)
    batch["pose_shift"] = shift.to(torch.float32)
    if "key_rotation" in items[0]:
        batch["key_rotation"] = stack("key_rotation", torch.float32)
    return batch


def apply_pose_views(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Finish a loader batch on its device: pose pair and per-subtomogram standardisation of every view.

    ``pose_source`` is the standardised query. With ``key_rotation`` the key is rotated by it (about the
    box centre) and ``key_unrotated`` keeps the standardised key as it was. With the particle pairing
    ``pose_target`` is the standardised partner; otherwise ``pose_target =
    standardise(rotate_volumes(pose_source, pose_rotation, pose_shift))``, the transform applied on the fly.

    Parameters
    ----------
    batch
        A batch of :func:`collate_items`, on any device.

    Returns
    -------
    dict of Tensor
        The batch contract: ``query``, ``key``, ``pose_source``, ``pose_target`` `(B, 1, D, D, D)`,
        ``query_snr``, ``key_snr`` `(B,)`, ``pose_rotation`` `(B, 3, 3)`, ``pose_shift`` `(B, 3)`, ``label``,
        ``rotation``, ``shift``, ``tomogram``, ``index``.
    """
    out = {name: value for name, value in batch.items() if name != "partner"}
    out["query"] = standardise_volumes(batch["query"])
    out["key"] = standardise_volumes(batch["key"])
    if "key_rotation" in batch:
        # The key seen in another orientation; the unrotated one stays the target of the phase pick.
        out["key_unrotated"] = out["key"]
        out["key"] = standardise_volumes(rotate_volumes(out["key"], batch["key_rotation"]))
    out["pose_source"] = out["query"]
    if "partner" in batch:
        out["pose_target"] = standardise_volumes(batch["partner"])
    else:
        moved = rotate_volumes(out["query"], batch["pose_rotation"], batch["pose_shift"])
        out["pose_target"] = standardise_volumes(moved)
    return out
