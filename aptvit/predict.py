r"""Results on your own particles: ``python -m aptvit.predict --checkpoint CKPT --dataset DS -o DIR``.

Wiring only. ``DS`` is an observed dataset (``python -m cryoengine import-particles``). The frozen encoder
(:mod:`aptvit.checkpoint`) embeds every particle (:func:`aptvit.tasks.embed.embed_dataset`), k-means on the
embeddings gives ``--classes`` clusters with a confidence each
(:func:`aptvit.tasks.classify.kmeans_with_confidence`), and each cluster is averaged without a reference,
which gives every particle's pose against its class average (:func:`aptvit.tasks.average.average_clusters`,
classical exhaustive alignment with cheap defaults, missing-wedge compensated when ``--tilt-range`` gives
the tilt range, which an import does not know). Written to ``DIR``
(:mod:`cryoengine.formats.observed_export`):

``particles.star``
    RELION 5 particles at the original coordinates and pixel size, with ``rlnClassNumber`` (1-based),
    ``rlnMaxValueProbDistribution`` (the confidence) and ``rlnAngleRot/Tilt/Psi`` (the pose).
``averages/class<k>_<voxel>A.mrc``
    Each class average at the dataset's voxel and at the source tomograms' pixel size, protein bright
    (positive density, as maps are shared; the boxes are protein dark), voxel size in the header.
copick picks
    When the dataset was imported from copick: one picks set per class (user ``aptvit``, session
    ``class<k>``) in the project.
``predictions.json``
    The settings, counts, resolutions and written files.

Voxel tolerance: the imported voxel is the effective one of the Fourier rescaling (e.g. 9.996 Å for 7.84 Å
tomograms asked at 10 Å); it may differ from the checkpoint's by 0.2 %, the import's own rescaling tolerance
(:func:`cryoengine.physics.fourier_rescale.plan_box_rescale`): across a 32-voxel box that is 0.06 voxel.
The box must be equal.

Example::

    python -m aptvit.predict --checkpoint last.ckpt --dataset particles.zarr -o results --classes 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from aptvit.checkpoint import CheckpointError, load_encoder, require_compatible
from aptvit.tasks.average import average_clusters
from aptvit.tasks.classify import kmeans_with_confidence
from aptvit.tasks.embed import embed_dataset
from aptvit.tasks.wedge import MissingWedge
from cryoengine.formats.observed_export import write_average_maps, write_copick_results, write_star_results
from cryoengine.formats.provenance import provenance
from cryoengine.store import open_dataset

__all__ = ["VOXEL_TOLERANCE", "main"]

#: Relative voxel difference accepted between the dataset and the checkpoint (module docstring).
VOXEL_TOLERANCE = 2e-3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aptvit.predict",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a .ckpt of python -m aptvit.fit")
    parser.add_argument("--dataset", required=True, type=Path, help="observed dataset (import-particles)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output directory")
    parser.add_argument("--classes", type=int, default=1, help="clusters to form (default 1)")
    parser.add_argument(
        "--tilt-range",
        nargs=2,
        type=float,
        metavar=("MIN", "MAX"),
        help="tilt range of the tomograms (°), e.g. -60 60: the alignment compensates the missing wedge",
    )
    parser.add_argument("--global-step-deg", type=float, default=20.0, help="initial alignment grid (°)")
    parser.add_argument("--rounds", type=int, default=1, help="refinement rounds of each average")
    parser.add_argument("--batch-size", type=int, default=64, help="subtomograms per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device of the encoder")
    parser.add_argument("--seed", type=int, default=0, help="seed of k-means and the half-sets")
    return parser


def _run(args: argparse.Namespace) -> dict:
    dataset = open_dataset(args.dataset)
    if not dataset.observed:
        raise ValueError(
            f"{dataset.path} holds simulated particles; predict is for imported ones (use aptvit.evaluate)"
        )
    require_compatible(
        args.checkpoint, dataset.box, dataset.voxel_size_A, str(dataset.path), rel_tolerance=VOXEL_TOLERANCE
    )
    encoder = load_encoder(args.checkpoint, box=dataset.box, device=args.device)
    embeddings = embed_dataset(encoder, dataset, batch_size=args.batch_size)
    clusters = kmeans_with_confidence(embeddings.features, args.classes, seed=args.seed)
    volumes = np.concatenate([block.volumes_at(None) for block in dataset.iter_shards()])
    averaged = average_clusters(
        volumes,
        clusters.assignment,
        voxel_size_A=dataset.voxel_size_A,
        anchor_scores=clusters.confidence,
        wedge=None if args.tilt_range is None else MissingWedge(*args.tilt_range),
        global_step_deg=args.global_step_deg,
        n_rounds=args.rounds,
        seed=args.seed,
    )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    class_number, confidence = clusters.assignment + 1, clusters.confidence
    rotation, shift = averaged.rotation, averaged.shift_zyx_vox
    star = write_star_results(
        dataset,
        out / "particles.star",
        class_number=class_number,
        confidence=confidence,
        rotation=rotation,
        shift_zyx_vox=shift,
    )
    picks = []
    if dataset.attrs["import"].get("input_format") == "copick":
        picks = write_copick_results(
            dataset, class_number=class_number, confidence=confidence, rotation=rotation, shift_zyx_vox=shift
        )
    source_pixel = float(dataset.attrs["tomograms"][0]["voxel_size_A"])
    maps = [
        write_average_maps(
            average,
            dataset.voxel_size_A,
            source_pixel,
            out / "averages" / f"class{k + 1}",
            invert_contrast=True,
        )
        for k, average in enumerate(averaged.averages)
    ]
    results = {
        "dataset": str(dataset.path),
        "checkpoint": str(args.checkpoint),
        "classes": {
            str(k + 1): {
                "count": int(np.count_nonzero(clusters.assignment == k)),
                "mean_confidence": float(clusters.confidence[clusters.assignment == k].mean()),
                "resolution_A": None if np.isnan(r) else float(r),
                "anchor_index": int(averaged.anchor_index[k]),
                "averages": [str(p) for p in maps[k]],
            }
            for k, r in enumerate(averaged.resolution_A)
        },
        "particles_star": str(star),
        "copick_picks": [str(p) for p in picks],
        "provenance": provenance({key: str(value) for key, value in vars(args).items()}, seed=args.seed),
    }
    (out / "predictions.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the prediction; 0 on success, 1 with one ``aptvit.predict: error:`` line on bad input."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    try:
        results = _run(args)
    except (CheckpointError, ValueError, OSError) as error:
        print(f"aptvit.predict: error: {error}", file=sys.stderr)
        return 1
    for number, entry in results["classes"].items():
        print(f"class {number}: {entry['count']} particles, mean confidence {entry['mean_confidence']:.2f}")
    print(results["particles_star"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
