"""The particle record's field table is the one schema: ParticleSet, Item, Block and the store follow it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import zarr
from particle_factory import make_particles

from cryoengine.store import Block, Item, open_dataset, write_class_group
from cryoengine.store.fields import (
    ARRAYS,
    FIELDS,
    OBSERVED_FIELDS,
    PER_PARTICLE,
    VOLUMES,
    expected_shape,
    field,
    stored_arrays,
)
from cryoengine.store.particle_set import ParticleSet


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_particle_set_has_exactly_the_fields_of_the_table():
    assert _names(ParticleSet) - {"attrs"} == {f.name for f in FIELDS}


def test_item_and_block_carry_every_stored_field():
    stored = {f.name for f in (*FIELDS, *OBSERVED_FIELDS) if f.stored}
    assert stored <= _names(Item) and stored <= _names(Block)
    # Nothing else that looks like a record field: only the bookkeeping of where the particle comes from.
    assert _names(Item) - stored == {"index", "class_id", "class_index", "particle_index"}
    assert _names(Block) - stored == {"class_id", "class_index", "particle_indices", "indices"}


def test_table_partitions_and_versions():
    assert set(VOLUMES) | set(PER_PARTICLE) == set(ARRAYS) and not set(VOLUMES) & set(PER_PARTICLE)
    assert stored_arrays(1) == tuple(n for n in ARRAYS if n not in ("noise", "noise_scale"))
    assert stored_arrays(2) == ARRAYS
    assert expected_shape("noisy", {"particle": 5, "box": 8, "level": 3}) == (5, 3, 8, 8, 8)
    with pytest.raises(ValueError, match="unknown particle field 'nope'"):
        field("nope")


def test_the_store_writes_what_the_table_says(tmp_path):
    particles = make_particles(4, seed=1, levels=(0.1, 0.01), realisations=2, attrs={"voxel_size_A": 10.0})
    attrs = {
        "voxel_size_A": 10.0,
        "box": particles.box,
        "snr_levels": [0.1, 0.01],
        "noise_realisations": 2,
        "class_labels": ["a"],
    }
    group_path = write_class_group(tmp_path / "d.zarr", "a", particles, {"name": "A"}, attrs, shard_size=2)
    group = zarr.open_group(str(group_path), mode="r")
    assert sorted(group.array_keys()) == sorted(ARRAYS)
    sizes = {"particle": 4, "box": particles.box, "level": 2, "realisation": 2}
    for f in FIELDS:
        if not f.stored:
            continue
        array = group[f.name]
        assert array.metadata.dimension_names == f.dims, f.name
        assert array.dtype == f.dtype, f.name
        assert array.shape == expected_shape(f.name, sizes), f.name
    block = open_dataset(tmp_path / "d.zarr").read_block("a", 0, 4)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(block, name), getattr(particles, name))


def test_read_block_reads_only_the_volumes_asked_for(tmp_path):
    particles = make_particles(3, seed=2, levels=(0.1,), realisations=1, attrs={"voxel_size_A": 10.0})
    attrs = {"voxel_size_A": 10.0, "box": particles.box, "snr_levels": [0.1], "noise_realisations": 1}
    write_class_group(tmp_path / "d.zarr", "a", particles, {}, {**attrs, "class_labels": ["a"]})
    dataset = open_dataset(tmp_path / "d.zarr")
    block = dataset.read_block("a", 1, 3, arrays=("noise",))
    assert block.clean is None and block.noisy is None
    np.testing.assert_array_equal(block.noise, particles.noise[1:3])
    np.testing.assert_array_equal(block.tomogram, particles.tomogram[1:3])
    with pytest.raises(ValueError, match="was read without clean"):
        block.volumes_at(None)
    with pytest.raises(ValueError, match=r"arrays \['snr'\] are not volumes"):
        dataset.read_block("a", 0, 1, arrays=("snr",))
    small = dataset.per_particle_arrays("a")
    assert set(small) == set(PER_PARTICLE)
    np.testing.assert_array_equal(small["rotation"], particles.rotation)
