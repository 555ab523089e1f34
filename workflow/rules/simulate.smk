# Imaging: one rule per (class, tomogram) simulates the crowded sample, its CTF tilt series and the
# reconstructions of signal and K detector-noise realisations, and cuts the class's subtomograms with ground
# truth. A tomogram reads the maps of its target and of the few classes that may crowd it (drawn from its
# seed: sample.crowder_classes), so a changed class re-simulates its own tomograms and those it crowds. The
# per-tomogram files are kept: SNR levels and shard size are applied downstream and never re-run this.
# Beside each, its motif list (every particle and crowder placed) and, with export.tomograms, the
# noise-free tomogram and its label map as MRC.


rule simulate:
    input:
        unpack(simulate_inputs),
    output:
        "results/particles/{cls}/tomogram_{tomogram}.npz",
        motifs="results/particles/{cls}/tomogram_{tomogram}.motifs.star",
    log:
        "logs/simulate/{cls}/tomogram_{tomogram}.log",
    benchmark:
        "results/benchmarks/simulate/{cls}/tomogram_{tomogram}.tsv"
    conda:
        "../../envs/cryoengine-gpu.yaml"
    resources:
        gpu=SIMULATE_GPUS,
    params:
        classes=tomogram_classes,
        depends=simulate_params,
    script:
        "../scripts/simulate.py"
