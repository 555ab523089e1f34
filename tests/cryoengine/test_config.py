"""Typed configuration: defaults, bounds, unknown keys, and the generated Snakemake schema kept current."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from conftest import REPO_ROOT

from cryoengine.config import ConfigError, config_json_schema, load_config, validate_config

CONFIGS = [REPO_ROOT / "config.yaml", REPO_ROOT / ".test" / "config.yaml", REPO_ROOT / "demo" / "config.yaml"]
MINIMAL = {"classes": {"ring": {"kind": "phantom", "shape": "ring"}}}


def test_schema_file_is_current():
    on_disk = (REPO_ROOT / "workflow" / "schemas" / "config.schema.json").read_text()
    assert on_disk == config_json_schema(), (
        "regenerate: python -m cryoengine schema > workflow/schemas/config.schema.json"
    )


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shipped_configs_validate_against_models_and_schema(path):
    config = load_config(path)
    assert config.classes
    jsonschema.validate(yaml.safe_load(path.read_text()), json.loads(config_json_schema()))


def test_every_key_of_the_production_config_is_commented():
    for line in (REPO_ROOT / "config.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and ":" in stripped and not stripped.startswith("- "):
            key, value = stripped.split(":", 1)
            top_level_section = not line.startswith(" ") and not value.strip()
            class_entry = line.startswith("  ") and not line.startswith("   ") and not value.strip()
            if not (top_level_section or class_entry or line.startswith("    ")):
                assert "#" in line, f"config.yaml key without a comment: {line!r}"


def test_defaults_and_units():
    config = validate_config(MINIMAL)
    assert config.voxel_size_A == 10.0 and config.box == 32
    assert config.resolution_A() == 20.0  # Nyquist by default
    assert config.classes["ring"].diameter_A == 180.0


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"voxl_size_A": 10}, "voxl_size_A: unknown key"),
        ({"voxel_size_A": -10}, "voxel_size_A: Input should be greater than 0"),
        ({"box": 4}, "box: Input should be greater than or equal to 8"),
        ({"density": {"oversampling": 1}}, "density.oversampling"),
        ({"classes": {"x": {"kind": "pdb", "pdb_id": "ABCD"}}}, "pdb_id"),
        ({"classes": {"x": {"kind": "phantom", "shape": "torus"}}}, "shape"),
        ({"classes": {"x": {"kind": "phantom", "shape": "ring", "colour": 1}}}, "colour: unknown key"),
        ({"classes": {"bad/id": {"kind": "phantom", "shape": "ring"}}}, "class id 'bad/id'"),
        ({"classes": {}}, "classes"),
    ],
)
def test_bad_configs_name_the_key(patch, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({**MINIMAL, **patch})


def test_resolution_finer_than_nyquist_is_rejected_when_the_config_is_read():
    with pytest.raises(ConfigError, match=r"density.resolution_A = 15.0 Å is finer than Nyquist \(20.0 Å"):
        validate_config({**MINIMAL, "density": {"resolution_A": 15}})


def test_repeated_yaml_keys_are_errors(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "classes:\n  a:\n    kind: phantom\n    shape: ring\n  a:\n    kind: phantom\n    shape: rod\n"
    )
    with pytest.raises(ConfigError, match=r"duplicate key 'a' \(first on line 2, again on line 5\)"):
        load_config(tmp_path / "c.yaml")


def test_crowding_a_single_class_is_an_error_and_its_default_is_zero():
    one = {"classes": {"a": {"kind": "phantom", "shape": "ring"}}}
    assert validate_config(one).sample.crowding_fraction == 0
    with pytest.raises(ConfigError, match=r"crowding_fraction is 0.1 but there is only one class \(a\)"):
        validate_config({**one, "sample": {"crowding_fraction": 0.1}})
    two = {"classes": {**one["classes"], "b": {"kind": "phantom", "shape": "rod"}}}
    assert validate_config(two).sample.crowding_fraction == 0.05


def test_more_targets_than_a_slab_can_hold_is_an_error_when_the_config_is_read():
    crowded = {
        "box": 24,
        "sample": {"slab_shape_zyx": [30, 60, 60], "particles_per_tomogram": 60},
        "classes": {"big": {"kind": "phantom", "shape": "cage", "diameter_A": 150}},
    }
    with pytest.raises(ConfigError, match=r"60 targets of class big \(150 Å across\) .* jams near 38%"):
        validate_config(crowded)
    validate_config({**crowded, "sample": {**crowded["sample"], "particles_per_tomogram": 10}})


def test_a_section_error_names_the_problem_not_the_whole_config():
    with pytest.raises(ConfigError) as error:
        validate_config({**MINIMAL, "density": {"resolution_A": 15}})
    assert len(str(error.value).splitlines()) == 2 and "got" not in str(error.value)


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("classes: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
