"""Frozen embeddings of subtomograms: batched, without gradients, on the encoder's device, cached on disk.

The encoder is any module mapping `(B, 1, D, D, D)` to `(B, C)` (e.g. ``aptvit.create_encoder(...)``);
each subtomogram is standardised (zero mean, unit variance over its box) before it is encoded.
The cache is an ``.npz`` per (checkpoint path and modification time, dataset path, SNR level), written
under a temporary name and renamed, so a killed run never leaves a partial cache.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from aptvit.data.views import standardise_volumes
from cryoengine.formats.atomic_write import atomic_path
from cryoengine.store import Dataset

__all__ = [
    "Embeddings",
    "cached_embed_dataset",
    "embed_dataset",
    "embed_volumes",
    "embedding_cache_path",
]


@dataclass(frozen=True)
class Embeddings:
    """Features of a dataset's subtomograms with the labels the tasks need.

    Attributes
    ----------
    features
        `(N, C)` float32 embeddings.
    labels
        `(N,)` class index of each particle (:attr:`cryoengine.store.Item.class_index`).
    tomograms
        `(N,)` source tomogram of each particle (numbered within its class).
    indices
        `(N,)` global dataset index of each particle.
    snr_level
        The SNR level embedded; ``math.inf`` for the clean volumes.
    """

    features: np.ndarray
    labels: np.ndarray
    tomograms: np.ndarray
    indices: np.ndarray
    snr_level: float


def embed_volumes(
    encoder: nn.Module, volumes: np.ndarray | Tensor, *, batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """Embed an array of subtomograms with a frozen encoder.

    Parameters
    ----------
    encoder
        Module mapping `(B, 1, D, D, D)` to `(B, C)`; run in eval mode (its mode is restored afterwards)
        on the device of its parameters.
    volumes
        `(N, D, D, D)` subtomograms.
    batch_size
        Subtomograms per forward pass, ≥ 1.
    progress
        Show a tqdm progress bar on stderr.

    Returns
    -------
    np.ndarray
        `(N, C)` float32 embeddings.
    """
    volumes = torch.as_tensor(volumes)
    if volumes.ndim != 4:
        raise ValueError(f"volumes must be (N, D, D, D), got {tuple(volumes.shape)}")
    batches = (volumes[i : i + batch_size] for i in range(0, len(volumes), batch_size))
    return _embed_batches(encoder, batches, len(volumes), batch_size, progress)


def embed_dataset(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    snr_level: float = math.inf,
    batch_size: int = 64,
    progress: bool = True,
) -> Embeddings:
    """Embed every subtomogram of a dataset at one SNR level, reading it shard by shard.

    Parameters
    ----------
    encoder, batch_size, progress
        As in :func:`embed_volumes`.
    dataset
        An open ``dataset.zarr`` (:func:`cryoengine.store.open_dataset`).
    snr_level
        One of ``dataset.snr_levels``, or ``math.inf`` for the clean volumes.

    Returns
    -------
    Embeddings
        In dataset index order.
    """
    level = _level_index(dataset, snr_level)
    labels, tomograms, indices = [], [], []

    def batches() -> Iterator[Tensor]:
        for block in dataset.iter_shards():
            labels.append(np.full(len(block), block.class_index))
            tomograms.append(np.asarray(block.tomogram))
            indices.append(np.asarray(block.indices))
            volumes = block.volumes_at(level)
            for first in range(0, len(block), batch_size):
                yield torch.as_tensor(volumes[first : first + batch_size])

    features = _embed_batches(encoder, batches(), len(dataset), batch_size, progress)
    return Embeddings(
        features=features,
        labels=np.concatenate(labels).astype(np.int64),
        tomograms=np.concatenate(tomograms).astype(np.int64),
        indices=np.concatenate(indices).astype(np.int64),
        snr_level=float(snr_level),
    )


def embedding_cache_path(
    cache_dir: str | os.PathLike[str],
    checkpoint_path: str | os.PathLike[str],
    dataset_path: str | os.PathLike[str],
    snr_level: float,
) -> Path:
    """Cache file of one (checkpoint + its mtime, dataset, SNR level): a new checkpoint gets a new file."""
    checkpoint = Path(checkpoint_path).resolve()
    key = (
        f"{checkpoint}\0{checkpoint.stat().st_mtime_ns}\0{Path(dataset_path).resolve()}\0{float(snr_level)!r}"
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"embeddings-{checkpoint.stem}-{digest}.npz"


def cached_embed_dataset(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    checkpoint_path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    snr_level: float = math.inf,
    batch_size: int = 64,
    progress: bool = True,
) -> Embeddings:
    """:func:`embed_dataset`, read from the cache when this checkpoint already embedded this dataset level.

    Parameters
    ----------
    encoder, dataset, snr_level, batch_size, progress
        As in :func:`embed_dataset`; ``encoder`` must hold the weights of ``checkpoint_path``.
    checkpoint_path
        The checkpoint file the encoder was loaded from (its path and mtime key the cache).
    cache_dir
        Directory of the cache files; None: beside the checkpoint.

    Returns
    -------
    Embeddings
    """
    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.is_file():
        raise ValueError(f"checkpoint_path {str(checkpoint_path)!r} is not a file")
    cache_dir = checkpoint_path.parent if cache_dir is None else Path(cache_dir)
    path = embedding_cache_path(cache_dir, checkpoint_path, dataset.path, snr_level)
    if path.is_file():
        with np.load(path) as cached:
            return Embeddings(
                features=cached["features"],
                labels=cached["labels"],
                tomograms=cached["tomograms"],
                indices=cached["indices"],
                snr_level=float(cached["snr_level"]),
            )
    embeddings = embed_dataset(
        encoder, dataset, snr_level=snr_level, batch_size=batch_size, progress=progress
    )
    with atomic_path(path) as temporary:
        np.savez(
            temporary,
            features=embeddings.features,
            labels=embeddings.labels,
            tomograms=embeddings.tomograms,
            indices=embeddings.indices,
            snr_level=np.float64(embeddings.snr_level),
        )
    return embeddings


def _embed_batches(
    encoder: nn.Module, batches: Iterator[Tensor], total: int, batch_size: int, progress: bool
) -> np.ndarray:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parameter = next(encoder.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    was_training = encoder.training
    encoder.eval()
    outputs = []
    try:
        with (
            torch.no_grad(),
            tqdm(
                total=total, desc="embedding", unit="subtomogram", disable=not progress, file=sys.stderr
            ) as bar,
        ):
            for batch in batches:
                volumes = standardise_volumes(batch.to(device=device, dtype=dtype))
                features = encoder(volumes[:, None])
                if features.ndim != 2 or features.shape[0] != batch.shape[0]:
                    raise ValueError(f"encoder must return (B, C), got {tuple(features.shape)}")
                outputs.append(features.float().cpu())
                bar.update(batch.shape[0])
    finally:
        encoder.train(was_training)
    if not outputs:
        raise ValueError("nothing to embed (N = 0)")
    return torch.cat(outputs).numpy()


def _level_index(dataset: Dataset, snr_level: float) -> int | None:
    if math.isinf(snr_level) and snr_level > 0:
        return None
    for index, level in enumerate(dataset.snr_levels):
        if math.isclose(level, snr_level, rel_tol=1e-6):
            return index
    raise ValueError(
        f"snr_level {snr_level} is not in the dataset's levels {dataset.snr_levels} (or inf = clean)"
    )
