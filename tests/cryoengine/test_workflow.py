"""The Snakemake workflow on the CI configuration (.test/): structures → dataset.zarr, end to end.

Covers what issues 4 and 8 ask of the pipeline: a dataset that ``inspect`` validates, items equal to the
intermediates they came from, identical bytes from identical configs, resume after SIGTERM and SIGKILL
at each rule, one class rebuilt alone, a job graph as narrow as the physics (dry-run job counts for each
kind of change), and parsing that fetches nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import starfile
import yaml
from conftest import REPO_ROOT

from cryoengine.cli import main
from cryoengine.config import load_config
from cryoengine.stages import crowder_classes
from cryoengine.store import inspect_dataset, open_dataset
from cryoengine.store.fields import ARRAYS, FIELDS
from cryoengine.store.particle_set import ParticleSet
from examples.make_user_project import make_user_project

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
# The item fields that are arrays (the scalars of an Item are compared on their own).
ITEM_ARRAYS = tuple(f.name for f in FIELDS if f.stored and len(f.dims) > 1)


def make_workdir(parent: Path) -> Path:
    """A copy of .test/config.yaml whose relative paths point where they pointed from .test/."""
    parent.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO_ROOT / ".test" / "config.yaml").read_text())
    base = REPO_ROOT / ".test"
    config["structures"]["mirrors"] = [str((base / m).resolve()) for m in config["structures"]["mirrors"]]
    for spec in config["classes"].values():
        if "path" in spec:
            spec["path"] = str((base / spec["path"]).resolve())
    (parent / "config.yaml").write_text(yaml.safe_dump(config))
    return parent


def command(workdir: Path, *args: str) -> list[str]:
    snakefile = str(REPO_ROOT / "workflow" / "Snakefile")
    return [str(SNAKEMAKE), "-s", snakefile, "-d", str(workdir), "--cores", "2", "--rerun-incomplete", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command(workdir, *args), capture_output=True, text=True, env=environment(), timeout=600
    )
    return result


def run_ok(workdir: Path, *args: str) -> str:
    result = snakemake(workdir, *args)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr


def planned_tomogram_jobs(dry_run_output: str) -> set[tuple[str, str | None, int | None]]:
    """(rule, class or None, tomogram or None) of every job a dry run plans."""
    jobs = set()
    for block in re.split(r"\n(?:rule|checkpoint) ", dry_run_output)[1:]:
        rule = block.split(":", 1)[0].strip()
        wildcards = next((line for line in block.splitlines() if "wildcards:" in line), "")
        cls = wildcards.split("cls=")[1].split(",")[0].strip() if "cls=" in wildcards else None
        tomogram = int(wildcards.split("tomogram=")[1].split(",")[0]) if "tomogram=" in wildcards else None
        jobs.add((rule, cls, tomogram))
    return jobs


def planned_jobs(dry_run_output: str) -> set[tuple[str, str | None]]:
    """(rule, class or None) of every job a dry run plans."""
    return {(rule, cls) for rule, cls, _ in planned_tomogram_jobs(dry_run_output)}


def killed_when(workdir: Path, appears: str, how: signal.Signals = signal.SIGTERM) -> signal.Signals:
    """Start the workflow and stop it with ``how`` (SIGTERM, as a cluster does first; SIGKILL, as an
    out-of-memory killer or a lost node does) as soon as ``appears`` exists.

    Like a cluster's scheduler, a SIGTERM that has not stopped the workflow within a grace period is
    followed by a SIGKILL (seen about once in eight runs on the 2-core CI machine, with a warning).
    Returns the signal that stopped it.
    """
    process = subprocess.Popen(
        command(workdir, "all"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while not list(workdir.glob(appears)):
            assert process.poll() is None, f"the workflow finished before {appears} appeared"
            assert time.monotonic() < deadline, f"{appears} never appeared"
            time.sleep(0.02)
        os.killpg(process.pid, how)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            warnings.warn(f"Snakemake did not stop within 120 s of {how.name}; sent SIGKILL", stacklevel=2)
            how = signal.SIGKILL
        return how
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def dataset_arrays(workdir: Path) -> dict[str, dict[str, np.ndarray]]:
    dataset = open_dataset(workdir / "results" / "dataset.zarr")
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for block in dataset.iter_shards():
        parts = arrays.setdefault(block.class_id, {})
        for name in ARRAYS:
            parts.setdefault(name, []).append(getattr(block, name))
    return {c: {n: np.concatenate(v) for n, v in parts.items()} for c, parts in arrays.items()}


def assert_same_arrays(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for class_id in a:
        for name in ARRAYS:
            assert a[class_id][name].tobytes() == b[class_id][name].tobytes(), (class_id, name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_data):
    """One uninterrupted run, keeping the temporary intermediates for comparison."""
    workdir = make_workdir(tmp_path_factory.mktemp("reference"))
    run_ok(workdir, "all", "--notemp")
    return workdir


@pytest.mark.slow  # runs the workflow
def test_dataset_validates_and_reports(reference, capsys):
    report = inspect_dataset(reference / "results" / "dataset.zarr")
    assert report.ok, report.failures
    config = yaml.safe_load((reference / "config.yaml").read_text())
    dataset = open_dataset(reference / "results" / "dataset.zarr")
    per_class = config["sample"]["tomograms_per_class"] * config["sample"]["particles_per_tomogram"]
    assert sorted(dataset.classes) == sorted(config["classes"])
    assert len(dataset) == per_class * len(config["classes"])
    assert dataset.attrs["classes"]["ring5"]["count"] == per_class  # the manifest ran
    assert main(["inspect", str(reference / "results" / "dataset.zarr")]) == 0
    assert "ring5" in capsys.readouterr().out
    assert main(["report", str(reference / "results")]) == 0  # what `make demo` ends with
    assert "all checksums ok" in capsys.readouterr().out
    tomograms = config["sample"]["tomograms_per_class"]
    for class_id in config["classes"]:
        simulate_log = (reference / "logs" / "simulate" / class_id / "tomogram_0.log").read_text()
        assert "placed" in simulate_log and "reconstructed" in simulate_log and "written" in simulate_log
        noise_log = (reference / "logs" / "noise" / f"{class_id}.log").read_text()
        assert f"read tomogram {tomograms}/{tomograms}" in noise_log and "median measured SNR" in noise_log
        assert "subtomograms written" in (reference / "logs" / "shard" / f"{class_id}.log").read_text()
        record = json.loads((reference / "results" / "density" / f"{class_id}.mrc.json").read_text())
        assert record["argv"] == ["snakemake", "rule", "density", f"cls={class_id}"]  # not a temp script


@pytest.mark.slow  # runs the workflow
def test_items_are_the_bytes_of_their_intermediate(reference):
    dataset = open_dataset(reference / "results" / "dataset.zarr")
    offset = 0
    config = yaml.safe_load((reference / "config.yaml").read_text())
    assert dataset.classes == dataset.class_labels == tuple(config["classes"])  # label order = config order
    for class_id in dataset.classes:
        particles = ParticleSet.load(reference / "results" / "particles" / f"{class_id}.npz")
        for i in (0, len(particles) - 1):
            item = dataset[offset + i]
            assert item.class_id == class_id
            for name in ITEM_ARRAYS:
                assert getattr(item, name).tobytes() == getattr(particles, name)[i].tobytes(), name
            assert item.tomogram == particles.tomogram[i] and item.defocus_um == particles.defocus_um[i]
            assert item.noise_scale == particles.noise_scale[i]
        offset += len(particles)


@pytest.fixture(scope="module")
def again(reference, tmp_path_factory):
    """A second run of the same configuration, temporary intermediates removed as in production."""
    workdir = make_workdir(tmp_path_factory.mktemp("again"))
    run_ok(workdir, "all")
    return workdir


@pytest.mark.slow  # runs the workflow
def test_same_config_same_bytes_and_only_tomogram_files_kept(reference, again):
    assert_same_arrays(dataset_arrays(again), dataset_arrays(reference))
    assert not list((again / "results" / "particles").glob("*.npz"))  # the noise rule's output is temporary
    assert len(list((again / "results" / "particles").glob("*/tomogram_*.npz"))) == 8  # simulate's is kept


@pytest.mark.slow  # runs the workflow
@pytest.mark.parametrize(
    ("stage", "how"),
    [
        ("logs/simulate/*/*.log", signal.SIGTERM),
        ("logs/simulate/*/*.log", signal.SIGKILL),
        ("logs/noise/*.log", signal.SIGKILL),
        ("logs/shard/*.log", signal.SIGKILL),
    ],
)
def test_resume_after_a_kill(reference, tmp_path, stage, how):
    workdir = make_workdir(tmp_path / "killed")
    stopped_by = killed_when(workdir, stage, how)
    assert not (workdir / "results" / "dataset_manifest.json").exists()
    if how == signal.SIGKILL:  # a hard kill leaves Snakemake's lock behind: --unlock (README), then resume
        locked = snakemake(workdir, "all")
        assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
        run_ok(workdir, "--unlock")
    elif stopped_by == signal.SIGKILL:  # a SIGTERM that needed the follow-up SIGKILL may leave the lock
        run_ok(workdir, "--unlock")
    run_ok(workdir, "all")
    assert inspect_dataset(workdir / "results" / "dataset.zarr").ok
    assert_same_arrays(dataset_arrays(workdir), dataset_arrays(reference))
    leftovers = [
        p.name for p in (workdir / "results" / "dataset.zarr" / "classes").iterdir() if p.name.startswith(".")
    ]
    assert leftovers == []


@pytest.mark.slow  # runs the workflow
def test_one_class_group_is_rebuilt_alone(reference, again, tmp_path):
    workdir = tmp_path / "rebuild"
    shutil.copytree(again, workdir, symlinks=True)
    classes = workdir / "results" / "dataset.zarr" / "classes"
    untouched = {c: (classes / c / "zarr.json").stat().st_mtime_ns for c in ("cage", "esterase", "hsp70")}
    shutil.rmtree(classes / "ring5")
    jobs = planned_jobs(run_ok(workdir, "all", "-n"))
    assert {rule for rule, _ in jobs} == {"noise", "shard", "manifest", "all"}, jobs  # tomograms are kept
    assert {cls for _, cls in jobs if cls} == {"ring5"}
    run_ok(workdir, "all")
    assert {c: (classes / c / "zarr.json").stat().st_mtime_ns for c in untouched} == untouched
    assert_same_arrays(dataset_arrays(workdir), dataset_arrays(reference))


def changed(again: Path, tmp_path: Path, edit, *args: str) -> set[tuple[str, str | None, int | None]]:
    """The jobs a dry run plans after ``edit(config)`` on a copy of a finished workdir."""
    workdir = tmp_path / "changed"
    shutil.copytree(again, workdir, symlinks=True)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    edit(config)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return planned_tomogram_jobs(run_ok(workdir, "all", "-n", *args))


def tomograms_touched_by(workdir: Path, class_id: str) -> set[tuple[str, int]]:
    """(class, tomogram) of the class's own tomograms and of those it may crowd."""
    config = load_config(workdir / "config.yaml")
    classes = list(config.classes)
    return {
        (target, tomogram)
        for target in classes
        for tomogram in range(config.sample.tomograms_per_class)
        if target == class_id or class_id in crowder_classes(config, target, tomogram, classes)
    }


def rules_of(jobs) -> dict[str, set]:
    found: dict[str, set] = {}
    for rule, cls, tomogram in jobs:
        found.setdefault(rule, set()).add(cls if tomogram is None else (cls, tomogram))
    return found


@pytest.mark.slow  # runs the workflow
def test_nothing_reruns_when_nothing_changed(again, tmp_path):
    assert changed(again, tmp_path, lambda config: None) == set()


@pytest.mark.slow  # runs the workflow
@pytest.mark.parametrize(
    "edit",
    [
        lambda config: config["noise"].__setitem__("snr_levels", [0.1, 0.02]),
        lambda config: config.setdefault("dataset", {}).__setitem__("shard_size", 2),
    ],
    ids=["snr_levels", "shard_size"],
)
def test_noise_and_shard_settings_never_rerun_simulate(again, tmp_path, edit):
    jobs = rules_of(changed(again, tmp_path, edit))
    assert set(jobs) == {"noise", "shard", "manifest", "all"}
    assert jobs["noise"] == jobs["shard"] == {"cage", "esterase", "hsp70", "ring5"}


@pytest.mark.slow  # runs the workflow
def test_editing_a_description_touches_only_that_class_group(again, tmp_path):
    jobs = rules_of(
        changed(again, tmp_path, lambda config: config["classes"]["ring5"].update(description="x"))
    )
    assert jobs == {"noise": {"ring5"}, "shard": {"ring5"}, "manifest": {None}, "all": {None}}


@pytest.mark.slow  # runs the workflow
@pytest.mark.parametrize(
    ("edit", "args"),
    [
        (lambda config: config["classes"]["ring5"].__setitem__("seed", 99), ()),
        (lambda config: None, ("--forcerun", "results/density/ring5.mrc")),
    ],
    ids=["class_parameter", "forcerun_density"],
)
def test_a_changed_class_resimulates_its_tomograms_and_those_it_crowds_only(again, tmp_path, edit, args):
    jobs = rules_of(changed(again, tmp_path, edit, *args))
    touched = tomograms_touched_by(again, "ring5")
    assert jobs["density"] == {"ring5"} and "fetch_structure" not in jobs
    assert jobs["simulate"] == touched and len(touched) < 8  # 5 of the 8 tomograms with crowder_classes 1
    assert jobs["noise"] == jobs["shard"] == {cls for cls, _ in touched}


@pytest.mark.slow  # runs the workflow
def test_an_alternative_model_reruns_only_the_jobs_of_its_class_and_is_recorded(again, tmp_path):
    def add_model(config):
        config["classes"]["ring5"]["models"] = [{"kind": "phantom", "shape": "ring", "seed": 99}]

    jobs = rules_of(changed(again, tmp_path, add_model))
    touched = tomograms_touched_by(again, "ring5")
    assert jobs["density_model"] == {"ring5"} and "density" not in jobs and "fetch_structure" not in jobs
    assert jobs["simulate"] == touched
    assert jobs["noise"] == jobs["shard"] == {cls for cls, _ in touched}
    workdir = tmp_path / "changed"
    run_ok(workdir, "all")
    assert (workdir / "results" / "density" / "ring5.model1.mrc").is_file()
    attrs = open_dataset(workdir / "results" / "dataset.zarr").class_group("ring5").attrs.asdict()
    targets = [
        table.loc[table["cryoengineRole"] == "target", "cryoengineModel"].tolist()
        for table in (
            starfile.read(path)
            for path in sorted((workdir / "results" / "particles" / "ring5").glob("*.star"))
        )
    ]
    assert attrs["model_index"] == [m for drawn in targets for m in drawn]
    assert set(attrs["model_index"]) <= {0, 1} and attrs["source"]["models"][0]["seed"] == 99


@pytest.mark.slow  # runs the workflow
def test_a_changed_tilt_step_resimulates_every_tomogram_but_no_density(again, tmp_path):
    jobs = rules_of(changed(again, tmp_path, lambda config: config["tilt"].__setitem__("step_deg", 10.0)))
    assert len(jobs["simulate"]) == 8 and "density" not in jobs and "fetch_structure" not in jobs


def test_parsing_fetches_nothing_and_optional_classes_are_resolved_by_a_rule(tmp_path):
    workdir = make_workdir(tmp_path / "optional")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["classes"] = {
        "ring5": config["classes"]["ring5"],
        "hsp70": {**config["classes"]["hsp70"], "optional": True},  # in the mirror
        "missing": {"kind": "pdb", "pdb_id": "9ZZZ", "optional": True},  # nowhere
    }
    config["sample"]["tomograms_per_class"] = 1
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for args in (("all", "-n"), ("--lint",)):
        run_ok(workdir, *args)
        assert not (workdir / "resources").exists()  # nothing copied into the structure cache
    assert ("available_classes", None) in planned_jobs(run_ok(workdir, "all", "-n"))
    run_ok(workdir, "all")
    dataset = open_dataset(workdir / "results" / "dataset.zarr")
    assert dataset.classes == ("ring5", "hsp70") and dataset.class_labels == ("ring5", "hsp70", "missing")
    assert "skipping optional class missing" in (workdir / "logs" / "available_classes.log").read_text()


@pytest.mark.slow  # runs the workflow
def test_export_round_trip(reference, tmp_path):
    out = tmp_path / "export"
    dataset = str(reference / "results" / "dataset.zarr")

    def export(snr: str) -> int:
        return main(["export", dataset, "--class", "cage", "--snr", snr, "-o", str(out)])

    assert export("0.1") == 0
    star = starfile.read(next(out.glob("*.star")))
    optics = star["optics"]
    assert optics["rlnVoltage"].tolist() == [300.0] and optics["rlnImagePixelSize"].tolist() == [10.0]
    assert len(star["particles"]) == len(list((out / "subtomograms").glob("*.mrc")))
    assert export("0.5") == 1  # not one of the dataset's levels


def test_unknown_config_key_stops_the_workflow(tmp_path):
    workdir = make_workdir(tmp_path)
    with open(workdir / "config.yaml", "a") as handle:
        handle.write("voxel_sise_A: 3\n")
    result = snakemake(workdir, "all", "-n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "voxel_sise_A: unknown key" in output
    assert len(output.splitlines()) < 30  # the key and its parent, not the 1,000-line schema


def test_import_particles_rule_one_job_per_tomogram_then_merge(tmp_path):
    """Rule import_particles (not in all): a dry run plans the checkpoint, a real run builds the dataset."""
    project = make_user_project(tmp_path / "project", particles=4)
    workdir = make_workdir(tmp_path / "work")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["import_particles"] = {
        "inputs": [str(project.star_path)],
        "format": "relion5",
        "tomograms": str(project.mrc_path.parent),
        "voxel_size_A": 10.0,
        "box": 32,
        "output": "results/imported.zarr",
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    planned = run_ok(workdir, "import_particles", "-n")
    assert "import_tomogram_list" in planned and "simulate" not in planned
    run_ok(workdir, "import_particles")
    dataset = open_dataset(workdir / "results" / "imported.zarr")
    assert dataset.observed and len(dataset) == 4 and dataset.attrs["tomograms"][0]["name"] == "TS_01"
    assert (workdir / "results" / "import" / "tomograms" / "TS_01.npz").is_file()
    assert "Nothing to be done" in run_ok(workdir, "import_particles")
