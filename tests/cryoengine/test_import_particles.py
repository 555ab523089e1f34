"""python -m cryoengine import-particles: a user's project → an observed dataset, and its bad inputs.

The project is the README's (:func:`examples.make_user_project.make_user_project`): a CryoEngine tomogram
written at 7.84 Å with its particles as a RELION 5 STAR and a copick project. Every bad input is one line
naming the file and the field, exit status 1, and no dataset (nor a hidden temporary one) left behind.
"""

from __future__ import annotations

import re

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryoengine.cli import main
from cryoengine.formats.mrc import write_volume
from cryoengine.physics.extraction import extract_subtomograms
from cryoengine.store import open_dataset
from examples.make_user_project import BOX, VOXEL_A, make_user_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_user_project(tmp_path_factory.mktemp("user"), particles=6)


def _correlations(a, b):
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def _check_dataset(path, project):
    dataset = open_dataset(path)
    assert dataset.observed and dataset.classes == ("unlabelled",)
    assert abs(dataset.voxel_size_A - 9.996) < 1e-3 and dataset.attrs["requested_voxel_size_A"] == 10.0
    block = dataset.read_block("unlabelled", 0, len(dataset))
    truth = project.placements
    np.testing.assert_allclose(block.source_centre_A, truth.centre_zyx_vox * VOXEL_A, atol=1e-3)
    np.testing.assert_allclose(block.rotation, truth.rotation, atol=1e-6)
    assert block.orientation_given.all() and not block.edge_padded.any()
    np.testing.assert_allclose(block.source_pixel_size_A, 7.84)
    own, _ = extract_subtomograms(project.tomogram, np.round(block.position - block.shift), BOX)
    assert _correlations(block.observed, own).min() >= 0.95
    np.testing.assert_allclose(block.observed.mean(axis=(1, 2, 3)), 0, atol=1e-5)  # standardised
    np.testing.assert_allclose(block.observed.std(axis=(1, 2, 3)), 1, atol=1e-4)
    (tomogram,) = dataset.attrs["tomograms"]
    assert tomogram["name"] == "TS_01" and tomogram["shape_zyx"] == [125, 125, 125]
    dataset.verify()
    return dataset


def test_relion5_star_import(project, tmp_path, capsys):
    out = tmp_path / "particles.zarr"
    argv = [str(project.star_path), "--format", "relion5", "--tomograms", str(project.mrc_path.parent)]
    assert main(["import-particles", *argv, "--voxel-size-A", "10", "--box", "32", "-o", str(out)]) == 0
    dataset = _check_dataset(out, project)
    assert dataset.attrs["particle_files"] == [str(project.star_path)]
    assert list(dataset.per_particle_arrays("unlabelled")["source_row"]) == list(range(6))
    assert str(out) in capsys.readouterr().out


def test_relion5_tomograms_star(project, tmp_path, capsys):
    star = tmp_path / "tomograms.star"
    tomograms = {
        "rlnTomoName": ["TS_01"],
        "rlnTomoTiltSeriesPixelSize": [7.84],
        **{f"rlnTomoSize{a}": [125] for a in "XYZ"},
        "rlnTomoReconstructedTomogram": [str(project.mrc_path)],
    }
    starfile.write({"global": pd.DataFrame(tomograms)}, star)
    out = tmp_path / "particles.zarr"
    argv = [str(project.star_path), "--format", "relion5", "--tomograms", str(star), "-o", str(out)]
    assert main(["import-particles", *argv]) == 0
    _check_dataset(out, project)
    starfile.write({"global": pd.DataFrame({**tomograms, "rlnTomoName": ["TS_02"]})}, star, overwrite=True)
    _run_bad(tmp_path, capsys, argv[:5], ["particles.star", "'TS_01'", "rlnTomoReconstructedTomogram"])


def test_copick_import(project, tmp_path):
    out = tmp_path / "copick.zarr"
    argv = [str(project.copick_config), "--format", "copick", "--copick-object", "blobs"]
    assert main(["import-particles", *argv, "--copick-voxel-spacing", "7.84", "-o", str(out)]) == 0
    dataset = _check_dataset(out, project)
    assert dataset.attrs["import"]["copick_object"] == "blobs"


def test_csv_import_in_pixels_and_angstrom_with_labels(project, tmp_path):
    centres_A = project.placements.centre_zyx_vox * VOXEL_A
    for unit, scale in (("angstrom", 1.0), ("pixel", 1 / 7.84)):
        csv = tmp_path / f"{unit}.csv"
        xyz = centres_A[:, ::-1] * scale
        labels = ["ring" if k % 2 else "rod" for k in range(len(xyz))]
        frame = pd.DataFrame({"tomogram": "TS_01", "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
        frame.assign(kind=labels).to_csv(csv, index=False)
        out = tmp_path / f"{unit}.zarr"
        argv = [str(csv), "--format", "csv", "--csv-unit", unit, "--tomograms", str(project.mrc_path.parent)]
        assert main(["import-particles", *argv, "--label-column", "kind", "-o", str(out)]) == 0
        dataset = open_dataset(out)
        assert dataset.classes == ("ring", "rod") and dataset.counts == {"ring": 3, "rod": 3}
        rows = dataset.per_particle_arrays("ring")
        np.testing.assert_allclose(rows["source_centre_A"], centres_A[1::2], atol=1e-6)
        assert not rows["orientation_given"].any()
        np.testing.assert_array_equal(rows["rotation"], np.tile(np.eye(3), (3, 1, 1)))


def _star(path, **columns):
    starfile.write({"particles": pd.DataFrame(columns)}, path, overwrite=True)
    return path


def _run_bad(tmp_path, capsys, argv, expected):
    out = tmp_path / "out" / "bad.zarr"
    assert main(["import-particles", *map(str, argv), "-o", str(out)]) == 1
    lines = re.split(r"[\r\n]", capsys.readouterr().err)  # the progress bar redraws with \r
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("cryoengine: error: "), lines
    message = errors[0]
    for fragment in expected:
        assert fragment in message, message
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_bad_inputs_are_one_line_and_leave_no_dataset(project, tmp_path, capsys):
    tomograms = project.mrc_path.parent
    no_coordinates = _star(tmp_path / "nocoord.star", rlnTomoName=["TS_01"], rlnAngleRot=[0.0])
    _run_bad(
        tmp_path,
        capsys,
        [no_coordinates, "--format", "relion5", "--tomograms", tomograms],
        ["nocoord.star", "no coordinates", "rlnCenteredCoordinateX/Y/ZAngst"],
    )
    missing = _star(
        tmp_path / "missing.star", rlnTomoName=["TS_02"], **{f"rlnCoordinate{a}": [10.0] for a in "XYZ"}
    )
    _run_bad(
        tmp_path,
        capsys,
        [missing, "--format", "relion5", "--tomograms", tomograms],
        ["missing.star", "'TS_02'", "missing"],
    )
    outside = _star(
        tmp_path / "outside.star",
        rlnTomoName=["TS_01"],
        rlnCoordinateX=[5000.0],
        rlnCoordinateY=[10.0],
        rlnCoordinateZ=[10.0],
    )
    _run_bad(
        tmp_path,
        capsys,
        [outside, "--format", "relion5", "--tomograms", tomograms, "--pixel-size-A", "7.84"],
        ["outside.star", "TS_01.mrc", "lies outside the tomogram"],
    )
    # No voxel in the MRC header and none in the STAR (pixel coordinates without a pixel size).
    unsized = tmp_path / "unsized"
    unsized.mkdir()
    write_volume(unsized / "TS_01.mrc", np.zeros((40, 40, 40), np.float32), 7.84)
    with mrcfile.open(unsized / "TS_01.mrc", mode="r+") as mrc:
        mrc.voxel_size = 0.0
    pixels = _star(
        tmp_path / "pixels.star", rlnTomoName=["TS_01"], **{f"rlnCoordinate{a}": [20.0] for a in "XYZ"}
    )
    _run_bad(
        tmp_path,
        capsys,
        [pixels, "--format", "relion5", "--tomograms", unsized],
        ["TS_01.mrc", "voxel size missing or 0"],
    )
    flat = tmp_path / "flat"
    flat.mkdir()
    with mrcfile.new(flat / "TS_01.mrc") as mrc:
        mrc.set_data(np.zeros((40, 40), np.float32))
        mrc.voxel_size = 7.84
    _run_bad(
        tmp_path,
        capsys,
        [pixels, "--format", "relion5", "--tomograms", flat, "--pixel-size-A", "7.84"],
        ["TS_01.mrc", "is not a 3D volume"],
    )
    copick = [project.copick_config, "--format", "copick", "--copick-voxel-spacing", "7.84"]
    _run_bad(tmp_path, capsys, [*copick, "--copick-object", "ribosome"], ["copick.json", "object 'ribosome'"])
    _run_bad(
        tmp_path,
        capsys,
        [*copick, "--copick-object", "blobs", "--copick-runs", "TS_09"],
        ["copick.json", "run 'TS_09' does not exist"],
    )
    _run_bad(tmp_path, capsys, [pixels, "--format", "relion5"], ["tomograms"])  # no --tomograms


def test_a_failed_import_keeps_an_earlier_dataset(project, tmp_path, capsys):
    out = tmp_path / "particles.zarr"
    argv = [str(project.star_path), "--format", "relion5", "--tomograms", str(project.mrc_path.parent)]
    assert main(["import-particles", *argv, "-o", str(out)]) == 0
    bad = _star(tmp_path / "bad.star", rlnTomoName=["TS_01"])
    assert main(["import-particles", str(bad), *argv[1:], "-o", str(out)]) == 1
    assert len(open_dataset(out)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.star", "particles.zarr"]
