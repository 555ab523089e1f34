"""Observed datasets (a user's particles): format 3, ``content: observed``, written whole and atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest
from particle_factory import make_particles

from cryoengine.store import (
    ChecksumError,
    DatasetFormatError,
    ObservedParticles,
    inspect_dataset,
    open_dataset,
    write_class_group,
    write_observed_dataset,
)
from cryoengine.store import writer as store_writer
from cryoengine.store.fields import OBSERVED_ARRAYS, OBSERVED_FIELDS, expected_shape

BOX = 8


def _observed(n: int, label: str = "unlabelled", seed: int = 0) -> ObservedParticles:
    rng = np.random.default_rng(seed)
    return ObservedParticles(
        observed=rng.standard_normal((n, BOX, BOX, BOX)),
        rotation=np.tile(np.eye(3), (n, 1, 1)),
        shift=rng.uniform(-0.5, 0.5, (n, 3)),
        position=rng.uniform(0, 50, (n, 3)),
        tomogram=np.zeros(n, dtype=int),
        orientation_given=np.zeros(n, dtype=bool),
        source_centre_A=rng.uniform(0, 500, (n, 3)),
        source_pixel_size_A=np.full(n, 7.84),
        source_row=np.arange(n),
        source_file=np.zeros(n, dtype=int),
        edge_padded=np.arange(n) == 0,
        label=[label] * n,
        attrs={"tomogram": {"name": "TS_01"}},
    )


ATTRS = {
    "voxel_size_A": 9.996,
    "requested_voxel_size_A": 10.0,
    "box": BOX,
    "tomograms": [{"name": "TS_01", "source": "TS_01.mrc"}],
    "particle_files": ["particles.star"],
    "import": {"input_format": "relion5"},
}


def test_observed_dataset_round_trip(tmp_path):
    classes = {"a": _observed(5, "a", 1), "b": _observed(3, "b", 2)}
    path = write_observed_dataset(tmp_path / "obs.zarr", classes, ATTRS, shard_size=2)
    root = json.loads((path / "zarr.json").read_text())["attributes"]
    assert (root["format_version"], root["content"], root["count"]) == (3, "observed", 8)
    assert root["voxel_size_A"] == 9.996 and root["requested_voxel_size_A"] == 10.0
    assert (root["snr_levels"], root["noise_realisations"], root["class_labels"]) == ([], 0, ["a", "b"])
    dataset = open_dataset(path)
    assert dataset.observed and dataset.format_version == 3 and len(dataset) == 8
    item = dataset[6]
    assert item.class_id == "b" and item.clean is None and item.noisy is None and item.defocus_um is None
    np.testing.assert_array_equal(item.observed, classes["b"].observed[1])
    assert item.source_row == 1 and item.source_pixel_size_A == 7.84 and item.orientation_given is False
    block = dataset.read_block("a", 0, 5)
    np.testing.assert_array_equal(block.volumes_at(None), classes["a"].observed)
    assert block.clean is None and block.snr.shape == (5, 0)
    for f in OBSERVED_FIELDS:
        array = getattr(block, f.name)
        assert array.dtype == f.dtype and array.shape == expected_shape(f.name, {"particle": 5, "box": BOX})
    np.testing.assert_array_equal(block.edge_padded, classes["a"].edge_padded)
    assert [block.class_id for block in dataset.iter_shards()] == ["a", "a", "a", "b", "b"]
    dataset.verify()
    report = inspect_dataset(path)
    assert report.ok and "observed particles" in str(report)


def test_simulated_datasets_are_unchanged_format_2(tmp_path):
    particles = make_particles(3, seed=1, levels=(0.1,), realisations=1, attrs={"voxel_size_A": 10.0})
    attrs = {"voxel_size_A": 10.0, "box": particles.box, "snr_levels": [0.1], "noise_realisations": 1}
    write_class_group(tmp_path / "sim.zarr", "a", particles, {}, {**attrs, "class_labels": ["a"]})
    root = json.loads((tmp_path / "sim.zarr" / "zarr.json").read_text())["attributes"]
    assert root["format_version"] == 2 and "content" not in root
    dataset = open_dataset(tmp_path / "sim.zarr")
    assert not dataset.observed and dataset[0].observed is None


def test_version_and_content_must_agree(tmp_path):
    path = write_observed_dataset(tmp_path / "obs.zarr", {"unlabelled": _observed(2)}, ATTRS)
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["content"] = "simulated"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match="content 'simulated' at format_version 3"):
        open_dataset(path)


def test_a_failed_write_leaves_no_dataset_and_keeps_an_old_one(tmp_path, monkeypatch):
    target = tmp_path / "obs.zarr"

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_writer, "_create_arrays", broken)
    with pytest.raises(OSError, match="disk full"):
        write_observed_dataset(target, {"unlabelled": _observed(2)}, ATTRS)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    write_observed_dataset(target, {"unlabelled": _observed(2)}, ATTRS)
    monkeypatch.setattr(store_writer, "_create_arrays", broken)
    with pytest.raises(OSError):
        write_observed_dataset(target, {"unlabelled": _observed(4)}, ATTRS)
    assert [p.name for p in tmp_path.iterdir()] == ["obs.zarr"] and len(open_dataset(target)) == 2


def test_bad_classes_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="class id '.hidden'"):
        write_observed_dataset(tmp_path / "obs.zarr", {".hidden": _observed(2)}, ATTRS)
    with pytest.raises(ValueError, match="must not set content"):
        write_observed_dataset(tmp_path / "obs.zarr", {"a": _observed(2)}, {**ATTRS, "content": "x"})
    assert list(tmp_path.iterdir()) == []


def test_corruption_is_detected(tmp_path):
    path = write_observed_dataset(tmp_path / "obs.zarr", {"unlabelled": _observed(3)}, ATTRS)
    chunk = path / "classes" / "unlabelled" / "source_centre_A" / "c.0.0"
    data = bytearray(chunk.read_bytes())
    data[-8] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="source_centre_A"):
        open_dataset(path).verify()


def test_intermediate_round_trip(tmp_path):
    particles = _observed(3)
    loaded = ObservedParticles.load(particles.save(tmp_path / "t.npz"))
    for name in OBSERVED_ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(particles, name))
    assert loaded.attrs == particles.attrs and list(loaded.label) == ["unlabelled"] * 3
