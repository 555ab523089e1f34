"""The imaging stages end to end: ground-truth poses, calibrated SNR, determinism, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cryoengine import stages
from cryoengine.cli import main
from cryoengine.config import ConfigError, validate_config
from cryoengine.formats.mrc import read_volume
from cryoengine.physics.correlation import pearson_correlation
from cryoengine.physics.resampling import rotate_volume
from cryoengine.physics.rotation import octahedral_rotations
from cryoengine.store.particle_set import ParticleSet

CONFIG = {
    "box": 24,
    "density": {"resolution_A": 25, "oversampling": 2},
    "sample": {
        "slab_shape_zyx": [30, 60, 60],
        "tomograms_per_class": 2,
        "particles_per_tomogram": 3,
        "crowding_fraction": 0.02,
    },
    "tilt": {"step_deg": 6},
    "noise": {"snr_levels": [0.1, 0.05, 0.03, 0.01]},
    "classes": {
        "helix": {"kind": "phantom", "shape": "helix", "diameter_A": 150, "subunits": 8, "seed": 1},
        "blob": {"kind": "phantom", "shape": "blob", "diameter_A": 130, "subunits": 4, "seed": 2},
    },
}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    config = validate_config(CONFIG)
    work = tmp_path_factory.mktemp("simulate")
    densities = {c: stages.density(config, c, work / "density" / f"{c}.mrc") for c in config.classes}
    tomograms = [stages.simulate_tomogram(config, "helix", t, densities, work / f"t{t}.npz") for t in (0, 1)]
    calibrated = stages.calibrate_noise(config, "helix", tomograms, work / "helix.npz")
    return config, work, densities, tomograms, calibrated


def test_ground_truth_pose_identifies_the_particle(simulated):
    # particle = R · reference + shift. At underfocus the weak-phase image is −CTF ⊗ projected potential,
    # so particles are dark: the right pose correlates strongly *negatively*; the other 23 octahedral
    # orientations R·O barely correlate.
    _, _, densities, tomograms, _ = simulated
    reference, _ = read_volume(densities["helix"])
    particles = ParticleSet.load(tomograms[0])
    for clean, rotation, shift in zip(particles.clean, particles.rotation, particles.shift, strict=True):
        scores = [
            pearson_correlation(rotate_volume(reference, rotation @ o, shift), clean)
            for o in octahedral_rotations()
        ]
        assert scores[0] < -0.35
        assert -scores[0] - max(abs(s) for s in scores[1:]) > 0.3  # measured 0.42–0.68


def test_ground_truth_shift_is_sub_voxel_and_positions_lie_in_the_slab(simulated):
    config, _, _, tomograms, _ = simulated
    particles = ParticleSet.load(tomograms[1])
    assert np.all(np.abs(particles.shift) <= 0.5)
    half = config.box // 2
    assert np.all(particles.position >= half - 0.5)
    assert np.all(particles.position < np.array(config.sample.slab_shape_zyx) - half + 0.5)
    assert np.all(particles.tomogram == 1) and len(particles.clean) == 3
    assert config.optics.defocus_min_um <= particles.defocus_um[0] <= config.optics.defocus_max_um


def test_levels_mix_k_independent_realisations_at_one_class_blind_scale(simulated):
    config, _, _, tomograms, calibrated = simulated
    particles = ParticleSet.load(calibrated)
    assert particles.noisy.shape == (6, 4, 24, 24, 24)
    assert particles.noise.shape == (6, config.noise.realisations, 24, 24, 24) == (6, 2, 24, 24, 24)
    for tomogram in (0, 1):  # one α per tomogram, from the reference particle, not from the class
        scale = particles.noise_scale[particles.tomogram == tomogram]
        assert np.all(scale == scale[0]) and scale[0] > 0
    levels = np.array(config.noise.snr_levels)
    added = particles.noisy - particles.clean[:, None]
    for level, snr in enumerate(levels):
        expected = particles.noise_scale[:, None, None, None] / np.sqrt(snr) * particles.noise[:, level % 2]
        np.testing.assert_allclose(added[:, level], expected, rtol=1e-4, atol=1e-6)
    for a, b in zip(added[:, 0], added[:, 1], strict=True):  # levels 0 and 1: independent noise
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.1
    # the stored SNR is the particle's own: var(own signal) / var(added noise)
    own = np.concatenate([ParticleSet.load(t).signal_variance for t in tomograms])
    np.testing.assert_allclose(particles.snr, own[:, None] / added.var(axis=(2, 3, 4)), rtol=1e-4)
    assert particles.attrs["snr_levels"] == config.noise.snr_levels


def test_own_signal_of_a_lone_particle_is_its_clean_box(simulated, tmp_path):
    config, _, densities, _, _ = simulated
    alone = validate_config(
        {**CONFIG, "sample": {**CONFIG["sample"], "particles_per_tomogram": 1, "crowding_fraction": 0}}
    )
    for tomogram in range(3):
        particles = ParticleSet.load(
            stages.simulate_tomogram(alone, "blob", tomogram, densities, tmp_path / "a.npz")
        )
        ratio = particles.signal_variance / particles.clean.var(axis=(1, 2, 3), dtype=np.float64)
        np.testing.assert_allclose(ratio, 1.0, atol=0.03)  # measured 0.997-1.018


def _noise_statistics(volume: np.ndarray) -> list[float]:
    """Box std and the mean power above 0.25 cycles/voxel: what a noise-level classifier sees."""
    power = np.abs(np.fft.fftn(volume)) ** 2
    frequency = np.fft.fftfreq(volume.shape[0])
    k = np.sqrt(sum(f**2 for f in np.meshgrid(frequency, frequency, frequency, indexing="ij")))
    return [float(np.log(volume.std())), float(np.log(power[k > 0.25].mean()))]


def _cross_validated_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression())
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return float(cross_val_score(classifier, features, labels, cv=folds).mean())


def test_noise_statistics_do_not_give_the_class_away(tmp_path):
    """Three classes of very different size at SNR 0.01: std + high-frequency power classify at chance.

    The control, a per-box calibration (α from each clean box, the old rule), classifies at 0.81.
    """
    config = validate_config(
        {
            **CONFIG,
            "sample": {
                "slab_shape_zyx": [36, 96, 96],
                "tomograms_per_class": 8,
                "particles_per_tomogram": 6,
                "crowding_fraction": 0.03,
            },
            "noise": {"snr_levels": [0.01]},
            "classes": {
                "small": {"kind": "phantom", "shape": "blob", "diameter_A": 90, "subunits": 3, "seed": 1},
                "ring": {"kind": "phantom", "shape": "ring", "diameter_A": 140, "subunits": 5, "seed": 2},
                "cage": {"kind": "phantom", "shape": "cage", "diameter_A": 170, "subunits": 12, "seed": 3},
            },
        }
    )
    densities = {c: stages.density(config, c, tmp_path / f"{c}.mrc") for c in config.classes}
    ours, per_box, labels = [], [], []
    for label, class_id in enumerate(config.classes):
        paths = [
            stages.simulate_tomogram(config, class_id, t, densities, tmp_path / f"{class_id}{t}.npz")
            for t in range(8)
        ]
        particles = ParticleSet.load(stages.calibrate_noise(config, class_id, paths, tmp_path / "c.npz"))
        for clean, noise, noisy in zip(particles.clean, particles.noise, particles.noisy, strict=True):
            ours.append(_noise_statistics(noisy[0]))
            alpha = np.sqrt(clean.var() / (0.01 * noise[0].var()))
            per_box.append(_noise_statistics(clean + alpha * noise[0]))
            labels.append(label)
    labels = np.array(labels)
    chance = 1 / 3
    standard_error = np.sqrt(chance * (1 - chance) / len(labels))  # 0.039 for 144 particles
    assert abs(_cross_validated_accuracy(np.array(ours), labels) - chance) < 2 * standard_error  # 0.355
    assert _cross_validated_accuracy(np.array(per_box), labels) > chance + 5 * standard_error


def test_same_seed_same_bytes_other_tomogram_other_draw(simulated, tmp_path):
    config, _, densities, tomograms, _ = simulated
    again = ParticleSet.load(stages.simulate_tomogram(config, "helix", 0, densities, tmp_path / "again.npz"))
    first, second = ParticleSet.load(tomograms[0]), ParticleSet.load(tomograms[1])
    for name in (
        "clean",
        "noise",
        "noise_scale",
        "signal_variance",
        "rotation",
        "shift",
        "position",
        "defocus_um",
    ):
        assert np.array_equal(getattr(again, name), getattr(first, name)), name
    assert not np.array_equal(first.rotation, second.rotation)
    assert first.defocus_um[0] != second.defocus_um[0]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"tilt": {"min_angle_deg": -95}}, "tilt.min_angle_deg"),
        ({"tilt": {"max_angle_deg": 90}}, "tilt.max_angle_deg"),
        ({"sample": {"slab_shape_zyx": [20, 60, 60]}}, "must exceed the box"),
        ({"optics": {"defocus_min_um": 6, "defocus_max_um": 3}}, "defocus_min_um"),
        ({"noise": {"snr_levels": [0.1, 0]}}, "every SNR level must be > 0 and finite"),
    ],
)
def test_bad_imaging_config(patch, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({**CONFIG, **patch})


def test_more_particles_than_fit_is_a_clear_error(simulated, tmp_path):
    _, _, densities, _, _ = simulated
    with pytest.raises(ConfigError, match="would fill .* of the slab"):  # caught when the config is read
        validate_config({**CONFIG, "sample": {**CONFIG["sample"], "particles_per_tomogram": 60}})
    crowded = validate_config({**CONFIG, "sample": {**CONFIG["sample"], "particles_per_tomogram": 20}})
    with pytest.raises(ValueError, match="placed .* of"):  # and what the estimate lets through, when placed
        stages.simulate_tomogram(crowded, "helix", 0, densities, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_class_too_big_for_the_box(tmp_path):
    config = validate_config(
        {
            **CONFIG,
            "sample": {**CONFIG["sample"], "crowding_fraction": 0, "particles_per_tomogram": 1},
            "classes": {"big": {"kind": "phantom", "shape": "cage", "diameter_A": 400}},
        }
    )
    with pytest.raises(ValueError, match="does not fit"):
        stages.simulate_class(config, "big", tmp_path / "density", tmp_path / "big.npz")


def test_cli_simulates_one_class(simulated, tmp_path):
    import yaml

    config, work, _, _, _ = simulated
    path = tmp_path / "config.yaml"
    small = {**CONFIG, "sample": {**CONFIG["sample"], "tomograms_per_class": 1, "particles_per_tomogram": 2}}
    path.write_text(yaml.safe_dump(small))
    out = tmp_path / "blob.npz"
    assert (
        main(
            ["simulate", str(path), "--class", "blob", "-o", str(out), "--density-dir", str(work / "density")]
        )
        == 0
    )
    particles = ParticleSet.load(out)
    assert particles.noisy.shape == (2, 4, 24, 24, 24)
    # No scratch left; the tomogram's motif list beside the class file.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "blob.npz",
        "blob.tomogram_0.motifs.star",
        "config.yaml",
    ]
    assert main(["simulate", str(path), "--class", "nope", "-o", str(out)]) == 1


def test_optional_class_that_cannot_be_fetched_is_skipped_with_a_warning(tmp_path, caplog):
    config = validate_config(
        {
            **CONFIG,
            "structures": {"cache_dir": str(tmp_path), "download": False},
            "classes": {
                **CONFIG["classes"],
                "missing": {"kind": "pdb", "pdb_id": "9ZZZ", "optional": True},
                "required": {"kind": "pdb", "pdb_id": "9ZZY"},
            },
        }
    )
    with caplog.at_level("WARNING", logger="cryoengine.stages"):
        kept = stages.available_classes(config)
    assert kept == ["helix", "blob", "required"]  # a required class fails later, in its own rule
    assert "skipping optional class missing: PDB entry 9ZZZ not found" in caplog.text


def test_a_map_class_is_on_the_scale_of_the_atomic_class(shared_data, tmp_path):
    """1S3X as atoms, as our own density map read back as ``kind: map``, and as PolNet's map (peak ~250)."""
    pdb = shared_data / "polnet" / "pdbs" / "1s3x.pdb"
    lone = {**CONFIG, "sample": {**CONFIG["sample"], "crowding_fraction": 0}}
    atomic = validate_config({**lone, "classes": {"atoms": {"kind": "file", "path": str(pdb)}}})
    ours = stages.density(atomic, "atoms", tmp_path / "atoms.mrc")
    atomic_map = stages.class_density(atomic, "atoms")
    for path, weight in ((ours, 42.75), (shared_data / "polnet" / "maps_10A" / "1s3x.mrc", 42.75)):
        as_map = validate_config(
            {**lone, "classes": {"m": {"kind": "map", "path": str(path), "molecular_weight_kDa": weight}}}
        )
        ratio = stages.class_density(as_map, "m").sum() / atomic_map.sum()
        assert abs(ratio - 1) < 0.04, path  # measured 1.012 (gemmi's cut-off keeps 0.988 of Σ f(0))
    no_weight = validate_config({**lone, "classes": {"m": {"kind": "map", "path": str(ours)}}})
    assert 0.8 < stages.class_density(no_weight, "m").sum() / atomic_map.sum() < 1.2


def test_a_map_crowder_has_the_contrast_of_an_atomic_particle(shared_data, tmp_path):
    """Targets of a PolNet map class and of an atomic class of similar mass: comparable box contrast."""
    config = validate_config(
        {
            **CONFIG,
            "sample": {**CONFIG["sample"], "crowding_fraction": 0.05},
            "classes": {
                "esterase": {
                    "kind": "map",
                    "path": str(shared_data / "polnet" / "maps_10A" / "3qm1.mrc"),
                    "molecular_weight_kDa": 31.31,
                },
                "hsp70": {"kind": "file", "path": str(shared_data / "polnet" / "pdbs" / "1s3x.pdb")},
            },
        }
    )
    densities = {c: stages.density(config, c, tmp_path / f"{c}.mrc") for c in config.classes}
    contrast = {}
    for class_id in config.classes:
        own = [
            ParticleSet.load(stages.simulate_tomogram(config, class_id, t, densities, tmp_path / "t.npz"))
            for t in (0, 1)
        ]
        contrast[class_id] = np.median(np.sqrt(np.concatenate([p.signal_variance for p in own])))
        boxes = np.concatenate([p.clean for p in own])
        assert boxes.std(axis=(1, 2, 3)).max() < 5 * np.median(boxes.std(axis=(1, 2, 3)))  # no giant crowder
    assert 0.5 < contrast["esterase"] / contrast["hsp70"] < 1.5  # 31 vs 43 kDa
