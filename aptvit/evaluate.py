r"""Evaluate a pre-trained encoder: ``python -m aptvit.evaluate --checkpoint CKPT --dataset DS -o DIR``.

Wiring only: loads the frozen encoder and its SE(3) head (:mod:`aptvit.checkpoint`), builds the baselines
(the untrained twin of the same variant, an optional plain-ViT checkpoint), runs every task on each dataset
(:func:`aptvit.tasks.evaluation.evaluate_dataset`), and writes ``DIR/report.html`` and ``DIR/metrics.json``
(:func:`aptvit.tasks.report.write_report`), then prints the summary table.

Classes held out of pre-training (the checkpoint's ``exclude_classes``, or ``--unseen``) are evaluated on
their own as well: those are the headline numbers, and alignment and averaging run on them.

Examples
--------
The demo's report::

    python -m aptvit.evaluate --checkpoint demo/results/pretrain/checkpoints/last.ckpt \\
        --dataset demo/results/dataset.zarr -o demo/results/report

Against a plain ViT pre-trained with the same recipe (``phase_selector: fixed``)::

    python -m aptvit.evaluate --checkpoint apt.ckpt --plain-checkpoint vit.ckpt --dataset eval.zarr -o report
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from aptvit.checkpoint import (
    checkpoint_record,
    has_pose_head,
    load_encoder,
    load_pose_head,
    require_compatible,
    untrained_encoder,
)
from aptvit.tasks.evaluation import EvaluationSettings, evaluate_dataset
from aptvit.tasks.report import summary_table, write_report
from cryoengine.formats.provenance import provenance
from cryoengine.store import open_dataset

__all__ = ["main"]

_DEFAULTS = EvaluationSettings()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aptvit.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a .ckpt of python -m aptvit.fit")
    parser.add_argument(
        "--dataset", required=True, action="append", type=Path, help="dataset.zarr (repeatable)"
    )
    parser.add_argument(
        "-o", "--output", required=True, type=Path, help="directory for report.html, metrics.json"
    )
    parser.add_argument(
        "--plain-checkpoint", type=Path, help="a plain-ViT checkpoint of the same recipe (baseline)"
    )
    parser.add_argument(
        "--unseen", nargs="+", metavar="CLASS", help="classes held out (default: the checkpoint's)"
    )
    parser.add_argument(
        "--snr", nargs="+", type=float, help="stored SNR levels to classify at (default: all)"
    )
    parser.add_argument(
        "--headline-snr", type=float, default=_DEFAULTS.headline_snr, help="SNR of alignment, averaging, CNN"
    )
    parser.add_argument(
        "--cnn-epochs", type=int, default=_DEFAULTS.cnn_epochs, help="supervised CNN budget (0: skip)"
    )
    parser.add_argument(
        "--align-pairs", type=int, default=_DEFAULTS.align_pairs_per_class, help="pairs per class"
    )
    parser.add_argument(
        "--exhaustive-step-deg",
        type=float,
        default=_DEFAULTS.exhaustive_step_deg,
        help="grid of the classical search",
    )
    parser.add_argument("--average-class", help="class to average reference-free (default: the first unseen)")
    parser.add_argument(
        "--average-particles", type=int, default=_DEFAULTS.average_particles, help="at most (0: skip)"
    )
    parser.add_argument("--knn-k", type=int, default=_DEFAULTS.knn_k, help="neighbours of the kNN classifier")
    parser.add_argument(
        "--seed", type=int, default=_DEFAULTS.seed, help="folds, pairs, half-sets, untrained twin"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Run the evaluation; return the results dict (also written as ``metrics.json``)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    record = checkpoint_record(args.checkpoint)
    symmetry = dict(
        torch.load(args.checkpoint, map_location="cpu", weights_only=False)["hyper_parameters"].get(
            "symmetry"
        )
        or {}
    )
    datasets = [open_dataset(path) for path in args.dataset]
    for path, dataset in zip(args.dataset, datasets, strict=True):
        require_compatible(args.checkpoint, dataset.box, dataset.voxel_size_A, source=str(path))
        if args.plain_checkpoint:
            require_compatible(args.plain_checkpoint, dataset.box, dataset.voxel_size_A, source=str(path))
    encoders = {"APT-ViT": load_encoder(args.checkpoint, device=device)}
    encoders["untrained"] = untrained_encoder(args.checkpoint, seed=args.seed, device=device)
    if args.plain_checkpoint:
        encoders["plain ViT"] = load_encoder(args.plain_checkpoint, device=device)
    pose_head = load_pose_head(args.checkpoint, device=device) if has_pose_head(args.checkpoint) else None
    unseen = args.unseen if args.unseen is not None else list(record.get("exclude_classes") or [])
    results: dict = {
        "title": f"APT-ViT evaluation of {args.checkpoint}",
        "command": " ".join(["python -m aptvit.evaluate", *(argv if argv is not None else sys.argv[1:])]),
        "provenance": provenance(
            {"arguments": {k: str(v) for k, v in vars(args).items()}, "checkpoint": record}, seed=args.seed
        ),
        "datasets": {},
    }
    for path, dataset in zip(args.dataset, datasets, strict=True):
        held_out = [c for c in unseen if c in dataset.classes]
        settings = EvaluationSettings(
            snr_levels=None if args.snr is None else tuple(args.snr),
            headline_snr=args.headline_snr,
            knn_k=args.knn_k,
            cnn_epochs=args.cnn_epochs,
            align_pairs_per_class=args.align_pairs,
            exhaustive_step_deg=args.exhaustive_step_deg,
            average_class=args.average_class,
            average_particles=args.average_particles,
            seed=args.seed,
            symmetry=symmetry,
        )
        common: dict[str, Any] = {"pose_encoder": "APT-ViT", "pose_head": pose_head}
        if held_out:
            results["datasets"][f"{path} (unseen: {', '.join(held_out)})"] = evaluate_dataset(
                dataset, encoders, settings, classes=held_out, **common
            )
            settings = EvaluationSettings(
                **{**vars(settings), "align_pairs_per_class": 0, "average_particles": 0}
            )
        results["datasets"][f"{path} (all classes)"] = evaluate_dataset(dataset, encoders, settings, **common)
    report = write_report(results, args.output)
    header, rows = summary_table(results["datasets"])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"report: {report.html_path}\nmetrics: {report.metrics_path}")
    return results


if __name__ == "__main__":
    main()
