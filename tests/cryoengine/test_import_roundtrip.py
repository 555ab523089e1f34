"""Round trip against the generator: a CryoEngine tomogram re-sampled to 7.84 Å and imported back at 10 Å.

A small clean tomogram is simulated at 10 Å (placement, rendering, projection, CTF and exposure, WBP), its
own 32³ subtomograms are cut with :func:`cryoengine.physics.extraction.extract_subtomograms`, and the
tomogram is Fourier-resampled to 7.84 Å (98 → 125 voxels per axis: 980 Å either way) and written as an MRC
with the particles in a RELION 5 STAR (centred Å, written as :mod:`cryoengine.formats.relion_export` does)
and as a copick project: :func:`examples.make_user_project.make_user_project`, the README's example.
Importing either must give back the same boxes, shifts and rotations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile
from particle_factory import BOX as FACTORY_BOX
from particle_factory import LEVELS, make_particles

from cryoengine.formats.copick_layout import CopickLayoutError, CopickProject
from cryoengine.formats.mrc import TomogramGeometry, mrc_tomogram_geometry, open_mrc_tomogram
from cryoengine.formats.particle_tables import ParticleTableError, read_relion5_particles
from cryoengine.formats.relion_export import export_class
from cryoengine.physics.box_cutting import ParticleOutsideTomogramError, cut_subtomograms
from cryoengine.physics.extraction import extract_subtomograms
from cryoengine.store import write_class_group
from examples.make_user_project import BOX, USER_VOXEL_A, VOXEL_A, make_user_project


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    project = make_user_project(tmp_path_factory.mktemp("import"))
    placements, tomogram = project.placements, project.tomogram
    boxes, _ = extract_subtomograms(tomogram, placements.centre_zyx_vox, BOX)
    return (
        placements,
        tomogram,
        boxes,
        project.star_path,
        project.mrc_path,
        project.copick_config,
        project.specimen,
    )


def _check_against_generator(cut, placements, tomogram):
    """Check >= 0.95 correlation with the generator's 10 Å boxes at the same centres, and the shifts."""
    # The effective voxel is 9.996 Å, so a centre near a half voxel may round to the neighbouring box: the
    # generator's box is cut at the importer's box centre (at most 0.03 voxel from a 10 Å voxel).
    own, _ = extract_subtomograms(tomogram, np.round(cut.box_centre_zyx_A / VOXEL_A), BOX)
    correlation = _correlations(cut.volumes, own)
    assert correlation.min() >= 0.95, correlation
    located_A = cut.box_centre_zyx_A + cut.shift_zyx_vox * cut.plan.effective_voxel_size_A
    np.testing.assert_allclose(located_A, placements.centre_zyx_vox * VOXEL_A, atol=1e-6)
    _, generator_shift = extract_subtomograms(tomogram, placements.centre_zyx_vox, BOX)
    same_box = np.all(np.abs(generator_shift) < 0.45, axis=1)
    # 98 voxels × (10 / 9.996 − 1) ≤ 0.04 voxel of grid mismatch across the tomogram.
    np.testing.assert_allclose(cut.shift_zyx_vox[same_box], generator_shift[same_box], atol=0.05)
    assert not cut.padded.any()


def _correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def test_relion5_star_and_mrc_give_the_generators_subtomograms(generated):
    placements, tomogram, _, star_path, mrc_path, _, _ = generated
    table = read_relion5_particles(star_path, tomograms={"TS_01": mrc_tomogram_geometry(mrc_path)})
    np.testing.assert_allclose(table.centres_zyx_A(), placements.centre_zyx_vox * VOXEL_A, atol=1e-3)
    np.testing.assert_allclose(table.rotation, placements.rotation, atol=1e-6)
    with open_mrc_tomogram(mrc_path) as (data, geometry):
        cut = cut_subtomograms(
            data, geometry.voxel_size_A, table.centres_zyx_A(), BOX, VOXEL_A, standardise=False
        )
    assert abs(cut.plan.effective_voxel_size_A - VOXEL_A) / VOXEL_A < 2e-3
    _check_against_generator(cut, placements, tomogram)


def test_contrast_convention_protein_dark(generated):
    """Simulated particles are dark (negative against their positive potential), as in real tomograms."""
    placements, _, _, star_path, mrc_path, _, specimen = generated
    table = read_relion5_particles(star_path, tomograms={"TS_01": mrc_tomogram_geometry(mrc_path)})
    potential, _ = extract_subtomograms(specimen, placements.centre_zyx_vox, BOX)
    with open_mrc_tomogram(mrc_path) as (data, geometry):
        dark = cut_subtomograms(data, geometry.voxel_size_A, table.centres_zyx_A(), BOX, VOXEL_A)
        bright = cut_subtomograms(
            data, geometry.voxel_size_A, table.centres_zyx_A(), BOX, VOXEL_A, invert_contrast=True
        )
    # Low-passed comparison: the CTF reverses the low frequencies; its higher-frequency lobes alternate.
    assert np.all(_correlations(dark.volumes, potential) < -0.3)
    assert np.all(_correlations(bright.volumes, potential) > 0.3)


def test_copick_project_gives_the_generators_subtomograms(generated):
    placements, tomogram, _, _, _, config, _ = generated
    project = CopickProject(config)
    table = project.read_picks("blobs", runs=["TS_01"])
    np.testing.assert_allclose(table.rotation, placements.rotation, atol=1e-12)
    array, geometry = project.open_tomogram("TS_01", USER_VOXEL_A, "wbp")
    cut = cut_subtomograms(
        array, geometry.voxel_size_A, table.centres_zyx_A(), BOX, VOXEL_A, standardise=False
    )
    _check_against_generator(cut, placements, tomogram)
    with pytest.raises(CopickLayoutError, match="object 'ribosome'"):
        project.read_picks("ribosome")


def test_wrong_conventions_lose_the_particles(generated):
    _, _, boxes, star_path, mrc_path, _, _ = generated
    table = read_relion5_particles(star_path, tomograms={"TS_01": mrc_tomogram_geometry(mrc_path)})
    centres = table.centres_zyx_A()
    with open_mrc_tomogram(mrc_path) as (data, geometry):
        # x/z swapped; pixels of 7.84 Å taken as 10 Å pixels; corner coordinates taken as centred.
        for wrong in (centres[:, ::-1], centres * USER_VOXEL_A / VOXEL_A):
            cut = cut_subtomograms(
                data, geometry.voxel_size_A, wrong, BOX, VOXEL_A, standardise=False, edge="pad"
            )
            assert np.median(_correlations(cut.volumes, boxes)) < 0.5
        with pytest.raises(ParticleOutsideTomogramError, match="lies outside the tomogram"):
            cut_subtomograms(data, geometry.voxel_size_A, centres - 490.0, BOX, VOXEL_A)


def test_bad_input(generated, tmp_path):
    _, _, _, star_path, mrc_path, _, _ = generated
    with pytest.raises(ParticleTableError, match="'TS_01' .* no known size"):
        read_relion5_particles(star_path)  # tomogram named in the STAR but not given
    outside = pd.DataFrame(
        {
            "rlnTomoName": ["TS_01"],
            "rlnCoordinateX": [5000.0],
            "rlnCoordinateY": [10.0],
            "rlnCoordinateZ": [10.0],
        }
    )
    path = tmp_path / "outside.star"
    starfile.write({"particles": outside}, path)
    table = read_relion5_particles(path, tomograms={"TS_01": mrc_tomogram_geometry(mrc_path)})
    with open_mrc_tomogram(mrc_path) as (data, geometry):
        with pytest.raises(ParticleOutsideTomogramError, match="particle 0 .* lies outside the tomogram"):
            cut_subtomograms(data, geometry.voxel_size_A, table.centres_zyx_A(), BOX, VOXEL_A)


def test_reads_back_what_cryoengine_export_writes(tmp_path):
    """rlnCenteredCoordinate*Angst and rlnOrigin*Angst of export_class read back to the ground truth."""

    slab_shape_zyx = (31, 100, 121)  # odd sizes: the centre is size / 2, not size // 2
    attrs = {
        "voxel_size_A": 12.5,
        "box": FACTORY_BOX,
        "snr_levels": LEVELS,
        "noise_realisations": 2,
        "class_labels": ["a"],
        "tilt_scheme": {
            "min_angle_deg": -60.0,
            "max_angle_deg": 60.0,
            "step_deg": 6.0,
            "order": "dose-symmetric",
            "group_size": 2,
            "dose_per_tilt_e_per_A2": 3.0,
        },
        "optics": {"voltage_kV": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.07},
        "sample": {"slab_shape_zyx": list(slab_shape_zyx)},
    }
    particles = make_particles(6, 4, "a")
    write_class_group(tmp_path / "ds.zarr", "a", particles, {}, attrs)
    _, star_path = export_class(tmp_path / "ds.zarr", "a", "clean", tmp_path / "out")
    names = {f"a_tomo{t:04d}" for t in particles.tomogram}
    geometry = {name: TomogramGeometry(slab_shape_zyx, 12.5, name) for name in names}
    table = read_relion5_particles(star_path, tomograms=geometry)
    np.testing.assert_allclose(table.centres_zyx_A(), particles.position * 12.5, atol=1e-3)
    np.testing.assert_allclose(table.rotation, particles.rotation, atol=1e-5)
