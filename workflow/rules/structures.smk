# Atomic models: PDB entries into the local cache (cache → mirrors → RCSB), and the list of classes that
# exist once optional entries have been tried (a checkpoint: parsing fetches nothing).


rule fetch_structure:
    output:
        f"{STRUCTURE_CACHE}/{{pdb_id}}.cif.gz",
    log:
        "logs/fetch_structure/{pdb_id}.log",
    conda:
        "../../envs/cryoengine.yaml"
    resources:
        downloads=1,
    script:
        "../scripts/fetch_structure.py"


checkpoint available_classes:
    output:
        "results/available_classes.json",
    log:
        "logs/available_classes.log",
    conda:
        "../../envs/cryoengine.yaml"
    resources:
        downloads=1,
    params:
        optional=lambda wildcards: sorted(
            spec.pdb_id
            for spec in ENGINE.classes.values()
            if isinstance(spec, PdbSource) and spec.optional
        ),
    script:
        "../scripts/available_classes.py"
