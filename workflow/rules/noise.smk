# Noise levels: a class's subtomograms at every SNR level (signal + α₁/√s · noise[l mod K], α₁ class-blind
# per tomogram), each particle's own SNR measured. Depends on the SNR levels only.


rule noise:
    input:
        tomograms=lambda wildcards: expand(
            "results/particles/{cls}/tomogram_{tomogram}.npz",
            cls=wildcards.cls,
            tomogram=TOMOGRAMS,
        ),
    output:
        temp("results/particles/{cls}.npz"),
    log:
        "logs/noise/{cls}.log",
    benchmark:
        "results/benchmarks/noise/{cls}.tsv"
    conda:
        "../../envs/cryoengine.yaml"
    params:
        depends=lambda wildcards: ENGINE.noise.snr_levels,
    script:
        "../scripts/noise.py"
