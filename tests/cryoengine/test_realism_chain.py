"""Realism effects in the imaging chain: off = the chain as it was; on = deterministic and ablatable."""

from __future__ import annotations

import copy
import hashlib
import inspect

import numpy as np
import pytest
from test_simulate import CONFIG

from cryoengine import stages
from cryoengine.config import validate_config
from cryoengine.formats.motif_list import read_motif_list
from cryoengine.formats.mrc import read_volume
from cryoengine.physics import acquisition, background, deformation, ice
from cryoengine.physics.imaging import RealismSettings
from cryoengine.physics.placement import Placements, density_to_support_mask, render_label_map
from cryoengine.store.particle_set import ParticleSet

# sha256 of the helix tomogram 0 arrays of test_simulate's CONFIG, recorded at commit 6ff7a66, before the
# realism effects were wired in (Linux x86-64, numpy 2, scipy pocketfft, ASTRA CPU).
IDEALISED_SHA256 = "d0ad775a1a228dbe9c317dfd54c5871b163e68ac6f379935ee0f65a89e325cc2"
ARRAYS = ("clean", "noise", "noise_scale", "signal_variance", "rotation", "shift", "position", "defocus_um")

ALL_ON = {
    "optics": {"phase_flip": True, "astigmatism_max_um": 0.3},
    "sample": {
        **CONFIG["sample"],
        "touching_cores": True,
        "ice": {"enabled": True},
        "background": {"enabled": True, "volume_fraction": 0.05},
    },
    "acquisition": {
        "misalignment": {"enabled": True},
        "motion_blur": {"enabled": True},
        "defocus_estimate": {"enabled": True},
        "detector": {"enabled": True},
    },
    "variety": {"deformation": {"enabled": True}, "b_factor": {"enabled": True}},
    "export": {"tomograms": True},
}


def _config(**overrides):
    data = copy.deepcopy(CONFIG)
    data.update(copy.deepcopy(overrides))
    return validate_config(data)


@pytest.fixture(scope="module")
def densities(tmp_path_factory):
    work = tmp_path_factory.mktemp("realism_density")
    config = _config()
    return {c: stages.density(config, c, work / f"{c}.mrc") for c in config.classes}


def _simulate(config, densities, path, tomogram=0):
    return ParticleSet.load(stages.simulate_tomogram(config, "helix", tomogram, densities, path))


def _digest(particles):
    digest = hashlib.sha256()
    for name in ARRAYS:
        digest.update(np.ascontiguousarray(getattr(particles, name)).tobytes())
    return digest.hexdigest()


def test_with_every_effect_off_the_chain_gives_the_bytes_it_gave_before(densities, tmp_path):
    assert _config().realism_settings() == RealismSettings()
    assert _digest(_simulate(_config(), densities, tmp_path / "t0.npz")) == IDEALISED_SHA256


def test_with_every_effect_on_the_same_seed_gives_the_same_bytes(densities, tmp_path):
    config = _config(**ALL_ON)
    first = _simulate(config, densities, tmp_path / "a" / "t0.npz")
    again = _simulate(config, densities, tmp_path / "b" / "t0.npz")
    assert _digest(first) == _digest(again) != IDEALISED_SHA256
    assert np.all(np.isfinite(first.clean)) and first.clean.std() > 0
    assert _digest(first) != _digest(_simulate(config, densities, tmp_path / "c" / "t1.npz", tomogram=1))
    for name in ("tomogram", "labels"):
        a, voxel_A = read_volume(tmp_path / "a" / f"t0.{name}.mrc")
        b, _ = read_volume(tmp_path / "b" / f"t0.{name}.mrc")
        assert a.tobytes() == b.tobytes() and voxel_A == config.voxel_size_A
        assert a.shape == tuple(config.sample.slab_shape_zyx)
    first_table, again_table = (read_motif_list(tmp_path / d / "t0.motifs.star") for d in "ab")
    assert first_table.equals(again_table)  # the file's header carries the time of writing


def test_the_motif_list_holds_every_particle_and_crowder_with_its_pose(densities, tmp_path):
    config = _config(**ALL_ON)
    particles = _simulate(config, densities, tmp_path / "t0.npz")
    assert particles.attrs["provenance"]["tomogram"]["ground_truth"] == str(tmp_path / "t0.motifs.star")
    motifs = read_motif_list(tmp_path / "t0.motifs.star")
    targets = motifs[motifs["cryoengineRole"] == "target"]
    crowders = motifs[motifs["cryoengineRole"] == "crowder"]
    assert (
        len(targets) == len(particles.clean)
        and len(crowders) == particles.attrs["provenance"]["tomogram"]["crowders"]
    )
    assert set(targets["cryoengineClass"]) == {"helix"} and set(crowders["cryoengineClass"]) <= {"blob"}
    centre = targets[["rlnCoordinateZ", "rlnCoordinateY", "rlnCoordinateX"]].to_numpy()
    np.testing.assert_allclose(centre, particles.position, atol=1e-5)
    np.testing.assert_allclose(
        targets[["cryoenginePositionZAngst", "rlnCoordinateZ"]].to_numpy() @ [1, 0],
        targets["rlnCoordinateZ"].to_numpy() * config.voxel_size_A,
        atol=1e-4,
    )
    matrices = targets[[c for c in motifs.columns if c.startswith("cryoengineRotation")]].to_numpy()
    np.testing.assert_allclose(matrices.reshape(-1, 3, 3), particles.rotation, atol=1e-5)
    b_factor = motifs["cryoengineBFactorAngst2"].to_numpy()
    assert np.all((b_factor >= 0) & (b_factor <= 1000)) and b_factor.std() > 0
    labels, _ = read_volume(tmp_path / "t0.labels.mrc")
    assert set(np.unique(labels)) <= {0.0, 1.0, 2.0} and np.count_nonzero(labels == 2.0) > 0  # helix = 2


def test_calibrated_set_and_class_group_record_the_motif_lists(densities, tmp_path):
    config = _config()
    tomograms = [
        stages.simulate_tomogram(config, "helix", t, densities, tmp_path / f"t{t}.npz") for t in (0, 1)
    ]
    calibrated = ParticleSet.load(stages.calibrate_noise(config, "helix", tomograms, tmp_path / "helix.npz"))
    assert calibrated.attrs["ground_truth"] == [str(tmp_path / f"t{t}.motifs.star") for t in (0, 1)]
    group = stages.shard(config, "helix", tmp_path / "helix.npz", tmp_path / "dataset.zarr")
    import zarr

    assert zarr.open_group(str(group), mode="r").attrs["ground_truth"] == calibrated.attrs["ground_truth"]


EFFECTS = {
    "ice": {"sample": {**CONFIG["sample"], "ice": {"enabled": True}}},
    "background": {"sample": {**CONFIG["sample"], "background": {"enabled": True, "volume_fraction": 0.05}}},
    "misalignment": {"acquisition": {"misalignment": {"enabled": True}}},
    "motion_blur": {"acquisition": {"motion_blur": {"enabled": True}}},
    "detector": {"acquisition": {"detector": {"enabled": True}}},
    "defocus_estimate": {
        "optics": {"phase_flip": True},
        "acquisition": {"defocus_estimate": {"enabled": True, "sigma_um": 0.3}},
    },
    "deformation": {"variety": {"deformation": {"enabled": True}}},
    "b_factor": {"variety": {"b_factor": {"enabled": True}}},
}


@pytest.mark.parametrize("effect", sorted(EFFECTS))
def test_each_effect_alone_changes_the_signal_and_leaves_the_noise_and_poses(effect, densities, tmp_path):
    baseline_overrides = {"optics": {"phase_flip": True}} if effect == "defocus_estimate" else {}
    off = _simulate(_config(**baseline_overrides), densities, tmp_path / "off.npz")
    on = _simulate(_config(**EFFECTS[effect]), densities, tmp_path / "on.npz")
    assert not np.array_equal(off.clean, on.clean)
    assert np.array_equal(off.noise, on.noise)  # the detector-noise draws and tilts are untouched
    assert np.array_equal(off.rotation, on.rotation) and np.array_equal(off.position, on.position)
    assert np.array_equal(off.defocus_um, on.defocus_um)


def test_ablating_one_effect_leaves_the_others_draws(densities, tmp_path):
    both = _config(**{"variety": {"deformation": {"enabled": True}, "b_factor": {"enabled": True}}})
    only_b = _config(**{"variety": {"b_factor": {"enabled": True}}})
    _simulate(both, densities, tmp_path / "both.npz")
    _simulate(only_b, densities, tmp_path / "only_b.npz")
    b_both = read_motif_list(tmp_path / "both.motifs.star")["cryoengineBFactorAngst2"]
    b_only = read_motif_list(tmp_path / "only_b.motifs.star")["cryoengineBFactorAngst2"]
    np.testing.assert_array_equal(b_both.to_numpy(), b_only.to_numpy())


def test_the_realism_config_defaults_are_the_physics_defaults():
    def defaults(function):
        return {
            n: p.default
            for n, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    config = _config()
    misalignment = config.acquisition.misalignment
    assert defaults(acquisition.draw_tilt_misalignment) == {
        "shift_sigma_min_A": misalignment.shift_sigma_min_A,
        "shift_sigma_max_A": misalignment.shift_sigma_max_A,
        "rotation_sigma_min_deg": misalignment.rotation_sigma_min_deg,
        "rotation_sigma_max_deg": misalignment.rotation_sigma_max_deg,
    }
    assert (
        defaults(acquisition.draw_motion_blur)["max_length_A"] == config.acquisition.motion_blur.max_length_A
    )
    assert (
        defaults(acquisition.draw_defocus_estimate)["sigma_um"]
        == config.acquisition.defocus_estimate.sigma_um
    )
    field = defaults(deformation.draw_displacement_field)
    assert field["amplitude_A"] == config.variety.deformation.amplitude_A
    assert field["min_wavelength_A"] == config.variety.deformation.min_wavelength_A
    assert defaults(deformation.draw_b_factor) == {
        "min_A2": config.variety.b_factor.min_A2,
        "max_A2": config.variety.b_factor.max_A2,
    }
    drawn = defaults(background.draw_structural_background)
    assert drawn["volume_fraction"] == config.sample.background.volume_fraction
    assert drawn["correlation_length_A"] == config.sample.background.correlation_length_A
    assert ice.ICE_DENSITY_G_PER_CM3 == config.sample.ice.density_g_per_cm3
    assert ice.INELASTIC_MEAN_FREE_PATH_300KV_A == config.sample.ice.inelastic_mean_free_path_A


def test_realism_settings_of_the_production_config_are_all_on():
    from conftest import REPO_ROOT

    from cryoengine.config import load_config

    config = load_config(REPO_ROOT / "config.yaml")
    effects = config.realism_settings()
    assert effects.ice_density_g_per_cm3 and effects.inelastic_mean_free_path_A
    assert effects.background_fraction > 0 and effects.touching_cores and effects.varies_particles
    assert effects.misaligns and effects.motion_blur_max_A > 0 and effects.detector_pixel_A == 10.0
    assert effects.defocus_error_sigma_um > 0 and config.optics.astigmatism_max_um > 0
    assert not config.optics.phase_flip  # decision (a): no CTF correction by default


def test_a_deformation_longer_than_the_box_is_refused():
    with pytest.raises(ValueError, match="min_wavelength_A"):
        _config(variety={"deformation": {"enabled": True, "min_wavelength_A": 500.0}})


def test_label_map_marks_each_rotated_support_with_its_class():
    grid = np.indices((9, 9, 9)) - 4
    rod = ((np.abs(grid[0]) <= 3) & (np.abs(grid[1]) <= 1) & (np.abs(grid[2]) <= 1)).astype(np.float32)
    mask = density_to_support_mask(rod, 0.5, 0)
    quarter = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # z → x
    placements = Placements(
        np.array([0, 1]), np.array([[8.0, 8.0, 8.0], [8.0, 20.0, 8.0]]), np.stack([np.eye(3), quarter])
    )
    labels = render_label_map((17, 30, 17), [mask, mask], placements)
    assert labels.dtype == np.int16
    first, second = np.argwhere(labels == 1), np.argwhere(labels == 2)
    assert len(first) == len(second) == mask.sum()
    assert np.ptp(first[:, 0]) == 6 and np.ptp(first[:, 2]) == 2  # along z
    assert np.ptp(second[:, 2]) == 6 and np.ptp(second[:, 0]) == 2  # turned onto x
