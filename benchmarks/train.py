"""Pre-training throughput (issue 9): the loader alone, the training step alone, and the two together.

Step part (``--step``): the training step of :class:`aptvit.training.PretrainModule` on one synthetic batch
held on the device (no loader), then ``Trainer.fit`` over the dataset (loader + step), in one run, for an
encoder variant; end-to-end / step-alone is the fraction of the step's speed the loader lets through.

Loader part: items/s of the shard-streaming data module per worker.

Writes a synthetic format-2 dataset (default 4 classes × 500 particles of 32³, 10 tomograms per class,
4 SNR levels, K = 2 unit-noise volumes, shards of 256) to a temporary directory, then streams one training
epoch of :class:`aptvit.data.SubtomogramDataModule` with 0, 1 and 2 loader workers and prints a markdown
table. The data were just written, so reads come from the page cache: the figures measure decoding, view
construction and batching, not the disk. A breakdown in one process splits an item's time into the store
read (``Dataset.read_block`` of whole shards), the per-item views, batch collation, and the device-side
finish (``on_after_batch_transfer``: rigid transform + standardisation; here on the CPU, on the GPU when
training there, and not part of the loader's cost). Usage::

    .venv/bin/python benchmarks/train.py [--classes 4] [--particles 500] [--workers 0 1 2]
    .venv/bin/python benchmarks/train.py --step aptvit_nano_p8 [--device cuda --precision bf16-mixed]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from aptvit.data import SubtomogramDataModule
from aptvit.data.stream import READ_ROWS
from cryoengine.physics.rotation import random_rotations
from cryoengine.store import write_class_group, write_manifest
from cryoengine.store.particle_set import ParticleSet

SNR_LEVELS = [0.1, 0.05, 0.03, 0.01]
REALISATIONS = 2


def write_synthetic_dataset(path: Path, classes: int, particles: int, box: int, tomograms: int) -> list[str]:
    """Write a format-2 dataset of random volumes; return the class ids."""
    class_ids = [f"class{k:02d}" for k in range(classes)]
    attrs = {
        "voxel_size_A": 10.0,
        "box": box,
        "snr_levels": SNR_LEVELS,
        "noise_realisations": REALISATIONS,
        "class_labels": class_ids,
    }
    for k, class_id in enumerate(class_ids):
        rng = np.random.default_rng(k)
        clean = rng.standard_normal((particles, box, box, box), dtype=np.float32)
        noise = rng.standard_normal((particles, REALISATIONS, box, box, box), dtype=np.float32)
        scale = np.full(particles, clean.std(), dtype=np.float32)
        levels = np.sqrt(np.array(SNR_LEVELS, dtype=np.float32))
        noisy = (
            clean[:, None]
            + scale[:, None, None, None, None]
            / levels[None, :, None, None, None]
            * noise[:, np.arange(len(SNR_LEVELS)) % REALISATIONS]
        )
        shift = rng.uniform(-0.5, 0.5, (particles, 3))
        particle_set = ParticleSet(
            clean=clean,
            noise=noise,
            noise_scale=scale,
            noisy=noisy,
            snr=np.tile(np.array(SNR_LEVELS, dtype=np.float32), (particles, 1)),
            rotation=random_rotations(particles, rng),
            shift=shift,
            position=rng.integers(20, 400, (particles, 3)) + shift,
            tomogram=np.sort(rng.integers(0, tomograms, particles)),
            defocus_um=rng.uniform(2, 5, particles),
        )
        write_class_group(path, class_id, particle_set, {"name": class_id}, attrs)
    write_manifest(path, class_ids, attrs)
    return class_ids


def epoch_rate(path: Path, workers: int, batch_size: int, **options) -> tuple[int, float]:
    """Items and seconds of one training epoch through the DataLoader (no device-side finish)."""
    module = SubtomogramDataModule(
        [str(path)], batch_size=batch_size, num_workers=workers, val_fraction=0.1, seed=0, **options
    )
    module.setup("fit")
    loader = module.train_dataloader()
    start = time.perf_counter()
    items = sum(len(batch["index"]) for batch in loader)
    return items, time.perf_counter() - start


def breakdown(path: Path, batch_size: int, **options) -> dict[str, float]:
    """Microseconds per item of each loader stage: one worker's epoch, in this process, with timers."""
    module = SubtomogramDataModule(
        [str(path)], batch_size=batch_size, num_workers=0, val_fraction=0.1, seed=0, **options
    )
    module.setup("fit")
    stream = module.train_stream
    stream.rank, stream.world_size = 0, 1
    times: dict[str, float] = defaultdict(float)

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = function(*args, **kwargs)
            times[name] += time.perf_counter() - start
            return result

        return wrapper

    dataset = stream.datasets[0]
    dataset.read_block = timed("store read (read_block)", dataset.read_block)
    object.__setattr__(stream.samplers[0], "item", timed("views (ViewSampler.item)", stream.samplers[0].item))
    items, finish = 0, 0.0
    start = time.perf_counter()
    for batch in stream.iter_worker(0, 1):
        items += len(batch["index"])
        begin = time.perf_counter()
        module.on_after_batch_transfer(batch, 0)
        finish += time.perf_counter() - begin
    loader = time.perf_counter() - start - finish
    times["collate, shuffle buffer, rest"] = loader - sum(times.values())
    times["loader total"] = loader
    times["device finish (CPU here)"] = finish
    per_item = {name: seconds / items * 1e6 for name, seconds in times.items()}
    # Which stored arrays the read spends its time on (format 2 views never use ``noisy``).
    class_id = dataset.classes[0]
    for name in ("clean", "noise", "noisy"):
        begin = time.perf_counter()
        dataset.read_block(class_id, 0, READ_ROWS, arrays=(name,))
        per_item[f"  store read of {name} alone"] = (time.perf_counter() - begin) / READ_ROWS * 1e6
    return per_item


def step_rates(
    path: Path, variant: str, batch_size: int, steps: int, device: str, precision: str, workers: int
) -> tuple[float, float]:
    """Samples/s of the training step alone (a fixed batch on the device) and of loader + step."""
    import lightning as L

    from aptvit.models import build_encoder
    from aptvit.training import PretrainModule

    def trainer(max_steps: int) -> L.Trainer:
        return L.Trainer(
            accelerator=device,
            devices=1,
            precision=precision,
            max_steps=max_steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        )

    data = SubtomogramDataModule([str(path)], batch_size=batch_size, num_workers=workers, val_fraction=0.0)
    data.setup("fit")
    batch = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    module = PretrainModule(build_encoder(variant), warmup_fraction=0.0)
    fixed = [batch] * (steps + 2)

    class _Fixed(torch.utils.data.IterableDataset):
        def __iter__(self):  # the same prepared batch, again and again: no reading, no views
            return iter(fixed)

    loader = torch.utils.data.DataLoader(_Fixed(), batch_size=None)
    trainer(2).fit(module, loader)  # warm-up: allocations, kernels
    start = time.perf_counter()
    trainer(steps + 2).fit(module, loader)
    alone = batch_size * steps / (time.perf_counter() - start)
    start = time.perf_counter()
    trainer(steps + 2).fit(module, datamodule=data)
    together = batch_size * steps / (time.perf_counter() - start)
    return alone, together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--particles", type=int, default=500, help="per class")
    parser.add_argument("--box", type=int, default=32)
    parser.add_argument("--tomograms", type=int, default=10, help="per class")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--step", metavar="VARIANT", help="measure the training step of this encoder variant")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of --step")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (--step)")
    parser.add_argument("--precision", default="32-true", help="precision of --step (bf16-mixed)")
    args = parser.parse_args()
    torch.set_num_threads(1 if args.step is None else torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dataset.zarr"
        start = time.perf_counter()
        write_synthetic_dataset(path, args.classes, args.particles, args.box, args.tomograms)
        print(
            f"dataset: {args.classes} classes × {args.particles} particles of {args.box}³, format 2, "
            f"K = {REALISATIONS}, {len(SNR_LEVELS)} levels, written in {time.perf_counter() - start:.0f} s"
        )
        if args.step:
            workers = max(args.workers)
            alone, together = step_rates(
                path, args.step, args.batch_size, args.steps, args.device, args.precision, workers
            )
            print("\n| encoder | device | precision | batch | step alone /s | loader + step | ratio |")
            print("|---|---|---|---:|---:|---:|---:|")
            print(
                f"| {args.step} | {args.device} | {args.precision} | {args.batch_size} | {alone:,.1f} | "
                f"{together:,.1f} ({workers} workers) | {together / alone:.2f} |"
            )
            return
        epoch_rate(path, 0, args.batch_size)  # warm the page cache and the imports
        configurations = {
            "NRCL (clean key), transform": {},
            "MoCo (noisy key), transform": {"key_view": "noisy"},
            "NRCL, particle pairing": {"pose_pairing": "particle"},
        }
        print("\n| views | workers | items | s | items/s | items/s per worker |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, options in configurations.items():
            for workers in args.workers if name.startswith("NRCL (") else [0]:
                items, seconds = epoch_rate(path, workers, args.batch_size, **options)
                rate = items / seconds
                per_worker = rate / max(workers, 1)
                print(f"| {name} | {workers} | {items} | {seconds:.2f} | {rate:,.0f} | {per_worker:,.0f} |")
        print("\n| stage (one process, µs per item) | NRCL transform | MoCo transform | NRCL particle |")
        print("|---|---:|---:|---:|")
        parts = [breakdown(path, args.batch_size, **options) for options in configurations.values()]
        for stage in parts[0]:
            print(f"| {stage} | " + " | ".join(f"{part[stage]:.0f}" for part in parts) + " |")


if __name__ == "__main__":
    main()
