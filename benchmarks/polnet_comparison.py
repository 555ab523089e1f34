"""Compare our 10 Å densities with PolNet's for every PolNet template whose PDB file is in ../shared/data.

PolNet computed its maps from the files as they are (asymmetric unit), so ours are too. Their maps fall
off towards Nyquist (amplitude ~0.25 of ours in the last shells), so besides the raw correlation the table
gives it with both maps low-passed to a common 30 Å ("like with like"). Prints a markdown table of the
best-translation correlations. Usage::

    .venv/bin/python benchmarks/polnet_comparison.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cryoengine.formats.mrc import read_volume
from cryoengine.physics.correlation import best_translation_correlation
from cryoengine.physics.density import atoms_to_density, lowpass_filter
from cryoengine.structure.atoms import read_atoms

COMMON_RESOLUTION_A = 30.0


def _lowpass(volume: np.ndarray, voxel_size_A: float, resolution_A: float) -> np.ndarray:
    return np.fft.ifftn(np.fft.fftn(volume) * lowpass_filter(volume.shape, voxel_size_A, resolution_A)).real


def compare(polnet_dir: Path) -> list[tuple[str, int, tuple[int, ...], float, float, float]]:
    """Rows (entry, atoms, PolNet shape, raw correlation, correlation at 30 Å, seconds) per PolNet entry."""
    rows = []
    for pdb_path in sorted((polnet_dir / "pdbs").glob("*.pdb")):
        map_path = polnet_dir / "maps_10A" / f"{pdb_path.stem}.mrc"
        if not map_path.is_file():
            continue
        theirs, voxel_A = read_volume(map_path)
        start = time.perf_counter()
        atoms = read_atoms(pdb_path, assembly=None)
        ours = atoms_to_density(atoms, voxel_A, max(theirs.shape) + 8)
        seconds = time.perf_counter() - start
        raw, _ = best_translation_correlation(ours, theirs)
        common, _ = best_translation_correlation(
            _lowpass(ours, voxel_A, COMMON_RESOLUTION_A), _lowpass(theirs, voxel_A, COMMON_RESOLUTION_A)
        )
        rows.append((pdb_path.stem, len(atoms), theirs.shape, raw, common, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    args = parser.parse_args()
    rows = compare(args.shared / "polnet")
    print(
        "| entry | atoms (ASU) | PolNet map | correlation, raw | correlation, both at 30 Å | our time (s) |"
    )
    print("|---|---:|---|---:|---:|---:|")
    for entry, atoms, shape, raw, common, seconds in rows:
        print(
            f"| {entry} | {atoms} | {'×'.join(map(str, shape))} | {raw:.3f} | {common:.3f} | {seconds:.2f} |"
        )
    for column, name in ((3, "raw"), (4, "at 30 Å")):
        values = [row[column] for row in rows]
        print(
            f"{name}: min {min(values):.3f}, mean {sum(values) / len(values):.3f} over {len(values)} entries"
        )


if __name__ == "__main__":
    main()
