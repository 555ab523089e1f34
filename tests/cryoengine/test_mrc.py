"""MRC I/O: voxel size in the header, provenance beside the map, atomic writes, clear errors."""

from __future__ import annotations

import json
import tracemalloc

import mrcfile
import numpy as np
import pytest

from cryoengine.formats.mrc import MrcError, read_volume, write_volume
from cryoengine.formats.provenance import provenance


def test_round_trip_with_voxel_size_and_provenance(tmp_path):
    volume = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    path = write_volume(tmp_path / "v.mrc", volume, 7.5, provenance({"a": 1}, seed=3))
    back, voxel = read_volume(path)
    assert np.array_equal(back, volume) and voxel == 7.5
    record = json.loads((tmp_path / "v.mrc.json").read_text())
    assert record["seed"] == 3 and record["config"] == {"a": 1} and record["version"]
    with mrcfile.open(path) as mrc:
        assert any(b"cryoengine" in label for label in mrc.header.label)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mrc", "v.mrc.json"]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="must be 3D"):
        write_volume(tmp_path / "v.mrc", np.zeros((4, 4)), 1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\x00" * 100, "not a readable MRC"), (b"x" * 2048, "not a readable")],
)
def test_corrupt_files(tmp_path, content, message):
    path = tmp_path / "bad.mrc"
    path.write_bytes(content)
    with pytest.raises(MrcError, match=message):
        read_volume(path)


def test_truncated_file(tmp_path):
    path = write_volume(tmp_path / "v.mrc", np.ones((8, 8, 8)), 2.0)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MrcError, match="v.mrc"):
        read_volume(path)


def test_header_larger_than_the_file_is_refused_before_reading(tmp_path):
    """A 2 KiB file whose header claims 1000³ float32 voxels fails at once, without allocating for them."""
    path = write_volume(tmp_path / "v.mrc", np.ones((8, 8, 8)), 2.0)
    header = bytearray(path.read_bytes()[:1024])
    header[:12] = np.array([1000, 1000, 1000], dtype="<i4").tobytes()
    path.write_bytes(bytes(header) + b"\x00" * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(
            MrcError, match=r"1000×1000×1000 voxels of mode 2 \(4000001024 bytes\), the file has 2048"
        ):
            read_volume(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000


def test_missing_file(tmp_path):
    with pytest.raises(MrcError, match="does not exist"):
        read_volume(tmp_path / "nope.mrc")


def test_a_failed_map_write_leaves_no_orphan_record_and_names_the_file(tmp_path, monkeypatch):
    import errno

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mrcfile, "new", full_disk)
    with pytest.raises(OSError, match=r"No space left on device: '.*v\.mrc'"):
        write_volume(tmp_path / "v.mrc", np.zeros((4, 4, 4)), 1.0, provenance({"a": 1}))
    assert list(tmp_path.iterdir()) == []
