"""Benchmark the downstream tasks: seconds per aligned particle (exhaustive vs refinement), embedding rate.

Prints Markdown tables (the format of ``docs/benchmarks.md``). Examples::

    .venv/bin/python benchmarks/evaluate.py                                  # box 32, 4 particles, CPU
    .venv/bin/python benchmarks/evaluate.py --box 24 --particles 8 --snr 0.1
    .venv/bin/python benchmarks/evaluate.py --device cuda --encoder aptvit_small_p8 --embed-count 65536

Alignment: noise-free (or ``--snr``) wedge-filtered copies of a smooth asymmetric phantom at random poses
are aligned to the phantom, in one run, by the classical exhaustive search (global grid at
``--global-step``, then 5° and 2° refinement) and by :func:`aptvit.tasks.refine_alignment` started from
the true rotation perturbed by ``--start-error`` degrees about a random axis (standing in for the SE(3)
head's prediction, whose own cost is not counted). Embedding: :func:`aptvit.tasks.embed_volumes` of random
boxes through a freshly initialised encoder; the first batch is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from aptvit.models import create_encoder, list_encoders
from aptvit.rotation import random_rotations, rotate_volumes
from aptvit.tasks import (
    MissingWedge,
    align_exhaustive,
    alignment_errors,
    embed_volumes,
    refine_alignment,
    rotation_grid,
)


def blob_phantom(box: int) -> torch.Tensor:
    """`(box, box, box)` sum of five Gaussian blobs, asymmetric, sizes scaled with the box."""
    scale = box / 16
    offset = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(offset, offset, offset, indexing="ij")
    centres = [(0.0, 0.0, 0.0), (3.5, 0.0, 0.0), (0.0, 2.5, -2.0), (-2.0, -2.5, 2.5), (1.0, 3.5, 3.0)]
    widths, heights = [1.8, 1.3, 1.3, 1.1, 1.1], [1.0, 0.8, 0.6, 0.7, 0.5]
    return sum(
        h
        * torch.exp(
            -((z - scale * c[0]) ** 2 + (y - scale * c[1]) ** 2 + (x - scale * c[2]) ** 2)
            / (2 * (scale * w) ** 2)
        )
        for c, w, h in zip(centres, widths, heights, strict=True)
    )


def benchmark_alignment(args: argparse.Namespace, device: torch.device) -> list[dict[str, float | str]]:
    """Align the same particles by both methods; one row per method."""
    generator = torch.Generator().manual_seed(0)
    wedge = MissingWedge(-60.0, 60.0)
    reference = blob_phantom(args.box)
    rotation = random_rotations(args.particles, generator)
    shift = torch.rand(args.particles, 3, generator=generator) * 4 - 2
    moved = rotate_volumes(reference.expand(args.particles, 1, *reference.shape), rotation, shift)[:, 0]
    weight = wedge.weight(reference.shape)
    particles = torch.fft.ifftn(torch.fft.fftn(moved, dim=(-3, -2, -1)) * weight, dim=(-3, -2, -1)).real
    if args.snr is not None:
        noise = torch.fft.ifftn(
            torch.fft.fftn(torch.randn(particles.shape, generator=generator), dim=(-3, -2, -1)) * weight,
            dim=(-3, -2, -1),
        ).real
        scale = torch.sqrt(particles.var(dim=(1, 2, 3), keepdim=True) / args.snr) / noise.std(
            dim=(1, 2, 3), keepdim=True
        )
        particles = particles + scale * noise
    axis = torch.nn.functional.normalize(torch.randn(args.particles, 3, generator=generator), dim=1)
    skew = torch.zeros(args.particles, 3, 3)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    start = torch.linalg.matrix_exp(math.radians(args.start_error) * (skew - skew.transpose(1, 2))) @ rotation
    particles, reference = particles.to(device), reference.to(device)
    rows = []
    for method in ("exhaustive", "refine"):
        begin, begin_cpu = time.perf_counter(), time.process_time()
        if method == "exhaustive":
            result = align_exhaustive(
                particles,
                reference,
                particle_wedge=wedge,
                global_step_deg=args.global_step,
                local_steps_deg=(5.0, 2.0),
            )
        else:
            result = refine_alignment(
                particles, reference, start.to(device), particle_wedge=wedge, steps_deg=(5.0, 2.0)
            )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - begin) / args.particles
        cpu_seconds = (time.process_time() - begin_cpu) / args.particles
        errors = alignment_errors(result.rotation.cpu(), rotation, result.shift_zyx_vox.cpu(), shift)
        rows.append(
            {
                "method": method,
                "seconds_per_particle": seconds,
                "cpu_seconds_per_particle": cpu_seconds,
                **errors,
            }
        )
    return rows


def benchmark_embedding(args: argparse.Namespace, device: torch.device) -> float:
    """Subtomograms per wall second of :func:`embed_volumes` (fp32, no autocast)."""
    torch.manual_seed(0)
    encoder = create_encoder(args.encoder, phase_selector=args.phase_selector).to(device)
    volumes = torch.randn(args.embed_count, args.box, args.box, args.box)
    embed_volumes(encoder, volumes[: args.batch_size], batch_size=args.batch_size, progress=False)  # warm-up
    begin = time.perf_counter()
    embed_volumes(encoder, volumes, batch_size=args.batch_size, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return args.embed_count / (time.perf_counter() - begin)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--box", type=int, default=32, help="edge of the subtomograms, voxels")
    parser.add_argument("--particles", type=int, default=4, help="particles aligned by each method")
    parser.add_argument(
        "--global-step", type=float, default=10.0, help="global grid step of the exhaustive search, °"
    )
    parser.add_argument("--start-error", type=float, default=10.0, help="error of the refinement's start, °")
    parser.add_argument("--snr", type=float, default=None, help="add wedge-filtered noise at this SNR")
    parser.add_argument("--encoder", default="aptvit_tiny_p8", choices=list_encoders())
    parser.add_argument("--phase-selector", default="norm", choices=["steerable", "norm", "fixed"])
    parser.add_argument("--embed-count", type=int, default=256, help="subtomograms embedded")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--skip-alignment", action="store_true")
    parser.add_argument("--skip-embedding", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {torch.get_num_threads()} threads"
    )
    print(f"device: {name}; {platform.machine()}; box {args.box}³; wall-clock seconds")
    if not args.skip_alignment:
        n_grid = len(rotation_grid(args.global_step))
        snr = "noise-free" if args.snr is None else f"SNR {args.snr}"
        print(
            f"\nalignment of {args.particles} particles ({snr}, wedge ±60°); exhaustive: {n_grid} rotations "
            f"at {args.global_step}° then 5°/2°; refine: start {args.start_error}° off, 5°/2°\n"
        )
        print(
            "| method | wall s / particle | CPU s / particle | median error (°) | within 10° "
            "| median shift error (vox) |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        rows = benchmark_alignment(args, device)
        for row in rows:
            print(
                f"| {row['method']} | {row['seconds_per_particle']:.3f} "
                f"| {row['cpu_seconds_per_particle']:.3f} "
                f"| {row['rotation_error_median_deg']:.2f} | {row['fraction_below_10deg']:.0%} "
                f"| {row['translation_error_median_vox']:.2f} |"
            )
        ratio = rows[0]["seconds_per_particle"] / rows[1]["seconds_per_particle"]
        ratio_cpu = rows[0]["cpu_seconds_per_particle"] / rows[1]["cpu_seconds_per_particle"]
        print(f"\nexhaustive / refine time: {ratio:.0f}× wall, {ratio_cpu:.0f}× CPU")
    if not args.skip_embedding:
        rate = benchmark_embedding(args, device)
        print(
            f"\nembedding: {args.encoder} (phase_selector={args.phase_selector}), {args.embed_count} "
            f"subtomograms, batch {args.batch_size}: {rate:.1f} subtomograms/s"
        )


if __name__ == "__main__":
    main()
