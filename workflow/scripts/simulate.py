"""Adapter of rule simulate → cryoengine.stages.simulate_tomogram."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from cryoengine import stages
from cryoengine.config import validate_config
from cryoengine.formats.provenance import record_invocation

record_invocation(
    ["snakemake", "rule", snakemake.rule, *(f"{k}={v}" for k, v in snakemake.wildcards.items())]
)

config = validate_config(snakemake.config, origin="workflow config")
densities = dict(zip(snakemake.params.classes, snakemake.input.densities, strict=True))
alternatives = iter(snakemake.input.models)  # models 1, 2, ... of each class in turn (rules/common.smk)
models = {c: [next(alternatives) for _ in config.classes[c].models] for c in snakemake.params.classes}
stages.simulate_tomogram(
    config,
    snakemake.wildcards.cls,
    int(snakemake.wildcards.tomogram),
    densities,
    snakemake.output[0],
    snakemake.output.motifs,
    models,
)
