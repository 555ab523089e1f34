# Validation of the config (JSON schema generated from cryoengine.config, then the typed models) and the
# input functions shared by the rules.
import os

from snakemake.utils import validate

from cryoengine.config import FileSource, MapSource, PdbSource, read_config_yaml, validate_config
from cryoengine.projector import cuda_available
from cryoengine.stages import available_classes

for configfile_path in workflow.configfiles:
    read_config_yaml(configfile_path)  # repeated keys are errors (YAML keeps the last one silently)
validate(config, "../schemas/config.schema.json", set_default=False)
ENGINE = validate_config(config, origin="workflow config")
CLASSES = available_classes(ENGINE)
STRUCTURE_CACHE = str(ENGINE.structures.cache_dir)
TOMOGRAMS = range(ENGINE.sample.tomograms_per_class)
DATASET = str(ENGINE.dataset.path)
# simulate holds a GPU when its projector runs on CUDA ("auto" decides on the machine that plans the jobs;
# on a cluster whose login node has no GPU, set reconstruction.backend: cuda).
SIMULATE_GPUS = int(
    ENGINE.reconstruction.backend == "cuda"
    or (ENGINE.reconstruction.backend == "auto" and cuda_available())
)


wildcard_constraints:
    cls="|".join(CLASSES) or "^$",
    pdb_id="[0-9][A-Za-z0-9]{3}",
    tomogram="[0-9]+",


def density_inputs(wildcards):
    """The structure file a class's density is built from (none for a procedural phantom)."""
    spec = ENGINE.classes[wildcards.cls]
    if isinstance(spec, PdbSource):
        return {"structure": f"{STRUCTURE_CACHE}/{spec.pdb_id}.cif.gz"}
    if isinstance(spec, (FileSource, MapSource)):
        return {"structure": str(spec.path)}
    return {}


def density_params(wildcards):
    """Everything a class's density depends on, so that changing it re-runs only that class's rule."""
    return {
        "voxel_size_A": ENGINE.voxel_size_A,
        "box": ENGINE.box,
        "density": ENGINE.density.model_dump(mode="json"),
        "source": ENGINE.classes[wildcards.cls].model_dump(mode="json"),
    }


def simulate_params(wildcards):
    """Everything a tomogram depends on besides the density maps."""
    return {
        "box": ENGINE.box,
        "sample": ENGINE.sample.model_dump(mode="json"),
        "tilt": ENGINE.tilt.model_dump(mode="json"),
        "optics": ENGINE.optics.model_dump(mode="json"),
        "reconstruction": ENGINE.reconstruction.model_dump(mode="json"),
    }


def dataset_of_group(class_group):
    """The dataset directory that holds a class group (``<dataset>/classes/<class>``)."""
    return os.path.dirname(os.path.dirname(class_group))
