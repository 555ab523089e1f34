"""Several models per class: each placed particle draws one, recorded in the ground truth."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import zarr
from test_simulate import CONFIG

from cryoengine import stages
from cryoengine.config import ConfigError, validate_config
from cryoengine.formats.motif_list import read_motif_list
from cryoengine.formats.mrc import read_volume
from cryoengine.physics.correlation import pearson_correlation
from cryoengine.physics.imaging import ClassModels, draw_particle_models
from cryoengine.physics.resampling import rotate_volume
from cryoengine.store.particle_set import ParticleSet

# The helix class of test_simulate's CONFIG with a clearly different second model: a ring.
RING = {"kind": "phantom", "shape": "ring", "diameter_A": 150, "subunits": 6, "seed": 3}


def _config(models=(RING,), weights=None, **sample):
    data = copy.deepcopy(CONFIG)
    data["sample"] = {**data["sample"], **sample}
    data["classes"]["helix"]["models"] = [dict(m) for m in models]
    if weights is not None:
        data["classes"]["helix"]["model_weights"] = weights
    return validate_config(data)


def _one_line(error: ConfigError) -> str:
    lines = str(error).splitlines()
    assert len(lines) == 2  # the header, then the one offending key
    return lines[1]


@pytest.mark.parametrize(
    ("helix", "message"),
    [
        ({"models": [{"kind": "map", "path": "x.mrc"}]}, "model 1 is of kind 'map', the class is 'phantom'"),
        ({"models": [RING], "model_weights": [1.0]}, "model_weights has 1 values for 2 models"),
        ({"models": [RING], "model_weights": [1.0, 0.0]}, "model_weights must be > 0"),
        ({"model_weights": [1.0, 2.0]}, "model_weights has 2 values for 1 models"),
        ({"models": [{**RING, "models": [RING]}]}, "model 1 gives models or model_weights of its own"),
    ],
)
def test_bad_alternatives_are_one_line_errors(helix, message):
    data = copy.deepcopy(CONFIG)
    data["classes"]["helix"].update(helix)
    with pytest.raises(ConfigError) as error:
        validate_config(data)
    assert message in _one_line(error.value) and "classes.helix" in _one_line(error.value)


def test_a_pdb_class_takes_pdb_alternatives_and_refuses_optional_ones():
    data = {
        "classes": {"a": {"kind": "pdb", "pdb_id": "1abc", "models": [{"kind": "pdb", "pdb_id": "2xyz"}]}}
    }
    sources = validate_config(data).classes["a"].model_sources()
    assert [s.pdb_id for s in sources] == ["1ABC", "2XYZ"] and not sources[0].models
    data["classes"]["a"]["models"][0]["optional"] = True
    with pytest.raises(ConfigError, match="model 1 is optional"):
        validate_config(data)


def test_weights_are_normalised_and_default_to_equal():
    assert _config().classes["helix"].model_probabilities() == [0.5, 0.5]
    assert _config(weights=[1, 3]).classes["helix"].model_probabilities() == [0.25, 0.75]
    assert validate_config(CONFIG).classes["helix"].model_probabilities() == [1.0]


def test_each_model_is_drawn_as_often_as_its_weight():
    maps = [np.zeros((4, 4, 4))] * 3
    probabilities = np.array([0.2, 0.3, 0.5])
    class_index = np.tile([0, 1], 3000)  # class 1 has one model and draws nothing
    drawn = draw_particle_models(class_index, {0: ClassModels(maps, probabilities)}, np.random.default_rng(7))
    assert np.all(drawn[class_index == 1] == 0)
    counts = np.bincount(drawn[class_index == 0], minlength=3)
    n = counts.sum()
    sigma = np.sqrt(n * probabilities * (1 - probabilities))
    assert np.all(np.abs(counts - n * probabilities) < 5 * sigma), counts


def test_class_models_refuse_one_map_or_unnormalised_probabilities():
    volume = np.zeros((4, 4, 4))
    with pytest.raises(ValueError, match="at least two maps"):
        ClassModels([volume], [1.0])
    with pytest.raises(ValueError, match="sum to 1"):
        ClassModels([volume, volume], [0.5, 0.6])


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    config = _config(particles_per_tomogram=4)
    work = tmp_path_factory.mktemp("models")
    densities = {c: stages.density(config, c, work / f"{c}.mrc") for c in config.classes}
    ring = stages.density(config, "helix", work / "helix.model1.mrc", model=1)
    tomograms = [
        stages.simulate_tomogram(
            config, "helix", t, densities, work / f"t{t}.npz", model_paths={"helix": [ring]}
        )
        for t in (0, 1)
    ]
    return config, work, densities, ring, tomograms


def test_each_model_is_its_own_map_on_the_class_scale(simulated):
    _, _, densities, ring, _ = simulated
    helix, _ = read_volume(densities["helix"])
    other, _ = read_volume(ring)
    assert abs(pearson_correlation(helix, other)) < 0.6
    assert other.sum() > 0 and helix.sum() > 0


def test_every_target_matches_the_model_it_drew(simulated):
    # particle = R · reference + shift, dark at underfocus: its drawn model correlates most negatively.
    config, work, densities, ring, tomograms = simulated
    maps = [read_volume(densities["helix"])[0], read_volume(ring)[0]]
    drawn = []
    for t, path in enumerate(tomograms):
        particles = ParticleSet.load(path)
        model_index = particles.attrs["model_index"]
        motifs = read_motif_list(work / f"t{t}.motifs.star")
        targets = motifs[motifs["cryoengineRole"] == "target"]
        assert targets["cryoengineModel"].tolist() == model_index
        assert set(motifs.loc[motifs["cryoengineRole"] == "crowder", "cryoengineModel"]) <= {0}
        for clean, rotation, shift, m in zip(
            particles.clean, particles.rotation, particles.shift, model_index, strict=True
        ):
            scores = [pearson_correlation(rotate_volume(v, rotation, shift), clean) for v in maps]
            assert int(np.argmin(scores)) == m, scores
            assert scores[m] < -0.35
        drawn += model_index
    assert set(drawn) == {0, 1}  # both models were drawn (seeded)


def test_the_model_index_reaches_the_class_group(simulated):
    config, work, _, _, tomograms = simulated
    calibrated = stages.calibrate_noise(config, "helix", tomograms, work / "helix.npz")
    expected = [m for path in tomograms for m in ParticleSet.load(path).attrs["model_index"]]
    assert ParticleSet.load(calibrated).attrs["model_index"] == expected
    group = stages.shard(config, "helix", calibrated, work / "dataset.zarr")
    attrs = zarr.open_group(str(group), mode="r").attrs
    assert attrs["model_index"] == expected and attrs["source"]["models"][0]["shape"] == "ring"


def test_missing_model_maps_are_an_error(simulated):
    config, work, densities, _, _ = simulated
    with pytest.raises(
        ValueError, match="class helix has 1 alternative models in the config, 0 density maps"
    ):
        stages.simulate_tomogram(config, "helix", 0, densities, work / "x.npz")
