"""Time the imaging stages for one tomogram: sample, projection, CTF/exposure, noise, reconstruction, SNR.

Prints a markdown table: median seconds per tomogram and subtomograms per second for each stage, and for
the real per-tomogram stage functions (``stages.simulate_tomogram`` + ``stages.calibrate_noise``, reading
densities and writing files) on four procedural classes, the target crowded by the other three. Usage::

    .venv/bin/python benchmarks/imaging.py [--shape 48 192 192] [--particles 12] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cryoengine import stages as engine_stages
from cryoengine.config import validate_config
from cryoengine.formats.mrc import read_volume
from cryoengine.physics.ctf import draw_ctf_parameters
from cryoengine.physics.extraction import extract_subtomograms
from cryoengine.physics.imaging import simulate_particles
from cryoengine.physics.noise import mix_noise_at_snr_levels
from cryoengine.physics.placement import density_to_support_mask, place_particles, render_sample
from cryoengine.physics.projector import project_volume_to_tilts, resolve_backend
from cryoengine.physics.reconstruction import reconstruct_tilts_to_volume
from cryoengine.physics.tilt import TiltScheme, apply_ctf_and_exposure_to_tilts, draw_detector_noise_tilts


def _median_seconds(function, repeats: int) -> tuple[float, float]:
    """Median wall-clock and process-CPU seconds (CPU time is robust to other jobs on a shared machine)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 192, 192), metavar=("NZ", "NY", "NX"))
    parser.add_argument("--particles", type=int, default=12, help="subtomograms cut from each tomogram")
    parser.add_argument("--box", type=int, default=32)
    parser.add_argument("--snr-levels", type=float, nargs="+", default=[0.1, 0.05, 0.03, 0.01])
    parser.add_argument("--method", choices=["wbp", "sirt"], default="wbp")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--crowding", type=float, default=0.05, help="crowding fraction of the sample")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    config = validate_config(
        {
            "box": args.box,
            "sample": {
                "slab_shape_zyx": list(args.shape),
                "particles_per_tomogram": args.particles,
                "crowding_fraction": args.crowding,
                "tomograms_per_class": 1,
            },
            "reconstruction": {"method": args.method, "backend": args.device},
            "noise": {"snr_levels": args.snr_levels, "device": args.device},
            "classes": {
                "ring": {"kind": "phantom", "shape": "ring", "diameter_A": 180, "subunits": 7, "seed": 1},
                "cage": {"kind": "phantom", "shape": "cage", "diameter_A": 200, "subunits": 24, "seed": 2},
                "helix": {"kind": "phantom", "shape": "helix", "diameter_A": 220, "subunits": 12, "seed": 3},
                "blob": {"kind": "phantom", "shape": "blob", "diameter_A": 160, "subunits": 5, "seed": 4},
            },
        }
    )
    scratch = Path(tempfile.mkdtemp(prefix="imaging-benchmark-"))
    density_paths = {
        c: engine_stages.density(config, c, scratch / f"{c}.mrc") for c in sorted(config.classes)
    }
    densities = [read_volume(density_paths[c])[0] for c in sorted(config.classes)]
    masks = [density_to_support_mask(d, 0.05, 1) for d in densities]

    def placement():
        return place_particles(
            config.sample.slab_shape_zyx,
            masks,
            args.particles,
            0,
            args.crowding,
            np.random.default_rng(0),
            target_box=args.box,
        )

    placements = placement()

    rng = np.random.default_rng(0)
    shape = tuple(args.shape)
    sample = rng.random(shape, dtype=np.float32)  # content does not change the cost
    half = args.box // 2
    low = np.array([half, half, half])
    high = np.array(shape) - args.box + half
    centres = rng.uniform(low, high, size=(args.particles, 3))
    scheme = TiltScheme()
    geometry = scheme.geometry(shape)
    ctf = draw_ctf_parameters(rng)
    backend = resolve_backend(args.device)
    levels = np.array(args.snr_levels)

    start = time.perf_counter()
    projections = project_volume_to_tilts(sample, geometry, backend)  # builds the cached system matrix
    first_call_s = time.perf_counter() - start
    tilts = apply_ctf_and_exposure_to_tilts(projections, scheme, ctf, 10.0)
    noise_tilts = draw_detector_noise_tilts(geometry.tilts_shape, rng)
    tomogram = reconstruct_tilts_to_volume(tilts, geometry, args.method, backend=backend)
    noise_tomogram = reconstruct_tilts_to_volume(noise_tilts, geometry, args.method, backend=backend)
    clean, _ = extract_subtomograms(tomogram, centres, args.box)
    noise, _ = extract_subtomograms(noise_tomogram, centres, args.box)

    settings = config.imaging_settings(isolation_margin_vox=8)

    def end_to_end() -> None:
        imaged = simulate_particles(densities, 0, densities[-1], settings, np.random.default_rng(0))
        mix_noise_at_snr_levels(
            imaged.clean,
            imaged.noise,
            np.full(len(imaged.clean), imaged.noise_scale),
            levels,
            imaged.signal_variance,
            device=args.device,
        )

    def stage_functions() -> None:
        tomogram_path = engine_stages.simulate_tomogram(config, "blob", 0, density_paths, scratch / "t0.npz")
        engine_stages.calibrate_noise(config, "blob", [tomogram_path], scratch / "blob.npz")

    stages = {
        f"placement ({len(placements.class_index)} particles incl. crowders)": placement,
        "rendering the sample": lambda: render_sample(config.sample.slab_shape_zyx, densities, placements),
        "projection (FP)": lambda: project_volume_to_tilts(sample, geometry, backend),
        "CTF + exposure filter": lambda: apply_ctf_and_exposure_to_tilts(projections, scheme, ctf, 10.0),
        "detector noise draw": lambda: draw_detector_noise_tilts(geometry.tilts_shape, rng),
        f"{args.method.upper()} of signal": lambda: reconstruct_tilts_to_volume(
            tilts, geometry, args.method, backend=backend
        ),
        f"{args.method.upper()} of noise": lambda: reconstruct_tilts_to_volume(
            noise_tilts, geometry, args.method, backend=backend
        ),
        "extraction (clean + noise)": lambda: (
            extract_subtomograms(tomogram, centres, args.box),
            extract_subtomograms(noise_tomogram, centres, args.box),
        ),
        f"SNR mixing ({levels.size} levels)": lambda: mix_noise_at_snr_levels(
            clean,
            noise[:, None],
            np.ones(len(clean)),
            levels,
            clean.var(axis=(1, 2, 3), dtype=np.float64),
            device=args.device,
        ),
        "imaging end to end (simulate_particles + SNR mixing, no files)": end_to_end,
        "simulate_tomogram + calibrate_noise (everything, files included)": stage_functions,
    }
    print(
        f"tomogram {shape[0]}×{shape[1]}×{shape[2]} (z, y, x), {geometry.tilts_shape[0]} tilts, "
        f"{args.particles} subtomograms of {args.box}³, {levels.size} SNR levels, {args.method.upper()}, "
        f"projector backend {backend}, noise device {args.device}; "
        f"{platform.processor() or platform.machine()}; median of {args.repeats}\n"
    )
    print("| stage | wall s per tomogram | CPU s per tomogram | subtomograms / s (wall) |")
    print("|---|---:|---:|---:|")
    print(f"| first projection incl. system matrix (once per geometry) | {first_call_s:.3f} | | |")
    for name, function in stages.items():
        wall_s, cpu_s = _median_seconds(function, args.repeats)
        print(f"| {name} | {wall_s:.3f} | {cpu_s:.3f} | {args.particles / wall_s:.0f} |")


if __name__ == "__main__":
    main()
