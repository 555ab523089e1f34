# Pre-training (not part of `all`): `snakemake pretrain` runs python -m aptvit.fit on the dataset this
# workflow built, from PDB entries to a trained encoder. The trainer's YAML is pretrain.config (default:
# the repository's configs/pretrain_gpu.yaml); the rule sets its dataset and output directory.


rule pretrain:
    input:
        dataset=rules.manifest.output,
    output:
        "results/pretrain/checkpoints/last.ckpt",
    log:
        "logs/pretrain.log",
    conda:
        "../../envs/aptvit-gpu.yaml"
    resources:
        gpu=1,
    params:
        config=PRETRAIN_CONFIG,
        dataset=DATASET,
        root=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
    shell:
        "python -m aptvit.fit --config {params.config} --data.datasets '[{params.dataset}]' "
        "--trainer.default_root_dir {params.root} > {log} 2>&1"
