"""Shard-streaming over ``dataset.zarr``: an epoch plan over shard pieces, and the iterable that reads it.

Rule of the plan (the same on every DDP rank, so that no rank waits for another):

1. The training split of every shard is a *piece* (the rows of one shard file whose tomogram is in the
   split). Each epoch the piece order is shuffled with a generator seeded by ``(seed, epoch)``; validation
   keeps the stored order.
2. The pieces, in that order, form one item stream of `N` items. Rank `r` of `W` takes the contiguous run
   ``[r·n, (r+1)·n)`` with ``n = ⌊N / (W·B)⌋·B`` for training (every rank yields ``⌊N / (W·B)⌋`` full
   batches; the `< W·B` items at the end of the shuffled stream wait for another epoch) and
   ``n = ⌊N / W⌋`` for validation (``⌈n / B⌉`` batches per rank, the last one partial; `< W` items left
   out). Ranks thus read disjoint runs of shards; at most one shard is split between two neighbours.
3. Within a rank, loader worker `w` of `K` takes the contiguous batches ``[w·b/K, (w+1)·b/K)`` of the
   rank's `b` batches, so workers read disjoint runs too.
4. A worker shuffles its items in a buffer of ``shuffle_buffer`` items (several shards), seeded by
   ``(seed, epoch, start of its run)``, and yields whole batches (the loader must not batch again).

Everything is a function of ``(seed, epoch, W, K, B)``: the same values give the same batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from aptvit.data.views import ViewSampler, collate_items
from cryoengine.store import Dataset

__all__ = ["ShardPiece", "ShardPlan", "SubtomogramStream", "distributed_rank_and_world"]

log = logging.getLogger(__name__)

# Rows per store read: a shard is read in contiguous runs of at most this many rows (same file, in order).
# 64 rows of 32³ read ~25 % faster per item than whole 256-row shards (smaller fresh allocations, fewer
# page faults; benchmarks/train.py), and bound a worker's transient memory to ~60 MiB.
READ_ROWS = 64


@dataclass(frozen=True, eq=False)
class ShardPiece:
    """The rows of one shard file that belong to one split.

    Attributes
    ----------
    dataset
        Position of the dataset among those read.
    class_id
        Class of the shard (shards are per class).
    rows
        `(n,)` sorted rows of the class group, all within one shard.
    """

    dataset: int
    class_id: str
    rows: np.ndarray


def distributed_rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` from ``torch.distributed`` when it is initialised, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardPlan:
    """Which rows each rank and worker reads in an epoch (the rule in the module docstring); no I/O.

    Parameters
    ----------
    pieces
        The split's shard pieces, in stored order.
    batch_size
        Items per batch `B` on each rank.
    seed
        Seed of the piece order.
    shuffle
        Shuffle the piece order per epoch (training) or keep it (validation).
    drop_last
        Only full batches (training), or a last partial batch per rank (validation).
    """

    def __init__(
        self, pieces: Sequence[ShardPiece], batch_size: int, seed: int, shuffle: bool, drop_last: bool
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.pieces = list(pieces)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_items = sum(len(piece.rows) for piece in self.pieces)

    def items_per_rank(self, world_size: int) -> int:
        """Items each rank reads per epoch."""
        if self.drop_last:
            return self.num_items // (world_size * self.batch_size) * self.batch_size
        return self.num_items // world_size

    def batches_per_rank(self, world_size: int) -> int:
        """Batches each rank yields per epoch (the same on every rank)."""
        return -(-self.items_per_rank(world_size) // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """Piece indices in the order of ``epoch``."""
        if not self.shuffle:
            return np.arange(len(self.pieces))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.pieces))

    def assignment(
        self, epoch: int, rank: int, world_size: int, worker: int = 0, num_workers: int = 1
    ) -> tuple[int, list[tuple[int, np.ndarray]]]:
        """Rows read by one worker of one rank.

        Returns
        -------
        start : int
            Position of the run in the epoch's item stream (seeds the worker's buffer).
        segments : list of (int, np.ndarray)
            ``(piece index, rows)`` in stream order; the rows of a piece are contiguous in its ``rows``.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if not 0 <= worker < num_workers:
            raise ValueError(f"worker must be in [0, {num_workers}), got {worker}")
        per_rank = self.items_per_rank(world_size)
        batches = self.batches_per_rank(world_size)
        first, last = worker * batches // num_workers, (worker + 1) * batches // num_workers
        start = rank * per_rank + first * self.batch_size
        stop = rank * per_rank + min(last * self.batch_size, per_rank)
        segments = []
        position = 0
        for piece_index in self.order(epoch):
            rows = self.pieces[piece_index].rows
            lo, hi = max(start - position, 0), min(stop - position, len(rows))
            if lo < hi:
                segments.append((int(piece_index), rows[lo:hi]))
            position += len(rows)
            if position >= stop:
                break
        return start, segments


class SubtomogramStream(IterableDataset):
    """Batches of raw views streamed shard by shard (use with ``DataLoader(batch_size=None)``).

    Parameters
    ----------
    datasets
        The open datasets (they pickle as their paths, so workers reopen them).
    plan
        The split's :class:`ShardPlan`.
    samplers
        One :class:`~aptvit.data.views.ViewSampler` per dataset.
    labels
        ``(dataset, class_id)`` → stable class label.
    index_offsets
        Per dataset, the offset added to its global indices (datasets are numbered one after another).
    class_rows
        ``(dataset, class_id)`` → all rows of the split (partners of the particle pairing).
    shuffle_buffer
        Items in the shuffle buffer of each worker (≤ 1: no shuffling within the run).
    rank, world_size
        This process's DDP rank and world size; from :func:`distributed_rank_and_world` when None.
    """

    def __init__(
        self,
        datasets: Sequence[Dataset],
        plan: ShardPlan,
        samplers: Sequence[ViewSampler],
        labels: dict[tuple[int, str], int],
        index_offsets: Sequence[int],
        class_rows: dict[tuple[int, str], np.ndarray],
        shuffle_buffer: int,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.datasets = list(datasets)
        self.plan = plan
        self.samplers = list(samplers)
        self.labels = labels
        self.index_offsets = list(index_offsets)
        self.class_rows = class_rows
        self.shuffle_buffer = shuffle_buffer
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next iteration (before the loader starts its workers)."""
        self.epoch = int(epoch)

    def _rank_and_world(self) -> tuple[int, int]:
        if self.rank is not None and self.world_size is not None:
            return self.rank, self.world_size
        return distributed_rank_and_world()

    def __len__(self) -> int:
        return self.plan.batches_per_rank(self._rank_and_world()[1])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.iter_worker(worker, num_workers)

    def iter_worker(self, worker: int, num_workers: int) -> Iterator[dict[str, torch.Tensor]]:
        """Yield the batches of one loader worker (``__iter__`` calls it with the worker's id)."""
        rank, world_size = self._rank_and_world()
        start, segments = self.plan.assignment(self.epoch, rank, world_size, worker, num_workers)
        batch: list[dict[str, Any]] = []
        for item in self._shuffled(self._items(segments), start):
            batch.append(item)
            if len(batch) == self.plan.batch_size:
                yield collate_items(batch)
                batch = []
        if batch:
            yield collate_items(batch)

    def _shuffled(self, items: Iterator[dict[str, Any]], start: int) -> Iterator[dict[str, Any]]:
        if not self.plan.shuffle or self.shuffle_buffer <= 1:
            yield from items
            return
        rng = np.random.default_rng([self.plan.seed, self.epoch, start])
        buffer: list[dict[str, Any]] = []
        for item in items:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(item)
                continue
            pick = int(rng.integers(len(buffer)))
            yield buffer[pick]
            buffer[pick] = item
        for pick in rng.permutation(len(buffer)):
            yield buffer[pick]

    def _items(self, segments: list[tuple[int, np.ndarray]]) -> Iterator[dict[str, Any]]:
        epoch = self.epoch if self.plan.shuffle else 0
        for piece_index, rows in segments:
            piece = self.plan.pieces[piece_index]
            dataset = self.datasets[piece.dataset]
            sampler = self.samplers[piece.dataset]
            offset = self.index_offsets[piece.dataset]
            label = self.labels[(piece.dataset, piece.class_id)]
            for part in np.array_split(rows, -(-len(rows) // READ_ROWS)):
                first = int(part[0])
                block = dataset.read_block(piece.class_id, first, int(part[-1]) + 1)
                for row in part:
                    local = int(row) - first
                    index = offset + int(block.indices[local])
                    partner = None
                    if sampler.pose_pairing == "particle":
                        partner = self._partner(piece, part, block, local, index, epoch)
                    yield sampler.item(block, local, index, label, epoch, partner)

    def _partner(
        self, piece: ShardPiece, rows: np.ndarray, block: Any, local: int, index: int, epoch: int
    ) -> tuple[Any, int]:
        """Another particle of the class: from the same run of the shard, else read from the split."""
        sampler = self.samplers[piece.dataset]
        rng = np.random.default_rng([sampler.seed, sampler.stream, epoch, index, 1])
        first = int(rows[0])
        if len(rows) > 1:
            other = int(
                rows[
                    (int(np.searchsorted(rows, first + local)) + 1 + rng.integers(len(rows) - 1)) % len(rows)
                ]
            )
            return block, other - first
        candidates = self.class_rows[(piece.dataset, piece.class_id)]
        candidates = candidates[candidates != first + local]
        if len(candidates) == 0:  # a class with one particle in the split pairs with itself
            return block, local
        other = int(candidates[rng.integers(len(candidates))])
        return self.datasets[piece.dataset].read_block(piece.class_id, other, other + 1), 0
