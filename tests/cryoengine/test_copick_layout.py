"""copick layout: picks and OME-Zarr tomograms written and read back without the copick package."""

import json

import numcodecs
import numpy as np
import pytest
import zarr

from cryoengine.formats.copick_layout import (
    CopickLayoutError,
    CopickProject,
    write_copick_config,
    write_copick_picks,
    write_copick_tomogram,
)
from cryoengine.physics.rotation import random_rotations

CENTRES_ZYX_A = np.array([[40.0, 300.0, 120.5], [180.2, 77.7, 333.3]])


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    config = write_copick_config(tmp_path / "copick.json", root, ["ribosome", "proteasome"])
    volume = np.arange(30 * 64 * 50, dtype=np.float32).reshape(30, 64, 50)
    write_copick_tomogram(root, "TS_01", 7.84, "wbp", volume, chunk=16)
    rotations = random_rotations(2, np.random.default_rng(1))
    write_copick_picks(root, "TS_01", "ribosome", CENTRES_ZYX_A, rotation=rotations, voxel_size_A=7.84)
    return config, root, volume, rotations


def test_layout_paths_and_schema(project):
    _, root, _, _ = project
    picks = root / "ExperimentRuns/TS_01/Picks/cryoengine_0_ribosome.json"
    record = json.loads(picks.read_text())
    assert record["unit"] == "angstrom" and record["pickable_object_name"] == "ribosome"
    assert record["points"][0]["location"] == {"x": 120.5, "y": 300.0, "z": 40.0}
    assert np.asarray(record["points"][0]["transformation_"]).shape == (4, 4)
    group = zarr.open_group(root / "ExperimentRuns/TS_01/VoxelSpacing7.840/wbp.zarr", mode="r")
    assert group.metadata.zarr_format == 2
    assert group.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [7.84] * 3


def test_read_picks_and_lazy_tomogram(project):
    config, _, volume, rotations = project
    copick = CopickProject(config)
    assert copick.run_names == ["TS_01"] and copick.object_names == ["ribosome", "proteasome"]
    table = copick.read_picks("ribosome")
    np.testing.assert_allclose(table.centres_zyx_A(), CENTRES_ZYX_A)
    np.testing.assert_allclose(table.rotation, rotations, atol=1e-12)
    assert set(table.particles["tomogram"]) == {"TS_01"}
    array, geometry = copick.open_tomogram("TS_01", 7.84, "wbp")
    assert isinstance(array, zarr.Array)
    assert geometry.shape_zyx == (30, 64, 50) and geometry.voxel_size_A == pytest.approx(7.84)
    np.testing.assert_array_equal(array[3:5, 10:12, 7:9], volume[3:5, 10:12, 7:9])
    assert np.isnan(table.particles["tomogram_size_x_A"]).all()
    sized = table.with_tomogram_sizes({"TS_01": geometry})
    np.testing.assert_allclose(sized.particles["tomogram_size_x_A"], 50 * 7.84)


def test_missing_object_run_tomogram(project):
    config, _, _, _ = project
    copick = CopickProject(config)
    with pytest.raises(CopickLayoutError, match="object 'apoferritin' is not a pickable object"):
        copick.read_picks("apoferritin")
    with pytest.raises(CopickLayoutError, match="run 'TS_99' does not exist"):
        copick.read_picks("ribosome", runs=["TS_99"])
    with pytest.raises(CopickLayoutError, match="no 'denoised' tomogram at voxel spacing 7.840"):
        copick.open_tomogram("TS_01", 7.84, "denoised")
    with pytest.raises(CopickLayoutError, match="no picks of object 'proteasome'"):
        copick.read_picks("proteasome")
    with pytest.raises(CopickLayoutError, match="does not exist"):
        CopickProject(config.parent / "other.json")


def test_opens_a_foreign_ome_zarr_v2_store(tmp_path):
    """A store laid out as ome-zarr-py writes it for copick (zarr v2, '/' chunk keys, Blosc, 2 levels)."""
    root = tmp_path / "project"
    config = write_copick_config(tmp_path / "copick.json", root, ["ribosome"])
    store = root / "ExperimentRuns/TS_02/VoxelSpacing10.012/denoised.zarr"
    volume = np.random.default_rng(0).standard_normal((20, 30, 40)).astype(np.float32)
    codec = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    levels = {"0": volume, "1": volume[::2, ::2, ::2].copy()}
    for name, data in levels.items():
        (store / name).mkdir(parents=True)
        zarray = {
            "shape": list(data.shape),
            "chunks": [16, 16, 16],
            "dtype": "<f4",
            "fill_value": 0.0,
            "order": "C",
            "filters": None,
            "dimension_separator": "/",
            "compressor": codec.get_config(),
            "zarr_format": 2,
        }
        (store / name / ".zarray").write_text(json.dumps(zarray))
        for index in np.ndindex(*(-(-s // 16) for s in data.shape)):
            chunk = np.zeros((16, 16, 16), dtype="<f4")
            part = data[tuple(slice(16 * i, 16 * i + 16) for i in index)]
            chunk[tuple(slice(0, s) for s in part.shape)] = part
            path = store / name / "/".join(map(str, index))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(codec.encode(chunk.tobytes()))
    (store / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    datasets = [
        {"path": name, "coordinateTransformations": [{"type": "scale", "scale": [10.012 * 2**k] * 3}]}
        for k, name in enumerate(levels)
    ]
    axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
    (store / ".zattrs").write_text(
        json.dumps({"multiscales": [{"version": "0.4", "axes": axes, "datasets": datasets}]})
    )
    array, geometry = CopickProject(config).open_tomogram("TS_02", 10.012, "denoised")
    assert geometry.shape_zyx == (20, 30, 40) and geometry.voxel_size_A == pytest.approx(10.012)
    np.testing.assert_array_equal(array[5:19, 3:29, 14:33], volume[5:19, 3:29, 14:33])
