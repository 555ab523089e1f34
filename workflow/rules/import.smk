# A user's particles → an observed dataset (optional, not part of all: `snakemake import_particles`), from
# the config's import_particles section (cryoengine.config.ImportSettings). A checkpoint lists the
# tomograms the particle files refer to (parsing reads only the config), one job per tomogram cuts its
# boxes, and one job merges them into the dataset (atomically). Input functions: rules/common.smk.


checkpoint import_tomogram_list:
    input:
        import_inputs,
    output:
        f"{IMPORT_DIR}/tomograms.json",
    log:
        "logs/import/tomograms.log",
    conda:
        "../../envs/cryoengine.yaml"
    params:
        settings=import_params,
    script:
        "../scripts/import_tomogram_list.py"


rule import_tomogram:
    input:
        import_inputs,
        listed=f"{IMPORT_DIR}/tomograms.json",
    output:
        f"{IMPORT_DIR}/tomograms/{{name}}.npz",
    log:
        "logs/import/{name}.log",
    wildcard_constraints:
        name="[^/]+",
    conda:
        "../../envs/cryoengine.yaml"
    params:
        settings=import_params,
    script:
        "../scripts/import_tomogram.py"


rule import_particles:
    input:
        imported_tomograms,
    output:
        directory(str(IMPORT.output if IMPORT else "results/imported.zarr")),
    log:
        "logs/import/merge.log",
    conda:
        "../../envs/cryoengine.yaml"
    params:
        settings=import_params,
    script:
        "../scripts/import_particles.py"
