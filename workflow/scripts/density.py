"""Adapter of rule density → cryoengine.stages.density."""

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
stages.density(
    config, snakemake.wildcards.cls, snakemake.output.map, int(snakemake.wildcards.get("model", 0))
)
