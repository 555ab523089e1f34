"""How hard the realism effects make the data: raw-voxel PCA + logistic regression and template matching.

A 10-class dataset from ``../shared/data/polnet/pdbs`` (atomic models as they are, asymmetric unit) is
simulated with every realism effect group of ``config.yaml`` off, all on, and all on minus each group,
with the same seeds (so placements, CTFs and detector noise are the same across the variants of a
tomogram; each effect draws from its own stream). Each variant is scored, per SNR level, by

* raw-voxel PCA (32 components) + logistic regression, two folds split by tomogram
  (:func:`aptvit.tasks.classify.raw_voxel_pca_features`, :func:`aptvit.tasks.classify.linear_probe`);
* template matching with the undeformed generating maps: each map negated (protein is dark without CTF
  correction), band-limited to 40 Å (before the first CTF zero at 2-5 µm), rotated over a 30° grid
  (:func:`aptvit.tasks.align.rotation_grid`, 551 rotations) and weighted by the missing wedge
  (:class:`aptvit.tasks.wedge.MissingWedge`); each box is scored by the normalised correlation at its
  centre (the boxes are centred on the true particle to half a voxel, so no translation is searched)
  and classified by its best map.

Prints a markdown table (and writes it with ``--out``) plus the generation cost of each variant (s per
tomogram, wall clock, one process). Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/difficulty.py --out results/difficulty.md
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from aptvit.rotation import rotate_volumes
from aptvit.tasks.align import rotation_grid
from aptvit.tasks.classify import linear_probe, raw_voxel_pca_features
from aptvit.tasks.wedge import MissingWedge, fourier_frequencies_zyx
from cryoengine.config import validate_config
from cryoengine.physics.density import BoxTooSmallError, atoms_to_density
from cryoengine.physics.imaging import simulate_particles
from cryoengine.physics.noise import mix_noise_at_snr_levels
from cryoengine.stages import tomogram_seed
from cryoengine.structure.atoms import read_atoms
from cryoengine.structure.phantom import phantom_atoms

REPO = Path(__file__).resolve().parents[1]
#: Effect groups and the config keys each one switches (off = the values of the idealised chain).
GROUPS = ("ice", "background", "crowding", "acquisition", "variety")
TEMPLATE_RESOLUTION_A = 40.0
TEMPLATE_STEP_DEG = 30.0


def realism_sections(on: set[str]) -> dict:
    """Config sections with the groups in ``on`` as in config.yaml and the others off."""
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    sample, optics = shipped["sample"], shipped["optics"]
    sections: dict = {
        "sample": {
            "ice": {**sample["ice"], "enabled": "ice" in on},
            "background": {**sample["background"], "enabled": "background" in on},
            "touching_cores": sample["touching_cores"] if "crowding" in on else False,
            "crowding_fraction": sample["crowding_fraction"] if "crowding" in on else 0.05,
        },
        "optics": {"astigmatism_max_um": optics["astigmatism_max_um"] if "acquisition" in on else 0.0},
        "acquisition": copy.deepcopy(shipped["acquisition"]),
        "variety": copy.deepcopy(shipped["variety"]),
    }
    for part in sections["acquisition"].values():
        part["enabled"] = "acquisition" in on and part["enabled"]
    for part in sections["variety"].values():
        part["enabled"] = "variety" in on and part["enabled"]
    return sections


def class_maps(pdb_dir: Path, n_classes: int, voxel_A: float, box: int) -> dict[str, np.ndarray]:
    """Densities of the first ``n_classes`` PDB files (sorted) that fit the box."""
    maps = {}
    for path in sorted(pdb_dir.glob("*.pdb")):
        try:
            maps[path.stem] = atoms_to_density(read_atoms(path, assembly=None), voxel_A, box, 2 * voxel_A, 2)
        except BoxTooSmallError:
            continue
        if len(maps) == n_classes:
            break
    return maps


def wedge_templates(maps: list[np.ndarray], wedge: MissingWedge, voxel_A: float) -> torch.Tensor:
    """`(C, R, V)` unit-norm, zero-mean templates: each map negated, band-limited, rotated, wedge-weighted."""
    box = maps[0].shape[0]
    shape = (box,) * 3
    grid = rotation_grid(TEMPLATE_STEP_DEG)
    band = fourier_frequencies_zyx(shape).norm(dim=-1) <= voxel_A / TEMPLATE_RESOLUTION_A
    band[0, 0, 0] = False
    weight = band * wedge.weight(shape)
    templates = []
    for volume in maps:
        rotated = rotate_volumes(-torch.as_tensor(volume).expand(len(grid), 1, *shape), grid)[:, 0]
        filtered = torch.fft.ifftn(torch.fft.fftn(rotated, dim=(-3, -2, -1)) * weight, dim=(-3, -2, -1)).real
        flat = filtered.flatten(1)
        templates.append(flat / flat.norm(dim=1, keepdim=True))
    return torch.stack(templates)


def template_matching_accuracy(
    volumes: np.ndarray, labels: np.ndarray, templates: torch.Tensor, voxel_A: float
) -> float:
    """Accuracy of classifying each box by its best template (correlation at the box centre)."""
    box = volumes.shape[-1]
    band = fourier_frequencies_zyx((box,) * 3).norm(dim=-1) <= voxel_A / TEMPLATE_RESOLUTION_A
    band[0, 0, 0] = False
    boxes = torch.as_tensor(volumes, dtype=torch.float32)
    filtered = torch.fft.ifftn(torch.fft.fftn(boxes, dim=(-3, -2, -1)) * band, dim=(-3, -2, -1)).real
    flat = filtered.flatten(1)
    flat = flat / flat.norm(dim=1, keepdim=True)
    n_classes, n_rotations, n_voxels = templates.shape
    scores = (flat @ templates.reshape(-1, n_voxels).T).reshape(len(flat), n_classes, n_rotations)
    predicted = scores.amax(dim=2).argmax(dim=1).numpy()
    return float(np.mean(predicted == labels))


def simulate_variant(
    on: set[str], maps: dict[str, np.ndarray], reference: np.ndarray, args: argparse.Namespace
) -> tuple[dict[str, np.ndarray], float]:
    """Every class's tomograms with the groups ``on``: boxes, labels, tomograms, noise; s per tomogram."""
    data = {
        "voxel_size_A": args.voxel_A,
        "box": args.box,
        **realism_sections(on),
        "classes": {name: {"kind": "phantom", "shape": "blob"} for name in maps},  # maps are given
    }
    data["sample"].update(
        {"slab_shape_zyx": args.slab, "particles_per_tomogram": args.particles, "tomograms_per_class": 2}
    )
    data["tilt"] = {"step_deg": args.tilt_step}
    data["reconstruction"] = {"backend": "cpu"}
    config = validate_config(data)
    settings = config.imaging_settings(8)
    densities = list(maps.values())
    clean, noise, scale, variance, labels, tomograms = [], [], [], [], [], []
    start = time.perf_counter()
    for label, name in enumerate(maps):
        for tomogram in range(args.tomograms):
            rng = np.random.default_rng(tomogram_seed(0, name, tomogram))
            imaged = simulate_particles(densities, label, reference, settings, rng)
            clean.append(imaged.clean)
            noise.append(imaged.noise)
            scale.append(np.full(len(imaged.clean), imaged.noise_scale))
            variance.append(imaged.signal_variance)
            labels.append(np.full(len(imaged.clean), label))
            tomograms.append(np.full(len(imaged.clean), tomogram))
    seconds = (time.perf_counter() - start) / (len(maps) * args.tomograms)
    arrays = {
        "clean": np.concatenate(clean),
        "noise": np.concatenate(noise),
        "noise_scale": np.concatenate(scale),
        "signal_variance": np.concatenate(variance),
        "labels": np.concatenate(labels),
        "tomograms": np.concatenate(tomograms),
    }
    return arrays, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pdbs", type=Path, default=REPO.parent / "shared" / "data" / "polnet" / "pdbs")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--tomograms", type=int, default=2)
    parser.add_argument("--particles", type=int, default=12)
    parser.add_argument("--box", type=int, default=32)
    parser.add_argument("--voxel-A", type=float, default=10.0)
    parser.add_argument("--slab", type=int, nargs=3, default=[40, 128, 128])
    parser.add_argument("--tilt-step", type=float, default=3.0)
    parser.add_argument("--snr", type=float, nargs="+", default=[0.1, 0.03, 0.01])
    parser.add_argument("--variants", nargs="+", default=None, help="subset of all_off all_on no_<group>")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    start = time.perf_counter()
    maps = class_maps(args.pdbs, args.classes, args.voxel_A, args.box)
    reference = atoms_to_density(
        phantom_atoms("blob", 0.5 * args.box * args.voxel_A, 7, 0),
        args.voxel_A,
        args.box,
        2 * args.voxel_A,
        2,
    )
    templates = wedge_templates(list(maps.values()), MissingWedge(-60.0, 60.0), args.voxel_A)
    setup_s = time.perf_counter() - start
    variants = {"all_off": set(), "all_on": set(GROUPS), **{f"no_{g}": set(GROUPS) - {g} for g in GROUPS}}
    if args.variants:
        variants = {name: variants[name] for name in args.variants}

    rows, costs = [], []
    for name, on in variants.items():
        arrays, seconds = simulate_variant(on, maps, reference, args)
        costs.append((name, seconds))
        levels = np.asarray(args.snr)
        noisy, measured = mix_noise_at_snr_levels(
            arrays["clean"],
            arrays["noise"],
            arrays["noise_scale"],
            levels,
            arrays["signal_variance"],
            device="cpu",
        )
        for level_index, level in enumerate(levels):
            volumes = noisy[:, level_index]
            probe = linear_probe(
                raw_voxel_pca_features(volumes), arrays["labels"], arrays["tomograms"], n_splits=2
            )
            tm = template_matching_accuracy(volumes, arrays["labels"], templates, args.voxel_A)
            rows.append((name, level, float(np.median(measured[:, level_index])), probe.accuracy_mean, tm))
        clean_tm = template_matching_accuracy(arrays["clean"], arrays["labels"], templates, args.voxel_A)
        rows.append((name, np.inf, np.inf, np.nan, clean_tm))

    lines = [
        f"{len(maps)} classes ({', '.join(maps)}), {args.tomograms} tomograms × {args.particles} particles, "
        f"box {args.box} at {args.voxel_A:g} Å, slab {args.slab}, tilts ±60° / {args.tilt_step:g}°; "
        f"{platform.node()} ({platform.processor() or platform.machine()}), torch threads 1; "
        f"setup (maps, templates) {setup_s:.0f} s.",
        "",
        "| variant | nominal SNR | median measured SNR | PCA + LR accuracy | template matching accuracy |",
        "|---|---|---|---|---|",
    ]
    for name, level, measured_snr, probe_accuracy, tm in rows:
        probe_text = "–" if np.isnan(probe_accuracy) else f"{probe_accuracy:.2f}"
        level_text = "∞ (clean)" if np.isinf(level) else f"{level:g}"
        measured_text = "∞" if np.isinf(measured_snr) else f"{measured_snr:.3g}"
        lines.append(f"| {name} | {level_text} | {measured_text} | {probe_text} | {tm:.2f} |")
    lines += ["", "| variant | generation (s per tomogram) |", "|---|---|"]
    lines += [f"| {name} | {seconds:.2f} |" for name, seconds in costs]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
