"""Export to RELION: MRC volumes and a STAR file that read back to the stored volumes and ground truth."""

from __future__ import annotations

import math

import mrcfile
import numpy as np
import pytest
import starfile
from particle_factory import BOX, LEVELS, make_particles

from cryoengine.formats.relion_export import UnknownSnrLevelError, export_class
from cryoengine.physics.rotation import relion_euler_deg_to_rotation
from cryoengine.store import ClassNotFoundError, write_class_group

VOXEL_A = 12.5
DATASET_ATTRS = {
    "voxel_size_A": VOXEL_A,
    "box": BOX,
    "snr_levels": LEVELS,
    "noise_realisations": 2,
    "class_labels": ["a", "b"],
    "tilt_scheme": {
        "min_angle_deg": -60.0,
        "max_angle_deg": 60.0,
        "step_deg": 6.0,
        "order": "dose-symmetric",
        "group_size": 2,
        "dose_per_tilt_e_per_A2": 3.0,
    },
    "optics": {"voltage_kV": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.07, "phase_flip": False},
    "sample": {"slab_shape_zyx": [30, 100, 120]},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "dataset.zarr"
    sets = {"a": make_particles(7, 0, "a"), "b": make_particles(5, 1, "b")}
    for class_id, particles in sets.items():
        write_class_group(path, class_id, particles, {"name": class_id}, DATASET_ATTRS, shard_size=3)
    return path, sets


@pytest.mark.parametrize(("snr", "level"), [("clean", None), (0.05, 1), ("0.01", 2), (math.inf, None)])
def test_export_round_trip_through_mrcfile_and_starfile(dataset, tmp_path, snr, level):
    path, sets = dataset
    particles = sets["b"]
    mrc_paths, star_path = export_class(path, "b", snr, tmp_path)

    tag = "clean" if level is None else f"snr{LEVELS[level]:g}"
    assert star_path == tmp_path / f"b_{tag}.star" and star_path.with_name(f"b_{tag}.star.json").is_file()
    star = starfile.read(star_path)
    optics, table = star["optics"], star["particles"]
    assert optics["rlnImagePixelSize"].tolist() == [VOXEL_A]
    assert optics["rlnImageSize"].tolist() == [BOX] and optics["rlnImageDimensionality"].tolist() == [3]
    assert len(table) == len(particles) == len(mrc_paths)

    expected = particles.clean if level is None else particles.noisy[:, level]
    for k, image_name in enumerate(table["rlnImageName"]):
        assert tmp_path / image_name == mrc_paths[k]
        with mrcfile.open(tmp_path / image_name) as mrc:
            assert mrc.data.dtype == np.float32
            np.testing.assert_array_equal(mrc.data, expected[k])
            assert mrc.voxel_size.x == pytest.approx(VOXEL_A)

    rotation = relion_euler_deg_to_rotation(table["rlnAngleRot"], table["rlnAngleTilt"], table["rlnAnglePsi"])
    np.testing.assert_allclose(rotation, particles.rotation, atol=1e-5)
    origin_xyz_A = table[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy()
    np.testing.assert_allclose(-origin_xyz_A[:, ::-1] / VOXEL_A, particles.shift, atol=1e-5)
    coordinate_xyz = table[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    np.testing.assert_allclose(coordinate_xyz[:, ::-1], particles.position - particles.shift, atol=1e-4)
    # RELION's re-centred coordinate (coordinate − origin / pixel size) is the particle centre.
    np.testing.assert_allclose(
        (coordinate_xyz - origin_xyz_A / VOXEL_A)[:, ::-1], particles.position, atol=1e-4
    )
    np.testing.assert_allclose(table["rlnDefocusU"], particles.defocus_um * 1e4, rtol=1e-6)
    assert table["rlnClassNumber"].tolist() == [2] * len(particles)
    assert table["rlnTomoName"].tolist() == [f"b_tomo{t:04d}" for t in particles.tomogram]


def test_origin_points_from_the_particle_back_to_the_box_centre(tmp_path):
    """A particle 0.4 voxel towards +x of its box centre has origin −0.4 voxel: RELION shifts by −origin."""
    particles = make_particles(1, 3, "a")
    particles.shift[:] = [0.0, 0.0, 0.4]
    particles.position[:] = [20.0, 30.0, 40.4]
    write_class_group(tmp_path / "ds.zarr", "a", particles, {}, DATASET_ATTRS)
    _, star_path = export_class(tmp_path / "ds.zarr", "a", "clean", tmp_path / "out")
    row = starfile.read(star_path)["particles"].iloc[0]
    assert row["rlnOriginXAngst"] == pytest.approx(-0.4 * VOXEL_A)
    assert row["rlnOriginYAngst"] == 0 and row["rlnOriginZAngst"] == 0
    assert (row["rlnCoordinateX"], row["rlnCoordinateY"], row["rlnCoordinateZ"]) == pytest.approx(
        (40, 30, 20)
    )


def test_unknown_snr_level_lists_the_available_ones(dataset, tmp_path):
    path, _ = dataset
    with pytest.raises(
        UnknownSnrLevelError, match=r"SNR level 0\.2 is not in .*available: clean, 0\.1, 0\.05, 0\.01"
    ):
        export_class(path, "a", 0.2, tmp_path / "out")
    with pytest.raises(UnknownSnrLevelError, match="'noisy' is not a number or 'clean'"):
        export_class(path, "a", "noisy", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_class_lists_the_available_ones(dataset, tmp_path):
    path, _ = dataset
    with pytest.raises(ClassNotFoundError, match=r"class 'c' is not in .*available: a, b"):
        export_class(path, "c", "clean", tmp_path / "out")


def test_relion5_star_carries_general_tomo_fields_and_a_3d_ctf_per_tomogram(dataset, tmp_path):
    path, sets = dataset
    particles = sets["a"]
    _, star_path = export_class(path, "a", 0.05, tmp_path)
    star = starfile.read(star_path, always_dict=True)
    assert int(star["general"]["rlnTomoSubTomosAre2DStacks"]) == 0
    optics = star["optics"]
    assert optics["rlnTomoTiltSeriesPixelSize"].tolist() == [VOXEL_A]
    assert optics["rlnTomoSubtomogramBinning"].tolist() == [1.0]
    assert optics["rlnCtfDataAreCtfPremultiplied"].tolist() == [0]
    table = star["particles"]
    centred_xyz_A = table[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy()
    box_centre_zyx = particles.position - particles.shift
    expected = (box_centre_zyx - np.array([30, 100, 120]) / 2)[:, ::-1] * VOXEL_A
    np.testing.assert_allclose(centred_xyz_A, expected, atol=1e-3)
    # one CTF volume per tomogram, zero in the missing wedge (beyond ±60° + one voxel), CTF on the slices
    assert table["rlnCtfImage"].nunique() == len(np.unique(particles.tomogram))
    with mrcfile.open(tmp_path / table["rlnCtfImage"].iloc[0]) as mrc:
        weight = mrc.data.copy()
    assert weight.shape == (BOX, BOX, BOX)
    frequency = np.arange(BOX) - BOX // 2
    kz, _, kx = np.meshgrid(frequency, frequency, frequency, indexing="ij")
    elevation_deg = np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))
    radius = np.hypot(kz, kx)
    wedge = (elevation_deg > 75) & (radius > 2)
    assert wedge.any() and np.all(weight[wedge] == 0)
    assert np.all(weight[(elevation_deg < 50) & (radius > 1)] != 0)
    assert weight[BOX // 2, BOX // 2, BOX // 2] == pytest.approx(-0.07, abs=1e-6)  # −sin(amplitude phase)


def test_export_refuses_to_overwrite_an_earlier_export_unless_forced(dataset, tmp_path):
    path, _ = dataset
    export_class(path, "a", "clean", tmp_path)
    with pytest.raises(FileExistsError, match=r"a_clean.star exists .* force"):
        export_class(path, "a", "clean", tmp_path)
    export_class(path, "a", "clean", tmp_path, force=True)
    export_class(path, "a", 0.1, tmp_path)  # another level beside it is fine
