"""python -m aptvit.predict on an imported user project: STAR, copick picks and averages back out.

The project is the README's (:func:`examples.make_user_project.make_user_project`), imported from copick so
every output is written. The checkpoint holds a seeded, untrained narrow encoder: the clustering needs only
features, and the averages and poses come from classical alignment.
"""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile

from aptvit.data import SubtomogramDataModule
from aptvit.predict import main as predict
from cryoengine.cli import main as cryoengine
from cryoengine.formats.copick_layout import CopickProject
from cryoengine.physics.resampling import rotate_volume
from cryoengine.physics.rotation import relion_euler_deg_to_rotation
from cryoengine.store import open_dataset
from examples.make_user_project import BOX, USER_VOXEL_A, make_user_project, write_untrained_checkpoint

RELION5_COLUMNS = {
    "rlnTomoName",
    "rlnCenteredCoordinateXAngst",
    "rlnCenteredCoordinateYAngst",
    "rlnCenteredCoordinateZAngst",
    "rlnAngleRot",
    "rlnAngleTilt",
    "rlnAnglePsi",
    "rlnOpticsGroup",
    "rlnClassNumber",
    "rlnMaxValueProbDistribution",
}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    work = tmp_path_factory.mktemp("predict")
    project = make_user_project(work / "project", particles=6)
    dataset = work / "particles.zarr"
    argv = [str(project.copick_config), "--format", "copick", "--copick-object", "blobs"]
    assert cryoengine(["import-particles", *argv, "--copick-voxel-spacing", "7.84", "-o", str(dataset)]) == 0
    checkpoint = write_untrained_checkpoint(work / "model.ckpt")
    out = work / "results"
    argv = ["--checkpoint", str(checkpoint), "--dataset", str(dataset), "-o", str(out)]
    assert predict([*argv, "--tilt-range", "-60", "60"]) == 0
    return project, dataset, checkpoint, out


def _correlation(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_star_has_relion5_columns_and_the_original_coordinates(imported):
    project, dataset, _, out = imported
    star = starfile.read(out / "particles.star", always_dict=True)
    particles, optics = star["particles"], star["optics"]
    assert RELION5_COLUMNS <= set(particles.columns)
    assert float(optics["rlnTomoTiltSeriesPixelSize"].iloc[0]) == pytest.approx(USER_VOXEL_A)
    assert set(particles["rlnClassNumber"]) == {1}
    assert np.all(
        (particles["rlnMaxValueProbDistribution"] > 0) & (particles["rlnMaxValueProbDistribution"] <= 1)
    )
    # The refined centres stay within a couple of voxels of the picked ones (980 Å tomogram, centred Å).
    truth_xyz = project.placements.centre_zyx_vox[:, ::-1] * 10.0 - 490.0
    centred = particles[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy()
    assert np.abs(centred - truth_xyz).max() < 25.0
    pixels = particles[[f"rlnCoordinate{a}" for a in "XYZ"]].to_numpy()
    np.testing.assert_allclose(pixels * USER_VOXEL_A, centred + 490.0, atol=1e-3)


def test_averages_have_their_voxel_and_look_like_the_map(imported):
    project, _, _, out = imported
    results = json.loads((out / "predictions.json").read_text())
    model_path, source_path = results["classes"]["1"]["averages"]
    with mrcfile.open(model_path) as mrc:
        average, model_voxel = mrc.data.copy(), float(mrc.voxel_size.x)
    with mrcfile.open(source_path) as mrc:
        source_shape, source_voxel = mrc.data.shape, float(mrc.voxel_size.x)
    assert model_voxel == pytest.approx(9.996, abs=1e-3) and average.shape == (BOX,) * 3
    assert source_voxel == pytest.approx(USER_VOXEL_A, rel=2e-3) and source_shape == (41,) * 3
    anchor = results["classes"]["1"]["anchor_index"]
    reference = np.zeros((BOX,) * 3)
    reference[4:28, 4:28, 4:28] = project.reference
    expected = rotate_volume(reference, project.placements.rotation[anchor])
    assert _correlation(average, expected) > 0.6  # 0.84 measured (CTF-filtered, protein bright)


def test_copick_picks_per_class(imported):
    project, _, _, out = imported
    table = CopickProject(project.copick_config).read_picks("blobs", user_id="aptvit", session_id="class1")
    assert len(table.particles) == 6
    assert json.loads((out / "predictions.json").read_text())["copick_picks"]


def test_checkpoint_mismatch_is_one_clear_line(imported, tmp_path, capsys):
    _, dataset, _, _ = imported
    for box, voxel, message in ((24, 10.0, "trained on box 24"), (BOX, 7.84, "trained at 7.84 Å/voxel")):
        checkpoint = write_untrained_checkpoint(tmp_path / f"{box}_{voxel}.ckpt", box=box, voxel_size_A=voxel)
        argv = ["--checkpoint", str(checkpoint), "--dataset", str(dataset), "-o", str(tmp_path / "out")]
        assert predict(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("aptvit.predict: error:") and message in err[0]
    assert open_dataset(dataset).voxel_size_A == pytest.approx(9.996, abs=1e-3)  # within 0.2 % of 10 Å


def test_poses_against_the_average_match_the_truth(imported):
    project, _, _, out = imported
    star = starfile.read(out / "particles.star", always_dict=True)["particles"]
    angles = star[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy().T
    estimated = relion_euler_deg_to_rotation(*angles)
    anchor = json.loads((out / "predictions.json").read_text())["classes"]["1"]["anchor_index"]
    truth = project.placements.rotation
    # The average is in the anchor's frame: particle i = R_i R_anchorᵀ · average.
    relative = truth @ truth[anchor].T
    cosine = (np.trace(np.swapaxes(estimated, 1, 2) @ relative, axis1=1, axis2=2) - 1) / 2
    error_deg = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    assert error_deg.max() < 15.0  # 1.9-5.8° measured with the ±60° wedge compensated


def test_two_classes_give_two_averages_and_picks_sets(imported, tmp_path):
    project, dataset, checkpoint, _ = imported
    out = tmp_path / "two"
    argv = ["--checkpoint", str(checkpoint), "--dataset", str(dataset), "-o", str(out), "--classes", "2"]
    assert predict([*argv, "--global-step-deg", "30", "--rounds", "0"]) == 0
    star = starfile.read(out / "particles.star", always_dict=True)["particles"]
    assert set(star["rlnClassNumber"]) == {1, 2}
    assert len(list((out / "averages").glob("class*_*.mrc"))) == 4
    picks = json.loads((out / "predictions.json").read_text())["copick_picks"]
    assert {json.loads(Path(p).read_text())["session_id"] for p in picks} == {"class1", "class2"}


def test_pretraining_refuses_an_observed_dataset(imported):
    _, dataset, _, _ = imported
    data = SubtomogramDataModule([str(dataset)], batch_size=2, num_workers=0)
    with pytest.raises(ValueError, match="holds observed particles"):
        data.setup("fit")
