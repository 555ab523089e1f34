"""Adapter of checkpoint import_tomogram_list → cryoengine.stages.import_tomogram_names."""

import json
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

settings = validate_config(snakemake.config, origin="workflow config").import_particles
names = stages.import_tomogram_names(settings)
with open(snakemake.output[0], "w") as handle:
    json.dump(names, handle, indent=1)
