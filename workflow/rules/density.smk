# Density maps: one electron-scattering map per class at the configured voxel size and box, and one per
# alternative model of a class (classes.<id>.models), each its own job.


rule density:
    input:
        unpack(density_inputs),
    output:
        map="results/density/{cls}.mrc",
        provenance="results/density/{cls}.mrc.json",
    log:
        "logs/density/{cls}.log",
    benchmark:
        "results/benchmarks/density/{cls}.tsv"
    conda:
        "../../envs/cryoengine.yaml"
    params:
        depends=density_params,
    script:
        "../scripts/density.py"


use rule density as density_model with:
    output:
        map="results/density/{cls}.model{model}.mrc",
        provenance="results/density/{cls}.model{model}.mrc.json",
    log:
        "logs/density/{cls}.model{model}.log",
    benchmark:
        "results/benchmarks/density/{cls}.model{model}.tsv"
