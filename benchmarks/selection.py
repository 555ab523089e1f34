"""How well trained phase selectors pick: clean/noisy pick agreement on the held-out split of their run.

For each pre-training checkpoint (``python -m aptvit.fit``), rebuilds the run's data module from the
settings the checkpoint stores (``aptvit.checkpoint.datamodule_settings``), and compares the phase that
the trained encoder's sampler picks (argmax) for each validation query (noisy, at the run's ``val_snr``)
with the pick for its clean view in the same pose (``key_unrotated``), after the same device-side finish
as in training. The same is done for the untrained twin (the variant freshly initialised, seed 0). Prints
one Markdown table: the share of equal picks (chance ``1 / p³``) and the mean toroidal distance between
the two picks in voxels (independent uniform picks at ``p = 8``: ~3.9). The selector's cost is
``benchmarks/encoder.py``'s. Example::

    python -m aptvit.fit --config configs/pretrain_demo.yaml --trainer.default_root_dir runs/steerable ...
    .venv/bin/python benchmarks/selection.py runs/*/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aptvit.checkpoint import checkpoint_record, datamodule_settings, load_encoder, untrained_encoder
from aptvit.data import SubtomogramDataModule
from aptvit.models.vit import APTViT


def pick_agreement(encoder: APTViT, data: SubtomogramDataModule) -> tuple[float, float, int]:
    """Share of validation items whose noisy query and clean view pick the same phase, their mean distance.

    Returns
    -------
    (float, float, int)
        Share of equal picks, mean toroidal distance between the picks (voxels), number of items.
    """
    loaders = data.val_dataloader()
    split = loaders[-1] if isinstance(loaders, list) else loaders  # the first of two is the kNN bank
    p = encoder.patch_size
    equal, distance = [], []
    with torch.no_grad():
        for raw in split:
            batch = data.on_after_batch_transfer(raw, 0)
            noisy = encoder.phase_sampler(batch["query"]).offsets_zyx
            clean = encoder.phase_sampler(batch.get("key_unrotated", batch["key"])).offsets_zyx
            gap = (noisy - clean).abs()
            toroidal = torch.minimum(gap, p - gap).float()
            equal.append((noisy == clean).all(dim=1))
            distance.append(toroidal.norm(dim=1))
    if not equal:
        raise ValueError("the validation split of this run is empty")
    return torch.cat(equal).float().mean().item(), torch.cat(distance).mean().item(), len(torch.cat(equal))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", type=Path, help="pre-training checkpoints (.ckpt)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        "| checkpoint | variant | selector (scorer options) | items | chance | trained: agreement"
        " | distance (vox) | untrained: agreement | distance (vox) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for path in args.checkpoints:
        data = SubtomogramDataModule(**{**datamodule_settings(path), "num_workers": 0})
        data.setup("validate")
        spec = checkpoint_record(path)["encoder"]
        overrides = spec.get("overrides", {})
        selector = overrides.get("phase_selector", "steerable")
        if overrides.get("scorer_kwargs"):
            selector += f" ({overrides['scorer_kwargs']})"
        trained = load_encoder(path)
        agree, dist, items = pick_agreement(trained, data)
        agree_0, dist_0, _ = pick_agreement(untrained_encoder(path), data)
        print(
            f"| {path} | {spec['name']} | {selector} | {items} | {1 / trained.patch_size**3:.1%} "
            f"| {agree:.1%} | {dist:.2f} | {agree_0:.1%} | {dist_0:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
