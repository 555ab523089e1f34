"""The pre-training data module: ``dataset.zarr`` shards → batches of NRCL, MoCo and SE(3) views.

Reads only through :mod:`cryoengine.store`. Opening the datasets, the class filter, the split by tomogram
and every check against the data happen in :meth:`SubtomogramDataModule.setup`, never in ``__init__``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from aptvit.data.splits import TomogramKey, split_tomograms
from aptvit.data.stream import ShardPiece, ShardPlan, SubtomogramStream, distributed_rank_and_world
from aptvit.data.views import TRAIN_STREAM, VAL_STREAM, ViewSampler, apply_pose_views
from cryoengine.store import Dataset, open_dataset

__all__ = ["SubtomogramDataModule"]

log = logging.getLogger(__name__)

# Lightning warns about every IterableDataset with a __len__; the streams' length is exact on every rank
# (each worker reads its own planned run, aptvit.data.stream), and the length drives the progress bar and
# the learning-rate schedule.
warnings.filterwarnings(
    "ignore", message="Your `IterableDataset` has `__len__` defined", category=UserWarning
)

KEY_VIEWS = ("clean", "noisy")
POSE_PAIRINGS = ("transform", "particle")


class SubtomogramDataModule(LightningDataModule):
    """Shard-streaming training and validation batches over one or more ``dataset.zarr``.

    Each batch (a dict of tensors, after :meth:`on_after_batch_transfer`, on the training device) holds
    ``query`` `(B, 1, D, D, D)`, a noisy view at ``query_snr`` `(B,)`; ``key`` `(B, 1, D, D, D)`, the
    clean view (``key_snr`` ∞) or a second noisy view with independent noise; ``pose_source``,
    ``pose_target`` `(B, 1, D, D, D)` related by ``T`` = (``pose_rotation`` `(B, 3, 3)`, ``pose_shift``
    `(B, 3)` voxels): ``pose_target = T · pose_source`` exactly for the transform pairing, the relative
    pose of two particles for the particle pairing; ``label`` `(B,)`, the stable class label; and for
    monitoring only the ground truth ``rotation`` `(B, 3, 3)`, ``shift`` `(B, 3)`, ``tomogram`` `(B,)`,
    ``index`` `(B,)`. Every view is standardised per subtomogram. The order of batches follows the rule
    of :mod:`aptvit.data.stream` (same seed and epoch, same batches).

    ``label`` is the position in :attr:`classes`, the datasets' ``class_labels`` in order of first
    appearance: for one dataset (or datasets sharing a label table) the store's ``class_index``,
    whichever classes are filtered out.

    Parameters
    ----------
    datasets
        Paths of the ``dataset.zarr`` to read (same box and voxel size); items are numbered across them
        in this order.
    batch_size
        Items per batch on each DDP rank.
    num_workers
        Loader worker processes per rank (0: read in the training process).
    val_fraction
        Fraction of each class's tomograms held out for validation, in ``[0, 1)``; split by tomogram,
        at least one tomogram per side for a class with two or more.
    include_classes
        Class ids to read (all when None), e.g. to hold classes out of pre-training.
    exclude_classes
        Class ids never read (applied after ``include_classes``).
    snr_range
        ``[low, high]``: the query SNR is drawn log-uniformly per item (format 2 only, any ``0 < low ≤
        high``). None: format 2 draws over the range of the stored levels, format 1 from ``snr_levels``.
    snr_levels
        Query SNRs drawn uniformly per item instead of a range; in format 1 they must be stored levels
        (all stored levels when None).
    key_view
        ``"clean"``: the key is the clean view (NRCL). ``"noisy"``: a second noisy view with independent
        noise and its own SNR (the plain MoCo-v3 ablation; needs format 2).
    pose_pairing
        ``"transform"``: the pose target is the query under a random uniform rotation and a shift of at
        most ``max_shift_vox``, applied on the batch's device. ``"particle"``: the target is a noisy view
        of another particle of the same class (its own lab-frame missing wedge), ``T`` its relative pose
        ``R_j R_iᵀ``, ``s_j − R_ij s_i`` from the ground truth.
    max_shift_vox
        Largest shift of the ``"transform"`` pairing (voxels), uniform in the ball.
    rotate_key
        Show the key in an independent uniform random orientation (on the batch's device), so that the
        contrastive task asks for an embedding invariant to the particle's orientation, not only to noise:
        with same-pose keys the embedding separates orientations of one class as readily as classes.
    shuffle_buffer
        Items each worker shuffles over (spanning several shards); 0 or 1 keeps the read order. The buffer
        holds finished views, 2 volumes per item (3 with the particle pairing): 256 MiB per worker for
        1,024 items of 32³.
    val_snr
        Query SNR of validation (a stored level in format 1); None: the middle stored level.
    knn_bank_items
        Training-split items (spread evenly over its shards) that the validation kNN monitor uses as its
        labelled bank; 0: no bank, ``val_dataloader`` gives the validation split alone.
    seed
        Seed of the split, the shard order (with the epoch) and every per-item draw.
    """

    def __init__(
        self,
        datasets: list[str],
        batch_size: int = 64,
        num_workers: int = 4,
        val_fraction: float = 0.2,
        include_classes: list[str] | None = None,
        exclude_classes: list[str] | None = None,
        snr_range: tuple[float, float] | None = None,
        snr_levels: list[float] | None = None,
        key_view: Literal["clean", "noisy"] = "clean",
        pose_pairing: Literal["transform", "particle"] = "transform",
        max_shift_vox: float = 3.0,
        rotate_key: bool = True,
        shuffle_buffer: int = 1024,
        val_snr: float | None = None,
        knn_bank_items: int = 2048,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(datasets, str) or not datasets or not all(isinstance(p, str) for p in datasets):
            raise ValueError(f"datasets must be a non-empty list of paths, got {datasets!r}")
        for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, int) or shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be a non-negative integer, got {shuffle_buffer!r}")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        if key_view not in KEY_VIEWS:
            raise ValueError(f"key_view must be one of {KEY_VIEWS}, got {key_view!r}")
        if pose_pairing not in POSE_PAIRINGS:
            raise ValueError(f"pose_pairing must be one of {POSE_PAIRINGS}, got {pose_pairing!r}")
        if not 0 <= max_shift_vox < math.inf:
            raise ValueError(f"max_shift_vox must be a non-negative number, got {max_shift_vox!r}")
        if snr_range is not None and snr_levels is not None:
            raise ValueError("give snr_range or snr_levels, not both")
        if snr_range is not None:
            if len(snr_range) != 2 or not 0 < snr_range[0] <= snr_range[1] < math.inf:
                raise ValueError(f"snr_range must be [low, high] with 0 < low ≤ high < ∞, got {snr_range!r}")
            snr_range = (float(snr_range[0]), float(snr_range[1]))
        if snr_levels is not None:
            if not snr_levels or not all(0 < level < math.inf for level in snr_levels):
                raise ValueError(
                    f"snr_levels must be a non-empty list of positive finite SNRs, got {snr_levels!r}"
                )
            snr_levels = [float(level) for level in snr_levels]
        if val_snr is not None and not 0 < val_snr < math.inf:
            raise ValueError(f"val_snr must be a positive finite SNR, got {val_snr!r}")
        self.save_hyperparameters()
        self.paths = list(datasets)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = float(val_fraction)
        self.include_classes = None if include_classes is None else list(include_classes)
        self.exclude_classes = list(exclude_classes or [])
        self.snr_range = snr_range
        self.snr_levels = snr_levels
        self.key_view = key_view
        self.pose_pairing = pose_pairing
        self.max_shift_vox = float(max_shift_vox)
        self.rotate_key = bool(rotate_key)
        self.shuffle_buffer = shuffle_buffer
        self.val_snr = val_snr
        if isinstance(knn_bank_items, bool) or not isinstance(knn_bank_items, int) or knn_bank_items < 0:
            raise ValueError(f"knn_bank_items must be a non-negative integer, got {knn_bank_items!r}")
        self.knn_bank_items = knn_bank_items
        self.seed = int(seed)
        self.box: int | None = None
        self.voxel_size_A: float | None = None
        self.classes: tuple[str, ...] = ()
        self.split: dict[TomogramKey, str] = {}
        self.train_stream: SubtomogramStream | None = None
        self.val_stream: SubtomogramStream | None = None
        self.bank_stream: SubtomogramStream | None = None
        self._epoch = 0

    def setup(self, stage: str | None = None) -> None:
        """Open the datasets, check the configuration against them, split by tomogram, plan the streams.

        Raises
        ------
        ValueError
            One line naming the dataset or argument: a class filter naming a class no dataset holds, an
            SNR the stored noise cannot give, ``key_view="noisy"`` on format 1, datasets of different box
            or voxel size, a batch larger than the training split. A missing path or a directory that is
            not a dataset raises the store's :class:`~cryoengine.store.DatasetNotFoundError` /
            :class:`~cryoengine.store.DatasetFormatError`, naming the path.
        """
        if self.train_stream is not None:
            return
        datasets = [open_dataset(path) for path in self.paths]
        for path, dataset in zip(self.paths[1:], datasets[1:], strict=True):
            if (dataset.box, dataset.voxel_size_A) != (datasets[0].box, datasets[0].voxel_size_A):
                raise ValueError(
                    f"dataset {path} has box {dataset.box} at {dataset.voxel_size_A} Å, {self.paths[0]} has "
                    f"{datasets[0].box} at {datasets[0].voxel_size_A} Å"
                )
        self.classes = tuple(dict.fromkeys(c for dataset in datasets for c in _class_labels(dataset)))
        present = tuple(dict.fromkeys(c for dataset in datasets for c in dataset.classes))
        kept = self._filtered_classes(present)
        labels = {
            (d, c): self.classes.index(c) for d, dataset in enumerate(datasets) for c in dataset.classes
        }
        train_samplers, val_samplers = zip(
            *(self._samplers(path, ds) for path, ds in zip(self.paths, datasets, strict=True)), strict=True
        )
        tomograms = {
            (d, c): _tomograms(dataset, c)
            for d, dataset in enumerate(datasets)
            for c in dataset.classes
            if c in kept
        }
        self.split = split_tomograms(tomograms, self.val_fraction, self.seed)
        pieces: dict[str, list[ShardPiece]] = {"train": [], "val": []}
        class_rows: dict[str, dict[tuple[int, str], np.ndarray]] = {"train": {}, "val": {}}
        for (d, class_id), per_particle in tomograms.items():
            side = np.array([self.split[(d, class_id, int(t))] for t in per_particle])
            for name in pieces:
                class_rows[name][(d, class_id)] = np.flatnonzero(side == name)
            for _, start, stop in datasets[d].shard_ranges(class_id):
                for name in pieces:
                    rows = start + np.flatnonzero(side[start:stop] == name)
                    if len(rows):
                        pieces[name].append(ShardPiece(d, class_id, rows))
        offsets = np.concatenate([[0], np.cumsum([len(dataset) for dataset in datasets])[:-1]]).tolist()
        _, world_size = distributed_rank_and_world()
        train_plan = ShardPlan(pieces["train"], self.batch_size, self.seed, shuffle=True, drop_last=True)
        if train_plan.num_items < self.batch_size * world_size:
            raise ValueError(
                f"batch_size {self.batch_size} × {world_size} rank(s) is larger than the training split of "
                f"{', '.join(self.paths)}: {train_plan.num_items} items after the class filter and "
                "val_fraction"
            )
        val_plan = ShardPlan(pieces["val"], self.batch_size, self.seed, shuffle=False, drop_last=False)
        if self.val_fraction > 0 and val_plan.num_items == 0:
            log.warning("no class of %s has two tomograms: the validation split is empty", self.paths)
        common = {"datasets": datasets, "labels": labels, "index_offsets": offsets}
        self.train_stream = SubtomogramStream(
            plan=train_plan,
            samplers=train_samplers,
            class_rows=class_rows["train"],
            shuffle_buffer=self.shuffle_buffer,
            **common,
        )
        self.val_stream = SubtomogramStream(
            plan=val_plan, samplers=val_samplers, class_rows=class_rows["val"], shuffle_buffer=0, **common
        )
        if self.knn_bank_items and val_plan.num_items:
            stride = max(1, math.ceil(train_plan.num_items / self.knn_bank_items))
            bank = [ShardPiece(p.dataset, p.class_id, p.rows[::stride]) for p in pieces["train"]]
            self.bank_stream = SubtomogramStream(
                plan=ShardPlan(bank, self.batch_size, self.seed, shuffle=False, drop_last=False),
                samplers=val_samplers,
                class_rows=class_rows["train"],
                shuffle_buffer=0,
                **common,
            )
        self.box, self.voxel_size_A = datasets[0].box, datasets[0].voxel_size_A
        log.info(
            "pre-training data: %d training and %d validation items of %d classes from %s",
            train_plan.num_items,
            val_plan.num_items,
            len(kept),
            ", ".join(self.paths),
        )

    def set_epoch(self, epoch: int) -> None:
        """Epoch of the next training iteration when no trainer is attached (else the trainer's epoch)."""
        self._epoch = int(epoch)

    def train_dataloader(self) -> DataLoader:
        """Loader of the training stream (batches already formed; workers restart every epoch)."""
        return self._loader(self._require(self.train_stream))

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Loaders of validation: the kNN bank (training split) then the validation split.

        Both in stored order at ``val_snr`` with draws fixed across epochs; the validation split alone when
        there is no bank (``knn_bank_items: 0`` or an empty validation split).
        """
        val = self._loader(self._require(self.val_stream))
        return val if self.bank_stream is None else [self._loader(self.bank_stream), val]

    def dataset_record(self) -> dict[str, Any]:
        """Return what a checkpoint records of the data (DESIGN §8): box, voxel size, labels, sources."""
        if self.box is None:
            raise RuntimeError("call setup() before asking for the dataset record")
        return {
            "box": self.box,
            "voxel_size_A": self.voxel_size_A,
            "class_ids": list(self.classes),
            "datasets": list(self.paths),
            "include_classes": self.include_classes,
            "exclude_classes": list(self.exclude_classes),
        }

    def on_after_batch_transfer(
        self, batch: dict[str, torch.Tensor], dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        """Apply the SE(3) pose pairing and standardise every view, on the batch's device."""
        return apply_pose_views(batch)

    def _current_epoch(self) -> int:
        trainer = self.trainer
        return int(trainer.current_epoch) if trainer is not None else self._epoch

    def _loader(self, stream: SubtomogramStream) -> DataLoader:
        return _EpochLoader(
            stream,
            self._current_epoch,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
        )

    @staticmethod
    def _require(stream: SubtomogramStream | None) -> SubtomogramStream:
        if stream is None:
            raise RuntimeError("call setup() before asking for a loader")
        return stream

    def _filtered_classes(self, present: Sequence[str]) -> list[str]:
        """Apply the class filters (which must name classes with data) to ``present``; return the kept."""
        for name, requested in (
            ("include_classes", self.include_classes or []),
            ("exclude_classes", self.exclude_classes),
        ):
            missing = [c for c in requested if c not in present]
            if missing:
                raise ValueError(
                    f"{name} names {', '.join(missing)}, which {', '.join(self.paths)} do not hold "
                    f"(available: {', '.join(present)})"
                )
        kept = [c for c in present if self.include_classes is None or c in self.include_classes]
        return [c for c in kept if c not in self.exclude_classes]

    def _samplers(self, path: str, dataset: Dataset) -> tuple[ViewSampler, ViewSampler]:
        """Check the SNR settings against one dataset; return its training and validation samplers."""
        if getattr(dataset, "observed", False):
            raise ValueError(
                f"{path} holds observed particles (an import: no clean volumes or unit noise); pre-training "
                "needs a simulated dataset, and python -m aptvit.predict runs on imported ones"
            )
        stored = dataset.snr_levels
        version = int(getattr(dataset, "format_version", 1))
        middle = sorted(stored)[len(stored) // 2]
        val_snr = middle if self.val_snr is None else self.val_snr
        if version == 1:
            if self.snr_range is not None:
                raise ValueError(
                    f"snr_range {list(self.snr_range)} needs stored unit noise (format 2); {path} is "
                    f"format 1 and holds only the levels {list(stored)}: set snr_levels to some of them"
                )
            if self.key_view == "noisy":
                raise ValueError(
                    f"key_view 'noisy' needs independent noise realisations (format 2); the levels of {path} "
                    "(format 1) share one noise draw, so the key must be the clean view: key_view 'clean'"
                )
            wanted = list(stored) if self.snr_levels is None else self.snr_levels
            train_levels: tuple[int, ...] = tuple(
                _stored_level(path, stored, s, "snr_levels") for s in wanted
            )
            val_levels: tuple[int, ...] = (_stored_level(path, stored, val_snr, "val_snr"),)
            snr_range = None
            levels = stored
        else:
            if self.key_view == "noisy" and dataset.noise_realisations < 2:
                raise ValueError(
                    f"key_view 'noisy' needs two independent noise realisations per particle; {path} stores "
                    f"noise_realisations {dataset.noise_realisations}: key_view 'clean'"
                )
            train_levels = val_levels = ()
            levels = tuple(stored if self.snr_levels is None else self.snr_levels)
            snr_range = self.snr_range
            if snr_range is None and self.snr_levels is None:
                snr_range = (min(stored), max(stored))
        train = ViewSampler(
            format_version=version,
            snr_levels=levels,
            level_indices=train_levels,
            snr_range=snr_range,
            key_view=self.key_view,
            pose_pairing=self.pose_pairing,
            max_shift_vox=self.max_shift_vox,
            seed=self.seed,
            stream=TRAIN_STREAM,
            rotate_key=self.rotate_key,
        )
        val = dataclasses.replace(
            train,
            snr_levels=levels if version == 1 else (val_snr,),
            level_indices=val_levels,
            snr_range=None,
            stream=VAL_STREAM,
        )
        return train, val


class _EpochLoader(DataLoader):
    """A loader that tells its stream the epoch before it starts the workers of an iteration."""

    def __init__(self, stream: SubtomogramStream, epoch: Any, **kwargs: Any) -> None:
        super().__init__(stream, batch_size=None, **kwargs)
        self._stream = stream
        self._epoch_of = epoch

    def __iter__(self) -> Any:
        self._stream.set_epoch(self._epoch_of())
        return super().__iter__()


def _stored_level(path: str, stored: Sequence[float], snr: float, name: str) -> int:
    """Position of ``snr`` among the stored levels of a format-1 dataset; ValueError naming both."""
    matches = [k for k, level in enumerate(stored) if math.isclose(level, snr, rel_tol=1e-6)]
    if not matches:
        raise ValueError(
            f"{name} {snr:g} is not a stored level of {path} (format 1 holds only {list(stored)}; any SNR "
            "needs format 2)"
        )
    return matches[0]


def _class_labels(dataset: Dataset) -> tuple[str, ...]:
    """Every labelled class id of a dataset in label order (format 1 kept no table: the groups present)."""
    return tuple(getattr(dataset, "class_labels", dataset.classes))


def _tomograms(dataset: Dataset, class_id: str) -> np.ndarray:
    """`(N,)` tomogram of every particle of a class, without reading its volumes."""
    return np.asarray(dataset.per_particle_arrays(class_id)["tomogram"])
