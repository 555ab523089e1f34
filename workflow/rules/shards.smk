# Dataset: each class's calibrated particles become its group of the sharded Zarr dataset (written
# beside, then swapped in), and the manifest fills the root attributes once every class is there.


rule shard:
    input:
        "results/particles/{cls}.npz",
    output:
        directory(f"{DATASET}/classes/{{cls}}"),
    log:
        "logs/shard/{cls}.log",
    benchmark:
        "results/benchmarks/shard/{cls}.tsv"
    conda:
        "../../envs/cryoengine.yaml"
    params:
        dataset=lambda wildcards, output: dataset_of_group(output[0]),
        depends=shard_params,
    script:
        "../scripts/shard.py"


rule manifest:
    input:
        dataset_groups,
    output:
        "results/dataset_manifest.json",
    log:
        "logs/manifest.log",
    conda:
        "../../envs/cryoengine.yaml"
    params:
        dataset=lambda wildcards, input: dataset_of_group(input[0]),
        classes=lambda wildcards: available_classes(),
    script:
        "../scripts/manifest.py"
