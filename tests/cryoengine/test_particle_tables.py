"""Particle tables: every coordinate convention read back to the same centres (and the wrong one fails)."""

import numpy as np
import pandas as pd
import pytest
import starfile

from cryoengine.formats.mrc import TomogramGeometry
from cryoengine.formats.particle_tables import (
    TABLE_COLUMNS,
    ParticleTableError,
    read_csv_particles,
    read_relion5_particles,
    read_warp_particles,
    write_relion5_particles,
)
from cryoengine.physics.rotation import random_rotations, rotation_to_relion_euler_deg

# Tomogram of 30 × 64 × 50 voxels (z, y, x) at 7.84 Å: non-cubic, so an x/z swap or a centre error shows.
SHAPE_ZYX = (30, 64, 50)
VOXEL_A = 7.84
CENTRES_ZYX_A = np.array([[40.0, 300.0, 120.5], [180.2, 77.7, 333.3], [101.0, 450.0, 40.0]])
ROTATIONS = random_rotations(3, np.random.default_rng(0))


def _geometry():
    return {"TS_01": TomogramGeometry(SHAPE_ZYX, VOXEL_A, "TS_01.mrc")}


def _relion_frame(centred: bool, origin_zyx_A=(0.0, 0.0, 0.0)) -> pd.DataFrame:
    rot, tilt, psi = rotation_to_relion_euler_deg(ROTATIONS)
    origin_zyx_A = np.asarray(origin_zyx_A)
    coordinate_zyx_A = CENTRES_ZYX_A + origin_zyx_A  # RELION: particle = coordinate − origin
    frame = {"rlnTomoName": ["TS_01"] * 3}
    if centred:
        centred_xyz = (coordinate_zyx_A - np.array(SHAPE_ZYX) * VOXEL_A / 2)[:, ::-1]
        for k, axis in enumerate("XYZ"):
            frame[f"rlnCenteredCoordinate{axis}Angst"] = centred_xyz[:, k]
    else:
        for k, axis in enumerate("XYZ"):
            frame[f"rlnCoordinate{axis}"] = coordinate_zyx_A[:, ::-1][:, k] / VOXEL_A
    for k, axis in enumerate("XYZ"):
        frame[f"rlnOrigin{axis}Angst"] = origin_zyx_A[::-1][k]
    frame.update({"rlnAngleRot": rot, "rlnAngleTilt": tilt, "rlnAnglePsi": psi, "rlnOpticsGroup": [1, 1, 1]})
    return pd.DataFrame(frame)


def _write(tmp_path, frame, pixel_size=VOXEL_A, name="particles.star"):
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnTomoTiltSeriesPixelSize": [pixel_size]})
    path = tmp_path / name
    starfile.write({"optics": optics, "particles": frame}, path, overwrite=True)
    return path


def test_table_columns_and_relion5_centred_coordinates(tmp_path):
    path = _write(tmp_path, _relion_frame(centred=True, origin_zyx_A=np.array([3.0, -2.0, 5.5])))
    table = read_relion5_particles(path, tomograms=_geometry())
    assert tuple(table.particles.columns) == TABLE_COLUMNS
    np.testing.assert_allclose(table.centres_zyx_A(), CENTRES_ZYX_A, atol=1e-4)
    np.testing.assert_allclose(table.rotation, ROTATIONS, atol=1e-5)
    assert list(table.original.columns)[:1] == ["rlnTomoName"]
    np.testing.assert_allclose(table.particles["tomogram_size_x_A"], SHAPE_ZYX[2] * VOXEL_A)


def test_centred_read_as_corner_fails(tmp_path):
    """The same numbers taken as corner coordinates (no size / 2) miss the particles by half a tomogram."""
    frame = _relion_frame(centred=True)
    wrong = frame.rename(columns={f"rlnCenteredCoordinate{a}Angst": f"rlnCoordinate{a}" for a in "XYZ"})
    for axis in "XYZ":
        wrong[f"rlnCoordinate{axis}"] /= VOXEL_A
    table = read_relion5_particles(_write(tmp_path, wrong), tomograms=_geometry())
    error = np.abs(table.centres_zyx_A() - CENTRES_ZYX_A).max(axis=0)
    np.testing.assert_allclose(error, np.array(SHAPE_ZYX) * VOXEL_A / 2, rtol=1e-6)


def test_relion_pixel_coordinates_and_wrong_unit_fails(tmp_path):
    table = read_relion5_particles(_write(tmp_path, _relion_frame(centred=False)))
    np.testing.assert_allclose(table.centres_zyx_A(), CENTRES_ZYX_A, atol=1e-4)
    np.testing.assert_allclose(table.particles["coordinate_pixel_size_A"], VOXEL_A)
    as_angstrom = read_relion5_particles(_write(tmp_path, _relion_frame(centred=False), pixel_size=1.0))
    assert np.abs(as_angstrom.centres_zyx_A() - CENTRES_ZYX_A).max() > 100


def test_x_z_swap_fails(tmp_path):
    """Axis order: RELION's X is our last axis; reading X as z breaks the centres."""
    frame = _relion_frame(centred=False).rename(
        columns={"rlnCoordinateX": "rlnCoordinateZ", "rlnCoordinateZ": "rlnCoordinateX"}
    )
    table = read_relion5_particles(_write(tmp_path, frame))
    assert np.abs(table.centres_zyx_A() - CENTRES_ZYX_A).max() > 50


def test_origin_sign(tmp_path):
    """RELION's particle is at coordinate − origin; adding the origin instead would be off by 2·origin."""
    origin = np.array([10.0, -20.0, 30.0])
    table = read_relion5_particles(_write(tmp_path, _relion_frame(centred=False, origin_zyx_A=origin)))
    np.testing.assert_allclose(table.centres_zyx_A(), CENTRES_ZYX_A, atol=1e-4)
    assert not np.allclose(table.centres_zyx_A(), CENTRES_ZYX_A + 2 * origin, atol=1.0)


def test_tomograms_star_gives_size_and_pixel(tmp_path):
    tomograms = pd.DataFrame(
        {
            "rlnTomoName": ["TS_01"],
            "rlnTomoTiltSeriesPixelSize": [VOXEL_A / 2],
            "rlnTomoTomogramBinning": [2.0],
            **{f"rlnTomoSize{a}": [2 * n] for a, n in zip("ZYX", SHAPE_ZYX, strict=True)},
        }
    )
    tomograms_star = tmp_path / "tomograms.star"
    starfile.write({"global": tomograms}, tomograms_star)
    table = read_relion5_particles(
        _write(tmp_path, _relion_frame(centred=True)), tomograms_star=tomograms_star
    )
    np.testing.assert_allclose(table.centres_zyx_A(), CENTRES_ZYX_A, atol=1e-4)


def test_warp_and_csv(tmp_path):
    xyz_pix = CENTRES_ZYX_A[:, ::-1] / VOXEL_A
    warp = pd.DataFrame(
        {
            "rlnMicrographName": ["TS_01.tomostar", "TS_01_7.84Apx.mrc", "tomo/TS_01.tomostar"],
            **{f"rlnCoordinate{a}": xyz_pix[:, k] for k, a in enumerate("XYZ")},
        }
    )
    path = tmp_path / "warp.star"
    starfile.write({"particles": warp}, path)
    table = read_warp_particles(path, tomograms=_geometry())
    assert set(table.particles["tomogram"]) == {"TS_01"}
    np.testing.assert_allclose(table.centres_zyx_A(), CENTRES_ZYX_A, atol=1e-4)
    assert table.rotation is None

    csv = tmp_path / "particles.csv"
    pd.DataFrame(
        {"tomogram": "TS_01", "x": xyz_pix[:, 0], "y": xyz_pix[:, 1], "z": xyz_pix[:, 2], "label": "a"}
    ).to_csv(csv, index=False)
    pixels = read_csv_particles(csv, unit="pixel", tomograms=_geometry())
    np.testing.assert_allclose(pixels.centres_zyx_A(), CENTRES_ZYX_A, atol=1e-4)
    assert "label" in pixels.original
    angstrom = read_csv_particles(csv, unit="angstrom", tomograms=_geometry())  # the wrong unit for this file
    assert np.abs(angstrom.centres_zyx_A() - CENTRES_ZYX_A).max() > 100


def test_write_relion5_round_trip(tmp_path):
    table = read_relion5_particles(_write(tmp_path, _relion_frame(centred=True)), tomograms=_geometry())
    poses = random_rotations(3, np.random.default_rng(5))
    out = write_relion5_particles(
        tmp_path / "out.star",
        table,
        tilt_series_pixel_size_A=VOXEL_A,
        rotation=poses,
        class_number=[1, 2, 1],
        confidence=[0.9, 0.5, 0.7],
        optics={"rlnVoltage": 300.0},
    )
    blocks = starfile.read(out, always_dict=True)
    particles = blocks["particles"]
    for column in (
        "rlnTomoName",
        "rlnCenteredCoordinateXAngst",
        "rlnCenteredCoordinateYAngst",
        "rlnCenteredCoordinateZAngst",
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnOriginXAngst",
        "rlnClassNumber",
        "rlnMaxValueProbDistribution",
        "rlnOpticsGroup",
    ):
        assert column in particles
    assert blocks["optics"]["rlnTomoTiltSeriesPixelSize"][0] == pytest.approx(VOXEL_A)
    back = read_relion5_particles(out, tomograms=_geometry())
    np.testing.assert_allclose(back.centres_zyx_A(), CENTRES_ZYX_A, atol=1e-4)
    np.testing.assert_allclose(back.rotation, poses, atol=1e-5)


def test_bad_input_one_line_each(tmp_path):
    frame = _relion_frame(centred=True).drop(columns=[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"])
    with pytest.raises(ParticleTableError, match=r"particles.star: no coordinates"):
        read_relion5_particles(_write(tmp_path, frame))
    with pytest.raises(ParticleTableError, match=r"'TS_01' \(rlnTomoName\) has no known size"):
        read_relion5_particles(_write(tmp_path, _relion_frame(centred=True)))
    zero = {"TS_01": TomogramGeometry(SHAPE_ZYX, 0.0, "TS_01.mrc")}
    with pytest.raises(ParticleTableError, match=r"pixel size .* missing or 0 .* header of TS_01.mrc"):
        read_relion5_particles(_write(tmp_path, _relion_frame(centred=False), pixel_size=0.0), tomograms=zero)
    with pytest.raises(ParticleTableError, match="does not exist"):
        read_relion5_particles(tmp_path / "missing.star")
    with pytest.raises(ParticleTableError, match="no rlnTomoName"):
        read_relion5_particles(_write(tmp_path, _relion_frame(centred=False).drop(columns=["rlnTomoName"])))
