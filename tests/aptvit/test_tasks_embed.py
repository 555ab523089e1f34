import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from aptvit.data.views import standardise_volumes
from aptvit.models import create_encoder
from aptvit.tasks.embed import (
    cached_embed_dataset,
    embed_dataset,
    embed_volumes,
    embedding_cache_path,
)
from cryoengine.physics.rotation import random_rotations
from cryoengine.store import open_dataset, write_class_group
from cryoengine.store.particle_set import ParticleSet

BOX = 8
LEVELS = [0.1, 0.05]


class _RecordingEncoder(nn.Module):
    """Linear map of the flattened box; records what it was given."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(BOX**3, 5)
        self.inputs = []

    def forward(self, volume):
        self.inputs.append(volume.detach().clone())
        return self.linear(volume.flatten(1))


def _write_dataset(path, counts=(5, 7)):
    rng = np.random.default_rng(0)
    attrs = {
        "voxel_size_A": 10.0,
        "box": BOX,
        "snr_levels": LEVELS,
        "noise_realisations": 2,
        "class_labels": ["a", "b"],
    }
    for class_id, n in zip(["a", "b"], counts, strict=True):
        particles = ParticleSet(
            clean=rng.standard_normal((n, BOX, BOX, BOX)) * 3 + 2,
            noise=rng.standard_normal((n, 2, BOX, BOX, BOX)),
            noise_scale=np.ones(n),
            noisy=rng.standard_normal((n, len(LEVELS), BOX, BOX, BOX)),
            snr=np.full((n, len(LEVELS)), 0.1),
            rotation=random_rotations(n, rng),
            shift=np.zeros((n, 3)),
            position=np.zeros((n, 3)),
            tomogram=np.arange(n) % 2,
            defocus_um=np.full(n, 3.0),
            attrs={"class_id": class_id},
        )
        write_class_group(path, class_id, particles, {"name": class_id}, attrs, shard_size=4)
    return open_dataset(path)


def test_embedding_is_batched_frozen_standardised_and_restores_the_mode():
    encoder = _RecordingEncoder().train()
    volumes = np.random.default_rng(1).standard_normal((10, BOX, BOX, BOX)) * 4 + 3
    features = embed_volumes(encoder, volumes, batch_size=4, progress=False)
    assert features.shape == (10, 5) and features.dtype == np.float32
    assert [len(x) for x in encoder.inputs] == [4, 4, 2]
    seen = torch.cat(encoder.inputs)
    assert seen.shape == (10, 1, BOX, BOX, BOX)
    assert torch.allclose(seen.mean(dim=(1, 2, 3, 4)), torch.zeros(10), atol=1e-5)
    assert encoder.training  # restored
    with torch.no_grad():
        expected = encoder.linear(
            standardise_volumes(torch.as_tensor(volumes, dtype=torch.float32)).flatten(1)
        )
    np.testing.assert_allclose(features, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        embed_volumes(encoder, volumes, batch_size=10, progress=False), features, atol=1e-5
    )
    with pytest.raises(ValueError, match="volumes"):
        embed_volumes(encoder, volumes[0])


def test_dataset_embedding_carries_labels_tomograms_and_levels(tmp_path):
    dataset = _write_dataset(tmp_path / "dataset.zarr")
    encoder = _RecordingEncoder()
    clean = embed_dataset(encoder, dataset, batch_size=3, progress=False)
    assert clean.features.shape == (12, 5)
    np.testing.assert_array_equal(clean.labels, [0] * 5 + [1] * 7)
    np.testing.assert_array_equal(clean.indices, np.arange(12))
    np.testing.assert_array_equal(clean.tomograms, np.concatenate([np.arange(5) % 2, np.arange(7) % 2]))
    direct = embed_volumes(encoder, np.stack([dataset[i].noisy[1] for i in range(12)]), progress=False)
    noisy = embed_dataset(encoder, dataset, snr_level=0.05, progress=False)
    np.testing.assert_allclose(noisy.features, direct, atol=1e-5)
    assert noisy.snr_level == 0.05 and clean.snr_level == math.inf
    with pytest.raises(ValueError, match="snr_level"):
        embed_dataset(encoder, dataset, snr_level=0.2)


def test_cache_is_reused_per_checkpoint_mtime_and_level_and_written_atomically(tmp_path):
    dataset = _write_dataset(tmp_path / "dataset.zarr")
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"weights")
    encoder = _RecordingEncoder()
    first = cached_embed_dataset(encoder, dataset, checkpoint_path=checkpoint, snr_level=0.1, progress=False)
    calls = len(encoder.inputs)
    again = cached_embed_dataset(encoder, dataset, checkpoint_path=checkpoint, snr_level=0.1, progress=False)
    assert len(encoder.inputs) == calls  # read from the cache
    np.testing.assert_array_equal(again.features, first.features)
    np.testing.assert_array_equal(again.labels, first.labels)
    assert again.snr_level == 0.1
    files = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npz")
    assert files == [embedding_cache_path(tmp_path, checkpoint, dataset.path, 0.1).name]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    cached_embed_dataset(encoder, dataset, checkpoint_path=checkpoint, snr_level=0.05, progress=False)
    assert len(encoder.inputs) > calls  # another level: a new entry
    calls = len(encoder.inputs)
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a re-saved checkpoint
    cached_embed_dataset(encoder, dataset, checkpoint_path=checkpoint, snr_level=0.1, progress=False)
    assert len(encoder.inputs) > calls
    assert len([p for p in tmp_path.iterdir() if p.suffix == ".npz"]) == 3
    with pytest.raises(ValueError, match="checkpoint_path"):
        cached_embed_dataset(encoder, dataset, checkpoint_path=tmp_path / "missing.ckpt")


def test_an_aptvit_encoder_embeds_through_the_same_path():
    encoder = create_encoder("aptvit_tiny", phase_selector="norm", depth=1)
    volumes = np.random.default_rng(3).standard_normal((3, 16, 16, 16)).astype(np.float32)
    features = embed_volumes(encoder, volumes, batch_size=2, progress=False)
    assert features.shape == (3, encoder.embed_dim) and np.isfinite(features).all()
    # The norm selector's offset choice makes the embedding invariant to circular shifts of the box.
    shifted = np.roll(volumes, shift=(1, 2, 3), axis=(1, 2, 3))
    np.testing.assert_allclose(embed_volumes(encoder, shifted, progress=False), features, atol=1e-4)
