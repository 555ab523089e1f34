"""Reading throughput of dataset.zarr: random access from 1 and 4 worker processes, and by shard.

Writes a synthetic dataset (default 2 classes × 2,000 particles, 32³ boxes, 4 SNR levels) to a temporary
directory, then reads it through :func:`cryoengine.store.open_dataset` and prints a markdown table. An
item is one particle's clean volume, its 4 noisy volumes and its 2 unit-noise volumes (896 KiB). The
data were just written, so reads come from the page cache: the figures measure decoding and Zarr
overhead, not the disk. Usage::

    .venv/bin/python benchmarks/store.py [--particles 2000] [--reads 2000] [--workers 1 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cryoengine.physics.rotation import random_rotations
from cryoengine.store import Dataset, open_dataset, write_class_group
from cryoengine.store.particle_set import ParticleSet

SNR_LEVELS = [0.1, 0.05, 0.03, 0.01]
_WORKER_DATASET: Dataset | None = None


def write_synthetic_dataset(path: Path, classes: int, particles: int, box: int, shard_size: int) -> float:
    """Write the dataset; return the seconds spent in write_class_group."""
    dataset_attrs = {
        "voxel_size_A": 10.0,
        "box": box,
        "snr_levels": SNR_LEVELS,
        "noise_realisations": 2,
        "class_labels": [f"class{k:02d}" for k in range(classes)],
    }
    seconds = 0.0
    for k in range(classes):
        rng = np.random.default_rng(k)
        clean = rng.standard_normal((particles, box, box, box), dtype=np.float32)
        unit_noise = rng.standard_normal((particles, 2, box, box, box), dtype=np.float32)
        noise = unit_noise[:, [level % 2 for level in range(len(SNR_LEVELS))]]
        scale = np.float32(clean.std()) / np.sqrt(np.array(SNR_LEVELS, dtype=np.float32))
        shift = rng.uniform(-0.5, 0.5, (particles, 3))
        particle_set = ParticleSet(
            clean=clean,
            noisy=clean[:, None] + noise * scale[None, :, None, None, None],
            noise=unit_noise,
            noise_scale=np.full(particles, clean.std()),
            snr=np.tile(np.array(SNR_LEVELS, dtype=np.float32), (particles, 1)),
            rotation=random_rotations(particles, rng),
            shift=shift,
            position=rng.integers(20, 400, (particles, 3)) + shift,
            tomogram=rng.integers(0, 10, particles),
            defocus_um=rng.uniform(2, 5, particles),
        )
        start = time.perf_counter()
        write_class_group(
            path, f"class{k:02d}", particle_set, {"name": f"class {k}"}, dataset_attrs, shard_size
        )
        seconds += time.perf_counter() - start
    return seconds


def _open_in_worker(path: Path) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = open_dataset(path)


def _read_items(indices: list[int]) -> int:
    assert _WORKER_DATASET is not None
    for index in indices:
        _WORKER_DATASET[index]
    return len(indices)


def random_access_rate(path: Path, workers: int, reads: int, seed: int) -> float:
    """Subtomograms per second over ``reads`` random indices split between ``workers`` processes."""
    length = len(open_dataset(path))
    indices = np.random.default_rng(seed).integers(0, length, reads).tolist()
    batches = [indices[k : k + 50] for k in range(0, reads, 50)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_open_in_worker, initargs=(path,)
    ) as pool:
        list(pool.map(_read_items, [[0]] * workers * 4))  # start every worker and open the dataset first
        start = time.perf_counter()
        done = sum(pool.map(_read_items, batches))
        seconds = time.perf_counter() - start
    return done / seconds


def in_process_rate(path: Path, reads: int, seed: int) -> float:
    dataset = open_dataset(path)
    indices = np.random.default_rng(seed).integers(0, len(dataset), reads).tolist()
    dataset[0]  # load the per-particle metadata of the first class outside the timing
    start = time.perf_counter()
    for index in indices:
        dataset[index]
    return reads / (time.perf_counter() - start)


def sequential_rate(path: Path) -> float:
    dataset = open_dataset(path)
    start = time.perf_counter()
    count = sum(len(block) for block in dataset.iter_shards())
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--particles", type=int, default=2000, help="per class")
    parser.add_argument("--box", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--reads", type=int, default=2000, help="random reads per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    item_MiB = (1 + len(SNR_LEVELS) + 2) * args.box**3 * 4 / 2**20  # clean, noisy levels, 2 unit noises
    with tempfile.TemporaryDirectory(prefix="store-benchmark-") as tmp:
        path = Path(tmp) / "dataset.zarr"
        write_seconds = write_synthetic_dataset(path, args.classes, args.particles, args.box, args.shard_size)
        total = args.classes * args.particles
        size_MiB = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
        rows = [("write_class_group", "1 (main)", total / write_seconds)]
        rows.append(("random access", "1 (main)", in_process_rate(path, args.reads, seed=0)))
        for workers in args.workers:
            rows.append(
                ("random access", f"{workers} (spawned)", random_access_rate(path, workers, args.reads, 1))
            )
        rows.append(("iter_shards (sequential)", "1 (main)", sequential_rate(path)))

    print(
        f"{args.classes} classes × {args.particles} particles, {args.box}³, {len(SNR_LEVELS)} SNR levels, "
        f"shards of {args.shard_size}; item {item_MiB:.3f} MiB; {size_MiB:.0f} MiB on disk "
        f"({total * item_MiB / size_MiB:.2f}× compression)"
    )
    print("| read | processes | subtomograms/s | MiB/s |")
    print("|---|---:|---:|---:|")
    for mode, processes, rate in rows:
        print(f"| {mode} | {processes} | {rate:.0f} | {rate * item_MiB:.0f} |")


if __name__ == "__main__":
    main()
