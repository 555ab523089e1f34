# Validation of the config (repeated keys, the typed models, then the JSON schema generated from them) and the input functions shared by the rules. Parsing reads the config and nothing else: optional
# classes are resolved by the checkpoint available_classes, and each input function names exactly the
# files (and each params function exactly the settings) that its rule's output depends on.
import json
import os

from snakemake.utils import validate

from cryoengine.config import (
    FileSource,
    MapSource,
    PdbSource,
    read_config_yaml,
    validate_config,
)
from cryoengine.identifiers import PDB_ID_PATTERN
from cryoengine.physics.projector import cuda_available
from cryoengine.stages import crowder_classes

for configfile_path in workflow.configfiles:
    read_config_yaml(
        configfile_path
    )  # repeated keys are errors (YAML keeps the last one silently)
# The typed models first: their errors name the offending key (and its parent) in one line each; the
# schema check after them then passes, instead of dumping the whole schema for one unknown key.
ENGINE = validate_config(config, origin="workflow config")
validate(config, "../schemas/config.schema.json", set_default=False)
CLASSES = list(
    ENGINE.classes
)  # every configured class; available_classes() after the checkpoint
HAS_OPTIONAL = any(
    isinstance(s, PdbSource) and s.optional for s in ENGINE.classes.values()
)
STRUCTURE_CACHE = str(ENGINE.structures.cache_dir)
TOMOGRAMS = range(ENGINE.sample.tomograms_per_class)
DATASET = str(ENGINE.dataset.path)
PRETRAIN_CONFIG = str(
    ENGINE.pretrain.config or workflow.source_path("../../configs/pretrain_gpu.yaml")
)
# simulate holds a GPU when its projector runs on CUDA ("auto" decides on the machine that plans the jobs;
# on a cluster whose login node has no GPU, set reconstruction.backend: cuda).
SIMULATE_GPUS = int(
    ENGINE.reconstruction.backend == "cuda"
    or (ENGINE.reconstruction.backend == "auto" and cuda_available())
)


wildcard_constraints:
    cls="|".join(CLASSES) or "^$",
    pdb_id=PDB_ID_PATTERN.removeprefix("^").removesuffix("$"),
    tomogram="[0-9]+",
    model="[1-9][0-9]*",


def available_classes():
    """Configured classes less optional ones that could not be fetched (read from the checkpoint)."""
    if not HAS_OPTIONAL:
        return CLASSES
    with open(checkpoints.available_classes.get().output[0]) as handle:
        return json.load(handle)


def model_source(wildcards):
    """The source of a density job: the class's own (rule density) or its model {model} (density_model)."""
    return ENGINE.classes[wildcards.cls].model_sources()[int(wildcards.get("model", 0))]


def density_inputs(wildcards):
    """The structure file a model's density is built from (none for a procedural phantom)."""
    spec = model_source(wildcards)
    if isinstance(spec, PdbSource):
        return {"structure": f"{STRUCTURE_CACHE}/{spec.pdb_id}.cif.gz"}
    if isinstance(spec, (FileSource, MapSource)):
        return {"structure": str(spec.path)}
    return {}


def density_params(wildcards):
    """Everything a model's density depends on (not its description), so that only its rule re-runs."""
    return {
        "voxel_size_A": ENGINE.voxel_size_A,
        "box": ENGINE.box,
        "density": ENGINE.density.model_dump(mode="json"),
        "source": model_source(wildcards).model_dump(
            mode="json", exclude={"description", "models", "model_weights"}
        ),
    }


def tomogram_classes(wildcards):
    """The target class and the classes that may crowd this tomogram (cryoengine.stages.crowder_classes)."""
    crowders = crowder_classes(
        ENGINE, wildcards.cls, int(wildcards.tomogram), available_classes()
    )
    return [wildcards.cls, *crowders]


def model_maps(classes):
    """The maps of the alternative models 1, 2, ... of the classes, class by class."""
    return [
        f"results/density/{c}.model{m}.mrc"
        for c in classes
        for m in range(1, 1 + len(ENGINE.classes[c].models))
    ]


def simulate_inputs(wildcards):
    """The density maps of the tomogram's target and crowder classes (every model), and nothing else."""
    classes = tomogram_classes(wildcards)
    return {
        "densities": [f"results/density/{c}.mrc" for c in classes],
        "models": model_maps(classes),
    }


def simulate_params(wildcards):
    """Everything one tomogram depends on besides the density maps (not the tomogram count, not SNRs)."""
    return {
        "box": ENGINE.box,
        "sample": ENGINE.sample.model_dump(
            mode="json", exclude={"tomograms_per_class"}
        ),
        "tilt": ENGINE.tilt.model_dump(mode="json"),
        "optics": ENGINE.optics.model_dump(mode="json"),
        "reconstruction": ENGINE.reconstruction.model_dump(mode="json"),
        "acquisition": ENGINE.acquisition.model_dump(mode="json"),
        "variety": ENGINE.variety.model_dump(mode="json"),
        "export": ENGINE.export.model_dump(mode="json"),
        "noise": ENGINE.noise.model_dump(
            mode="json", include={"realisations", "reference_diameter_A"}
        ),
        **model_weight_params(tomogram_classes(wildcards)),
    }


def model_weight_params(classes):
    """The model weights of those of the classes with alternative models (nothing without any)."""
    weights = {
        c: ENGINE.classes[c].model_probabilities()
        for c in classes
        if ENGINE.classes[c].models
    }
    return {"model_probabilities": weights} if weights else {}


def shard_params(wildcards):
    """What a class group holds besides its particles: the shard size and the class's metadata."""
    return {
        "shard_size": ENGINE.dataset.shard_size,
        "class": ENGINE.classes[wildcards.cls].model_dump(
            mode="json",
            exclude=(
                None
                if ENGINE.classes[wildcards.cls].models
                else {"models", "model_weights"}
            ),
        ),
        "class_labels": CLASSES,
    }


def dataset_groups(wildcards):
    """Every class group the dataset will hold."""
    return expand(f"{DATASET}/classes/{{cls}}", cls=available_classes())


def dataset_of_group(class_group):
    """The dataset directory that holds a class group (``<dataset>/classes/<class>``)."""
    return os.path.dirname(os.path.dirname(class_group))


# The import of a user's particles (rules/import.smk).
IMPORT = ENGINE.import_particles
IMPORT_DIR = "results/import"


def import_settings():
    """The import_particles section (an error naming it when the config has none)."""
    if IMPORT is None:
        raise ValueError("the config has no import_particles section (see config.yaml)")
    return IMPORT


def import_inputs(wildcards):
    """The particle files (or copick config) of the import."""
    return [str(path) for path in import_settings().inputs]


def import_params(wildcards):
    """Every import setting, so that a changed one re-runs the jobs."""
    return import_settings().model_dump(mode="json")


def imported_tomograms(wildcards):
    """One intermediate per tomogram listed by the checkpoint."""
    with open(checkpoints.import_tomogram_list.get().output[0]) as handle:
        names = json.load(handle)
    return expand(f"{IMPORT_DIR}/tomograms/{{name}}.npz", name=names)
