"""dataset.zarr: bit-exact write/read, random access, shards, worker processes, atomic rewrite, bad input."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from particle_factory import BOX, LEVELS
from particle_factory import make_particles as make_synthetic

from cryoengine.store import (
    ChecksumError,
    ClassNotFoundError,
    DatasetFormatError,
    DatasetNotFoundError,
    MissingChunkError,
    inspect_dataset,
    open_dataset,
    write_class_group,
    write_manifest,
)
from cryoengine.store.fields import ARRAYS
from cryoengine.store.particle_set import ParticleSet

SHARD = 3
DATASET_ATTRS = {
    "voxel_size_A": 10.0,
    "box": BOX,
    "snr_levels": LEVELS,
    "noise_realisations": 2,
    "class_labels": ["a", "b", "c"],
    "tilt_scheme": {"min_deg": -60, "max_deg": 60, "step_deg": 3},
    "provenance": {"seed": 0},
}
COUNTS = {"a": 7, "b": 5}  # 7 = two full shards of 3 and one of 1


def make_particles(n: int, seed: int, class_id: str, box: int = BOX) -> ParticleSet:
    return make_synthetic(n, seed, class_id, box=box, attrs={"voxel_size_A": 10.0, "snr_levels": LEVELS})


def write_dataset(path: Path, seed: int = 0) -> dict[str, ParticleSet]:
    sets = {}
    for k, (class_id, count) in enumerate(COUNTS.items()):
        sets[class_id] = make_particles(count, seed + k, class_id)
        write_class_group(path, class_id, sets[class_id], {"name": class_id.upper()}, DATASET_ATTRS, SHARD)
    return sets


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> tuple[Path, dict[str, ParticleSet]]:
    """A two-class dataset with its manifest, that tests only read."""
    path = tmp_path_factory.mktemp("shared") / "dataset.zarr"
    sets = write_dataset(path)
    write_manifest(path, list(COUNTS), DATASET_ATTRS)
    return path, sets


@pytest.fixture
def written(shared, tmp_path) -> tuple[Path, dict[str, ParticleSet]]:
    """A private copy of the shared dataset, for tests that change it."""
    path, sets = shared
    shutil.copytree(path, tmp_path / "dataset.zarr")
    return tmp_path / "dataset.zarr", sets


def files_of(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def assert_item_matches(item, particles: ParticleSet, row: int) -> None:
    for name in ARRAYS:
        expected = getattr(particles, name)[row]
        value = np.asarray(getattr(item, name))
        if name in ("tomogram", "defocus_um", "noise_scale"):
            assert value == expected, name
        else:
            assert value.dtype == expected.dtype and value.tobytes() == expected.tobytes(), name


def test_items_are_the_bytes_of_the_intermediate_file(tmp_path):
    saved = make_particles(7, seed=4, class_id="a").save(tmp_path / "a.npz")
    intermediate = ParticleSet.load(saved)
    write_class_group(tmp_path / "ds.zarr", "a", intermediate, {"name": "A"}, DATASET_ATTRS, SHARD)
    dataset = open_dataset(tmp_path / "ds.zarr")
    reloaded = ParticleSet.load(saved)
    for row in range(7):
        assert_item_matches(dataset[row], reloaded, row)


def test_random_access_uses_a_global_index_over_sorted_classes(shared):
    path, sets = shared
    dataset = open_dataset(path)
    assert dataset.classes == ("a", "b") and len(dataset) == 12 and dataset.counts == COUNTS
    assert (dataset.box, dataset.voxel_size_A, dataset.snr_levels) == (BOX, 10.0, tuple(LEVELS))
    rng = np.random.default_rng(1)
    for index in rng.permutation(12):
        item = dataset[int(index)]
        class_id, row = ("a", index) if index < 7 else ("b", index - 7)
        assert (item.index, item.class_id, item.class_index, item.particle_index) == (
            index,
            class_id,
            "ab".index(class_id),
            row,
        )
        assert_item_matches(item, sets[class_id], row)
    assert dataset[-1].particle_index == 4 and dataset[np.int64(7)].class_id == "b"
    with pytest.raises(IndexError, match="index 12 is out of range for 12"):
        dataset[12]


def test_iter_shards_covers_every_item_once_in_shard_aligned_blocks(shared):
    path, sets = shared
    dataset = open_dataset(path)
    blocks = list(dataset.iter_shards())
    assert [(b.class_id, b.particle_indices) for b in blocks] == [
        ("a", range(0, 3)),
        ("a", range(3, 6)),
        ("a", range(6, 7)),
        ("b", range(0, 3)),
        ("b", range(3, 5)),
    ]
    assert [i for b in blocks for i in b.indices] == list(range(len(dataset)))
    for block in blocks:
        rows = slice(block.particle_indices.start, block.particle_indices.stop)
        for name in ARRAYS:
            assert getattr(block, name).tobytes() == getattr(sets[block.class_id], name)[rows].tobytes()
    assert [len(b) for b in dataset.iter_shards("b")] == [3, 2]


def test_two_spawned_worker_processes_read_the_same_bytes(shared):
    path, _ = shared
    dataset = open_dataset(path)
    order = [int(i) for i in np.random.default_rng(2).permutation(len(dataset))]
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        items = list(pool.map(dataset.__getitem__, order, chunksize=1))
    for index, item in zip(order, items, strict=True):
        mine = dataset[index]
        assert item.class_id == mine.class_id and item.particle_index == mine.particle_index
        assert item.clean.tobytes() == mine.clean.tobytes() and item.noisy.tobytes() == mine.noisy.tobytes()
        assert item.rotation.tobytes() == mine.rotation.tobytes()


def test_same_input_gives_identical_files(tmp_path):
    write_dataset(tmp_path / "one.zarr")
    write_dataset(tmp_path / "two.zarr")
    one = {k: v[1] for k, v in files_of(tmp_path / "one.zarr").items()}
    two = {k: v[1] for k, v in files_of(tmp_path / "two.zarr").items()}
    assert one.keys() == two.keys() and any("/noisy/c." in k for k in one)
    assert one == two


def test_rewriting_one_class_leaves_the_other_untouched(written):
    path, _ = written
    before = files_of(path / "classes" / "b")
    replacement = make_particles(4, seed=9, class_id="a")
    write_class_group(path, "a", replacement, {"name": "A2"}, DATASET_ATTRS, SHARD)
    assert files_of(path / "classes" / "b") == before
    dataset = open_dataset(path)
    assert dataset.counts == {"a": 4, "b": 5}
    assert dataset.class_group("a").attrs["name"] == "A2"
    assert_item_matches(dataset[3], replacement, 3)
    assert sorted(p.name for p in (path / "classes").iterdir()) == ["a", "b", "zarr.json"]


def test_killed_writer_leaves_no_half_class_and_a_rewrite_cleans_up(written):
    path, sets = written
    classes = path / "classes"
    # A writer killed mid-write leaves its temporary group; one killed mid-swap also the old group.
    stale_tmp = classes / ".a.tmp-0123456789abcdef"
    shutil.copytree(classes / "a", stale_tmp)
    shutil.rmtree(stale_tmp / "noisy")
    stale_old = classes / ".c.old-0123456789abcdef"
    shutil.copytree(classes / "b", stale_old)
    assert open_dataset(path).classes == ("a", "b")

    write_class_group(path, "c", make_particles(2, seed=5, class_id="c"), {"name": "C"}, DATASET_ATTRS, SHARD)
    write_class_group(path, "a", sets["a"], {"name": "A"}, DATASET_ATTRS, SHARD)
    assert sorted(p.name for p in classes.iterdir()) == ["a", "b", "c", "zarr.json"]
    open_dataset(path).verify("a")
    write_manifest(path, ["a", "b", "c"], DATASET_ATTRS)
    open_dataset(path).verify()


def test_failed_write_keeps_the_previous_group(written, monkeypatch):
    path, sets = written
    before = files_of(path / "classes" / "a")

    def crash(directory):
        raise OSError("killed")

    monkeypatch.setattr("cryoengine.store.writer._fsync_tree", crash)
    with pytest.raises(OSError, match="killed"):
        write_class_group(path, "a", make_particles(3, 8, "a"), {"name": "A"}, DATASET_ATTRS, SHARD)
    assert files_of(path / "classes" / "a") == before
    assert sorted(p.name for p in (path / "classes").iterdir()) == ["a", "b", "zarr.json"]


def test_failed_swap_puts_the_previous_group_back(written, monkeypatch):
    path, _ = written
    before = files_of(path / "classes" / "a")
    rename = os.rename

    def rename_failing_for_the_new_group(source, target):
        if ".tmp-" in Path(source).name:
            raise OSError("rename failed")
        rename(source, target)

    monkeypatch.setattr("cryoengine.store.writer.os.rename", rename_failing_for_the_new_group)
    with pytest.raises(OSError, match="rename failed"):
        write_class_group(path, "a", make_particles(3, 8, "a"), {"name": "A"}, DATASET_ATTRS, SHARD)
    assert files_of(path / "classes" / "a") == before
    assert sorted(p.name for p in (path / "classes").iterdir()) == ["a", "b", "zarr.json"]


def test_root_is_created_once_and_never_rewritten_by_class_jobs(written):
    path, _ = written
    root_json = (path / "zarr.json").read_bytes()
    other_job = {**DATASET_ATTRS, "provenance": {"seed": 99}}
    write_class_group(path, "c", make_particles(2, seed=5, class_id="c"), {"name": "C"}, other_job, SHARD)
    assert (path / "zarr.json").read_bytes() == root_json
    assert open_dataset(path).attrs["provenance"] == {"seed": 0}


def test_manifest_lists_the_classes_and_checks_them(written):
    path, _ = written
    manifest = write_manifest(path, ["b", "a"], DATASET_ATTRS)
    assert manifest["classes"] == {"a": {"name": "A", "count": 7}, "b": {"name": "B", "count": 5}}
    dataset = open_dataset(path)
    assert dataset.attrs["count"] == 12 and dataset.attrs["classes"] == manifest["classes"]
    dataset.verify()

    with pytest.raises(ClassNotFoundError, match=r"class\(es\) c have no group .*present: a, b"):
        write_manifest(path, ["a", "b", "c"], DATASET_ATTRS)
    with pytest.raises(DatasetFormatError, match=r"group\(s\) b that are not configured"):
        write_manifest(path, ["a"], DATASET_ATTRS)
    with pytest.raises(DatasetFormatError, match=r"class 'a' was written with snr_levels"):
        write_manifest(path, ["a", "b"], {**DATASET_ATTRS, "snr_levels": [0.2, 0.1, 0.05]})


def test_a_group_the_manifest_lists_but_that_is_missing_is_an_error_on_open(written):
    path, _ = written
    write_manifest(path, ["a", "b"], DATASET_ATTRS)
    shutil.rmtree(path / "classes" / "a")  # the README's rebuild procedure, half done
    with pytest.raises(ClassNotFoundError, match=r"class group\(s\) a of .* in its manifest but missing"):
        open_dataset(path)


def test_labels_stay_fixed_from_the_config_whatever_groups_exist(tmp_path):
    path = tmp_path / "ds.zarr"
    for class_id in ("a", "c"):  # b (label 1) never written: e.g. an optional class not fetched
        write_class_group(path, class_id, make_particles(2, 0, class_id), {}, DATASET_ATTRS, SHARD)
    dataset = open_dataset(path)
    assert dataset.class_labels == ("a", "b", "c") and dataset.classes == ("a", "c")
    assert dataset.class_index("c") == 2 and dataset[2].class_id == "c" and dataset[2].class_index == 2
    assert {b.class_index for b in dataset.iter_shards("c")} == {2}
    with pytest.raises(ClassNotFoundError, match="class 'b' is not in"):
        dataset.class_index("b")


def test_labels_may_grow_by_appending_but_never_move(tmp_path):
    path = tmp_path / "ds.zarr"
    write_class_group(path, "a", make_particles(2, 0, "a"), {}, DATASET_ATTRS, SHARD)
    grown = {**DATASET_ATTRS, "class_labels": ["a", "b", "c", "d"]}
    write_class_group(path, "d", make_particles(2, 1, "d"), {}, grown, SHARD)
    with pytest.raises(DatasetFormatError, match=r"has no label|no label in its class_labels"):
        open_dataset(path)  # d is not labelled until the manifest records the grown list
    write_manifest(path, ["a", "d"], grown)
    assert open_dataset(path).class_index("d") == 3
    for labels in (["b", "a", "c", "d"], ["a", "c", "d"]):
        with pytest.raises(DatasetFormatError, match="would move or drop some"):
            write_class_group(
                path, "a", make_particles(2, 0, "a"), {}, {**DATASET_ATTRS, "class_labels": labels}
            )
    with pytest.raises(ValueError, match=r"class 'e' is not in dataset_attrs\['class_labels'\]"):
        write_class_group(path, "e", make_particles(2, 0, "e"), {}, grown)


def test_missing_class_lists_the_available_ones(shared):
    path, _ = shared
    dataset = open_dataset(path)
    with pytest.raises(ClassNotFoundError, match=r"class 'zz' is not in .*available: a, b\)") as error:
        dataset.class_group("zz")
    assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)
    with pytest.raises(ClassNotFoundError):
        list(dataset.iter_shards("zz"))


def test_corrupted_shard_fails_verify_naming_class_and_array(written):
    path, _ = written
    shard = path / "classes" / "b" / "noisy" / "c.1.0.0.0.0"  # rows 3:5 of b
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    dataset = open_dataset(path)
    dataset.verify("a")
    with pytest.raises(ChecksumError, match=r"class 'b' array 'noisy'"):
        dataset.verify()
    with pytest.raises(ChecksumError, match=r"class 'b' array 'noisy'"):
        [dataset[index] for index in (10, 11)]  # one of rows 3, 4 of b holds the flipped byte
    assert dataset[7].class_id == "b"  # the other shard still reads
    report = inspect_dataset(path)
    assert not report.ok and list(report.failures) == ["b"] and "FAILED" in str(report)


@pytest.mark.parametrize(
    ("array", "file", "read"),
    [
        ("clean", "c.0.0.0.0", lambda d: d[1]),
        ("noise", "c.2.0.0.0.0", lambda d: d.read_block("a", 6, 7)),
        ("noisy", "c.1.0.0.0.0", lambda d: d.verify()),
        ("rotation", "c.1.0.0", lambda d: d[4]),
        ("tomogram", "c.0", lambda d: d[0]),
    ],
)
def test_a_missing_chunk_raises_naming_class_array_and_index(written, array, file, read):
    path, _ = written
    (path / "classes" / "a" / array / file).unlink()  # zarr would read it back as zeros
    dataset = open_dataset(path)
    with pytest.raises(MissingChunkError, match=rf"class 'a' array '{array}' .*{array}/{file} .* missing"):
        read(dataset)
    assert dataset[8].class_id == "b"  # the other class still reads
    report = inspect_dataset(path)
    assert not report.ok and list(report.failures) == ["a"] and "missing" in report.failures["a"]


def test_all_zero_chunks_are_written_so_that_missing_means_damage(tmp_path):
    particles = make_particles(4, 0, "a")
    particles.tomogram[:] = 0  # a whole chunk of zeros
    group = write_class_group(tmp_path / "ds.zarr", "a", particles, {}, DATASET_ATTRS, SHARD)
    assert (group / "tomogram" / "c.0").is_file() and (group / "tomogram" / "c.1").is_file()
    assert open_dataset(tmp_path / "ds.zarr")[3].tomogram == 0


def test_other_format_version_is_refused(written):
    path, _ = written
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["format_version"] = 7
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(
        DatasetFormatError, match=r"has format_version 7; this cryoengine reads format_version 1, 2"
    ):
        open_dataset(path)
    with pytest.raises(DatasetFormatError, match="format_version 7"):
        write_class_group(path, "a", make_particles(2, 0, "a"), {}, DATASET_ATTRS)


def test_other_format_and_non_datasets_are_refused(tmp_path, written):
    path, _ = written
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        open_dataset(tmp_path / "nowhere.zarr")
    with pytest.raises(DatasetNotFoundError, match="has no zarr.json"):
        open_dataset(tmp_path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["format"] = "something.else"
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(
        DatasetFormatError, match=r"has format 'something.else', expected 'cryoengine.subtomograms'"
    ):
        open_dataset(path)


def test_class_inconsistent_with_the_root_is_refused(tmp_path):
    path = tmp_path / "ds.zarr"
    write_class_group(path, "a", make_particles(2, 0, "a"), {}, DATASET_ATTRS)
    write_class_group(path, "b", make_particles(2, 1, "b", box=8), {}, {**DATASET_ATTRS, "box": 8})
    with pytest.raises(DatasetFormatError, match=r"class 'b' .* has box = 8 but the dataset has 6"):
        open_dataset(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"class_id": ".hidden"}, "class id '.hidden' must match"),
        ({"class_id": "a/b"}, "class id 'a/b' must match"),
        ({"shard_size": 0}, "shard_size must be a positive integer"),
        ({"dataset_attrs": {**DATASET_ATTRS, "snr_levels": [float("inf"), 0.05, 0.01]}}, "snr_levels"),
        ({"dataset_attrs": {**DATASET_ATTRS, "box": 8}}, "in 6³ boxes, dataset box is 8"),
        ({"dataset_attrs": {**DATASET_ATTRS, "snr_levels": [0.1, 0.05]}}, "3 noisy levels"),
        ({"dataset_attrs": {**DATASET_ATTRS, "format_version": 7}}, "must not set format_version"),
        ({"dataset_attrs": {k: v for k, v in DATASET_ATTRS.items() if k != "voxel_size_A"}}, "voxel_size_A"),
        ({"class_attrs": {"count": 3}}, "class_attrs must not set count"),
        ({"class_id": "b"}, "particles are of class 'a', not 'b'"),
    ],
)
def test_bad_write_arguments_are_named(tmp_path, change, message):
    arguments = {
        "class_id": "a",
        "particles": make_particles(2, 0, "a"),
        "class_attrs": {"name": "A"},
        "dataset_attrs": DATASET_ATTRS,
        "shard_size": SHARD,
        **change,
    }
    with pytest.raises(ValueError, match=message):
        write_class_group(tmp_path / "ds.zarr", **arguments)
    assert not (tmp_path / "ds.zarr").exists()


def test_inspect_fails_a_dataset_without_manifest_or_classes(tmp_path):
    path = tmp_path / "jobs_done.zarr"
    write_dataset(path)  # class jobs done, manifest not written
    report = inspect_dataset(path)
    assert not report.ok and list(report.failures) == ["(manifest)"] and "no manifest" in str(report)
    write_class_group(tmp_path / "ds.zarr", "a", make_particles(2, 0, "a"), {}, DATASET_ATTRS)
    shutil.rmtree(tmp_path / "ds.zarr" / "classes" / "a")
    assert set(inspect_dataset(tmp_path / "ds.zarr").failures) == {"(dataset)", "(manifest)"}


def test_inspect_shows_a_table_of_classes(shared):
    path, sets = shared
    report = inspect_dataset(path)
    assert report.ok
    lines = str(report).splitlines()
    assert "2 classes, 12 subtomograms of 6³ voxels at 10 Å, SNR levels 0.1, 0.05, 0.01" in lines[0]
    assert lines[1].split()[:4] == ["class", "name", "particles", "shards"]
    row_a = lines[3].split()
    assert row_a[:4] == ["a", "A", "7", "3"] and row_a[-1] == "ok"
    median = np.median(sets["a"].snr, axis=0)
    assert " / ".join(f"{v:.3g}" for v in median) in lines[3]
    assert lines[-1] == "all checksums ok"
    assert inspect_dataset(path, verify=False).table.splitlines()[3].endswith("not checked")


def downgrade_to_version_1(path: Path) -> None:
    """Turn a format-2 dataset into what format 1 wrote: no noise arrays, no noise_realisations, version 1."""

    def edit(meta_path: Path, change) -> None:
        meta = json.loads(meta_path.read_text())
        change(meta["attributes"])
        meta_path.write_text(json.dumps(meta))

    def root(attrs):
        attrs["format_version"] = 1
        del attrs["noise_realisations"]

    def group(attrs):
        root(attrs)
        del attrs["checksums"]["noise"], attrs["checksums"]["noise_scale"]

    edit(path / "zarr.json", root)
    for class_dir in (path / "classes").iterdir():
        if (class_dir / "zarr.json").is_file() and class_dir.name != "zarr.json":
            edit(class_dir / "zarr.json", group)
            shutil.rmtree(class_dir / "noise")
            shutil.rmtree(class_dir / "noise_scale")


def test_format_2_items_and_blocks_carry_k_unit_noise_volumes_and_the_scale(shared):
    path, sets = shared
    dataset = open_dataset(path)
    assert (dataset.format_version, dataset.noise_realisations) == (2, 2)
    item = dataset[8]
    assert item.noise.shape == (2, BOX, BOX, BOX) and item.noise.dtype == np.float32
    assert item.noise.tobytes() == sets["b"].noise[1].tobytes()
    assert isinstance(item.noise_scale, float) and item.noise_scale == sets["b"].noise_scale[1]
    block = dataset.read_block("a", 3, 6)
    assert block.noise.shape == (3, 2, BOX, BOX, BOX) and block.noise_scale.shape == (3,)
    assert block.noise.tobytes() == sets["a"].noise[3:6].tobytes()
    assert block.noise_scale.dtype == np.float32
    dataset.verify()


def test_noise_is_stored_raw_behind_a_crc_and_the_rest_compressed(shared):
    path, _ = shared
    codecs = json.loads((path / "classes" / "a" / "noise" / "zarr.json").read_text())["codecs"]
    inner = [codec["name"] for codec in codecs[0]["configuration"]["codecs"]]
    assert inner == ["bytes", "crc32c"]
    codecs = json.loads((path / "classes" / "a" / "noisy" / "zarr.json").read_text())["codecs"]
    assert [codec["name"] for codec in codecs[0]["configuration"]["codecs"]] == ["bytes", "blosc", "crc32c"]


def test_a_format_1_dataset_still_reads_without_noise(written):
    path, sets = written
    downgrade_to_version_1(path)
    dataset = open_dataset(path)
    assert (dataset.format_version, dataset.noise_realisations) == (1, 0)
    item = dataset[2]
    assert item.noise is None and item.noise_scale is None
    assert item.noisy.tobytes() == sets["a"].noisy[2].tobytes()
    blocks = list(dataset.iter_shards())
    assert sum(len(b) for b in blocks) == 12 and all(
        b.noise is None and b.noise_scale is None for b in blocks
    )
    dataset.verify()
    assert inspect_dataset(path).ok and " v1, " in str(inspect_dataset(path))
    with pytest.raises(DatasetFormatError, match="format_version 1; this cryoengine writes version 2 only"):
        write_class_group(path, "c", make_particles(2, 0, "c"), {}, DATASET_ATTRS)


def test_a_count_mismatch_is_named_as_such_and_inspect_reports_it(written):
    path, _ = written
    meta = json.loads((path / "classes" / "a" / "zarr.json").read_text())
    meta["attributes"]["count"] = 8
    (path / "classes" / "a" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match=r"count mismatch, array 'clean' holds 7 particles .* is 8"):
        open_dataset(path)[0]
    report = inspect_dataset(path)
    assert not report.ok and "count mismatch" in report.failures["a"]
    assert "corrupt" not in report.failures["a"]
