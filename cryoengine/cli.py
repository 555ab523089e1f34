"""Command line of CryoEngine: argv → one stage function, nothing else.

Examples
--------
Fetch an entry into a directory (cache, then mirrors, then RCSB)::

    python -m cryoengine fetch 1OEL -o resources/structures --mirror ../shared/data

Density of a PDB entry, a structure file, a map or a procedural phantom, at 10 Å in a 32³ box::

    python -m cryoengine density 1OEL -o groel.mrc --mirror ../shared/data
    python -m cryoengine density ../shared/data/polnet/pdbs/1bxn.pdb -o rubisco.mrc --resolution-A 25
    python -m cryoengine density ../shared/data/polnet/maps_10A/3j9i.mrc -o proteasome.mrc --box 40
    python -m cryoengine density phantom:ring -o ring.mrc

Simulate one class (all its tomograms; every class crowds it) into subtomograms at every SNR level::

    python -m cryoengine simulate config.yaml --class groel -o groel.npz --density-dir results/density

Inspect a dataset (checks every class's checksums) and export one class at SNR 0.05 for RELION::

    python -m cryoengine inspect results/dataset.zarr
    python -m cryoengine export results/dataset.zarr --class groel --snr 0.05 -o export/

Summarise what a workflow run produced::

    python -m cryoengine report demo/results

Print the JSON schema of ``config.yaml`` (what ``workflow/schemas/config.schema.json`` holds)::

    python -m cryoengine schema

Import your own particles (RELION 5 / Warp STAR, CSV, copick) into an observed dataset at 10 Å, 32³::

    python -m cryoengine import-particles particles.star --format relion5 --tomograms tomograms/ \
        --voxel-size-A 10 --box 32 -o particles.zarr
    python -m cryoengine import-particles copick.json --format copick --copick-object ribosome \
        --copick-voxel-spacing 10 --copick-tomo-type wbp -o particles.zarr
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from cryoengine import __version__
from cryoengine.identifiers import PDB_ID_PATTERN, PHANTOM_SHAPES

__all__ = ["main", "spec_from_argument"]


def spec_from_argument(text: str) -> dict:
    """Class source from a command-line STRUCTURE: ``phantom:<shape>``, a map, a structure file or a PDB ID.

    An existing path ending in ``.mrc``/``.map`` (optionally ``.gz``-less) is a map, any other existing path
    a structure file; otherwise four characters starting with a digit are a PDB ID.
    """
    if text.startswith("phantom:"):
        return {"kind": "phantom", "shape": text.removeprefix("phantom:")}
    path = Path(text)
    if path.exists():
        kind = "map" if path.suffix.lower() in (".mrc", ".map") else "file"
        return {"kind": kind, "path": str(path)}
    if re.fullmatch(PDB_ID_PATTERN, text):
        return {"kind": "pdb", "pdb_id": text}
    raise ValueError(f"{text!r} is neither an existing file, a PDB ID, nor phantom:<shape>")


def _engine_config(args: argparse.Namespace, classes: dict[str, dict]):
    from cryoengine.config import load_config, validate_config

    data = load_config(args.config).model_dump(mode="json") if args.config else {}
    data["classes"] = classes
    structures = data.setdefault("structures", {})
    if args.mirror:
        structures["mirrors"] = [*structures.get("mirrors", []), *args.mirror]
    if args.offline:
        structures["download"] = False
    for key in ("voxel_size_A", "box"):
        if getattr(args, key, None) is not None:
            data[key] = getattr(args, key)
    if getattr(args, "resolution_A", None) is not None:
        data.setdefault("density", {})["resolution_A"] = args.resolution_A
    return validate_config(data, origin="command line")


def _cmd_fetch(args: argparse.Namespace) -> int:
    from cryoengine import stages

    config = _engine_config(args, {"entry": {"kind": "pdb", "pdb_id": args.pdb_id}})
    path = stages.fetch_structure(config, args.pdb_id, cache_dir=args.output)
    print(path)
    return 0


def _cmd_density(args: argparse.Namespace) -> int:
    from cryoengine import stages

    spec = spec_from_argument(args.structure)
    if args.assembly is not None and spec["kind"] in ("pdb", "file"):
        spec["assembly"] = None if args.assembly == "none" else args.assembly
    if args.chains and spec["kind"] in ("pdb", "file"):
        spec["chains"] = args.chains.split(",")
    config = _engine_config(args, {"structure": spec})
    print(stages.density(config, "structure", args.output))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from cryoengine import stages
    from cryoengine.config import load_config

    config = load_config(args.config)
    print(stages.simulate_class(config, args.class_id, args.density_dir, args.output))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from cryoengine.store import inspect_dataset

    report = inspect_dataset(args.dataset, verify=not args.no_verify)
    print(report)
    for class_id, reason in report.failures.items():
        print(f"cryoengine: error: class {class_id}: {reason}", file=sys.stderr)
    return 0 if report.ok else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from cryoengine.formats.relion_export import export_class

    volumes, star = export_class(args.dataset, args.class_id, args.snr, args.output, force=args.force)
    print(f"{star} ({len(volumes)} subtomograms)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from cryoengine.report import results_report

    print(results_report(args.results))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from cryoengine.config import config_json_schema

    sys.stdout.write(config_json_schema())
    return 0


def _cmd_import_particles(args: argparse.Namespace) -> int:
    from cryoengine import stages
    from cryoengine.config import validate_import_settings

    settings = validate_import_settings(
        {
            "inputs": args.inputs,
            "format": args.format,
            "tomograms": args.tomograms,
            "voxel_size_A": args.voxel_size_A,
            "box": args.box,
            "output": args.output,
            "edge": args.edge,
            "invert_contrast": args.invert_contrast,
            "label_column": args.label_column,
            "csv_unit": args.csv_unit,
            "pixel_size_A": args.pixel_size_A,
            "copick_object": args.copick_object,
            "copick_runs": args.copick_runs,
            "copick_voxel_spacing_A": args.copick_voxel_spacing_A,
            "copick_tomo_type": args.copick_tomo_type,
            "shard_size": args.shard_size,
        },
        origin="command line",
    )
    print(stages.import_particles(settings))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cryoengine", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"cryoengine {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step of long commands")
    sub = parser.add_subparsers(dest="command", required=True)

    def settings(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", type=Path, help="config.yaml whose settings to use (its classes are ignored)"
        )
        p.add_argument("--mirror", action="append", type=Path, help="extra read-only mirror directory")
        p.add_argument("--offline", action="store_true", help="never download from RCSB")

    fetch = sub.add_parser("fetch", help="fetch a PDB entry into a directory as <ID>.cif.gz")
    fetch.add_argument("pdb_id", help="four-character PDB ID")
    fetch.add_argument("-o", "--output", type=Path, required=True, help="output (cache) directory")
    settings(fetch)
    fetch.set_defaults(func=_cmd_fetch)

    dens = sub.add_parser("density", help="density map of a PDB ID, structure file, map or phantom:<shape>")
    dens.add_argument(
        "structure", help=f"PDB ID, .pdb/.cif[.gz] file, .mrc map, or phantom:<{'|'.join(PHANTOM_SHAPES)}>"
    )
    dens.add_argument("-o", "--output", type=Path, required=True, help="output .mrc")
    dens.add_argument("--voxel-size-A", dest="voxel_size_A", type=float, help="voxel size (Å), default 10")
    dens.add_argument("--box", type=int, help="box edge (voxels), default 32")
    dens.add_argument("--resolution-A", dest="resolution_A", type=float, help="low-pass (Å), default Nyquist")
    dens.add_argument("--assembly", help="biological assembly name (default 1; 'none' = asymmetric unit)")
    dens.add_argument("--chains", help="comma-separated chain names to keep")
    settings(dens)
    dens.set_defaults(func=_cmd_density)

    sim = sub.add_parser(
        "simulate", help="simulate every tomogram of one class → subtomograms at all SNRs (.npz)"
    )
    sim.add_argument("config", type=Path, help="config.yaml (classes, sample, tilt, optics, noise ...)")
    sim.add_argument("--class", dest="class_id", required=True, help="class id to simulate")
    sim.add_argument(
        "-o", "--output", type=Path, required=True, help="output .npz (a cryoengine ParticleSet)"
    )
    sim.add_argument(
        "--density-dir", type=Path, default=Path("results/density"), help="class maps; missing ones are made"
    )
    sim.set_defaults(func=_cmd_simulate)

    inspect = sub.add_parser(
        "inspect", help="classes, counts, SNR levels and sizes of a dataset; checks checksums"
    )
    inspect.add_argument("dataset", type=Path, help="dataset.zarr")
    inspect.add_argument("--no-verify", action="store_true", help="skip recomputing the checksums")
    inspect.set_defaults(func=_cmd_inspect)

    export = sub.add_parser("export", help="one class at one SNR level → MRC volumes + RELION STAR")
    export.add_argument("dataset", type=Path, help="dataset.zarr")
    export.add_argument("--class", dest="class_id", required=True, help="class id")
    export.add_argument("--snr", required=True, help="one of the dataset's SNR levels, or 'clean'")
    export.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    export.add_argument("--force", action="store_true", help="overwrite the files of an earlier export")
    export.set_defaults(func=_cmd_export)

    report = sub.add_parser("report", help="summarise a workflow's results directory")
    report.add_argument("results", type=Path, help="the workflow's results/ directory")
    report.set_defaults(func=_cmd_report)

    imp = sub.add_parser(
        "import-particles", help="your particles (RELION 5 / Warp STAR, CSV, copick) → an observed dataset"
    )
    imp.add_argument("inputs", nargs="+", type=Path, help="particle STAR/CSV files, or the copick config")
    imp.add_argument("--format", required=True, choices=("relion5", "warp", "csv", "copick"))
    imp.add_argument("--tomograms", type=Path, help="MRC tomograms directory, or RELION 5 tomograms STAR")
    imp.add_argument("--voxel-size-A", dest="voxel_size_A", type=float, default=10.0, help="model voxel (Å)")
    imp.add_argument("--box", type=int, default=32, help="box edge at the model voxel (voxels)")
    imp.add_argument("-o", "--output", type=Path, required=True, help="output dataset (.zarr)")
    imp.add_argument("--edge", choices=("pad", "skip"), default="pad", help="boxes beyond the tomogram edge")
    imp.add_argument("--invert-contrast", action="store_true", help="protein is bright in the tomograms")
    imp.add_argument("--label-column", help="column whose values are the classes (default: one 'unlabelled')")
    imp.add_argument("--csv-unit", choices=("pixel", "angstrom"), default="pixel", help="unit of CSV x, y, z")
    imp.add_argument("--pixel-size-A", dest="pixel_size_A", type=float, help="pixel size if none in files")
    imp.add_argument("--copick-object", help="copick: pickable object")
    imp.add_argument("--copick-runs", nargs="+", help="copick: runs (default all)")
    imp.add_argument(
        "--copick-voxel-spacing", dest="copick_voxel_spacing_A", type=float, help="copick: voxel spacing (Å)"
    )
    imp.add_argument("--copick-tomo-type", default="wbp", help="copick: reconstruction type (default wbp)")
    imp.add_argument("--shard-size", type=int, default=256, help="subtomograms per shard file")
    imp.set_defaults(func=_cmd_import_particles)

    schema = sub.add_parser("schema", help="print the JSON schema of config.yaml")
    schema.set_defaults(func=_cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 bad input, 2 usage error)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return args.func(args)
    except (ValueError, KeyError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"cryoengine: error: {message}", file=sys.stderr)
        return 1
