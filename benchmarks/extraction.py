"""Extraction throughput: particles/s cut from a memory-mapped MRC tomogram and from an OME-Zarr tomogram.

Writes a synthetic tomogram (default 200 × 512 × 512 voxels (z, y, x) at 7.84 Å, float32, 200 MiB) once as
MRC and once as copick OME-Zarr (64³ chunks) to a temporary directory, then cuts 32³ boxes at 10 Å around
random centres with :func:`cryoengine.physics.box_cutting.cut_subtomograms` (Fourier rescaling, 51³ source
boxes → 40³ → 32³) and, for reference, at the tomogram's own voxel (no rescaling). The files were just
written, so reads come from the page cache: the figures measure slicing, decoding and the FFTs, not the
disk. Prints a markdown table. Usage::

    .venv/bin/python benchmarks/extraction.py [--particles 200] [--shape 200 512 512]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np

from cryoengine.formats.copick_layout import CopickProject, write_copick_config, write_copick_tomogram
from cryoengine.formats.mrc import open_mrc_tomogram
from cryoengine.physics.box_cutting import cut_subtomograms

VOXEL_A = 7.84


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=200)
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--box", type=int, default=32)
    args = parser.parse_args()
    shape = tuple(args.shape)
    rng = np.random.default_rng(0)
    tomogram = rng.standard_normal(shape, dtype=np.float32)
    margin_A = 40 * 10.0
    centres_A = rng.uniform(margin_A, np.array(shape) * VOXEL_A - margin_A, (args.particles, 3))

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mrc_path = Path(tmp) / "tomogram.mrc"
        with mrcfile.new(mrc_path) as mrc:
            mrc.set_data(tomogram)
            mrc.voxel_size = VOXEL_A
        root = Path(tmp) / "copick"
        config = write_copick_config(Path(tmp) / "copick.json", root, ["particle"])
        write_copick_tomogram(root, "TS_01", VOXEL_A, "wbp", tomogram, chunk=64)
        del tomogram

        def timed(label: str, array, voxel_A: float) -> None:
            start = time.perf_counter()
            cut = cut_subtomograms(array, VOXEL_A, centres_A, args.box, voxel_A)
            seconds = time.perf_counter() - start
            plan = cut.plan
            rows.append(
                (
                    label,
                    f"{VOXEL_A} → {plan.effective_voxel_size_A:.3f}",
                    plan.source_box,
                    len(cut.kept) / seconds,
                )
            )

        with open_mrc_tomogram(mrc_path) as (data, _):
            timed("MRC (mmap)", data, 10.0)
            timed("MRC (mmap)", data, VOXEL_A)
        array, _ = CopickProject(config).open_tomogram("TS_01", VOXEL_A, "wbp")
        timed("OME-Zarr (64³ chunks)", array, 10.0)
        timed("OME-Zarr (64³ chunks)", array, VOXEL_A)

    size = "×".join(map(str, shape))
    print(f"tomogram {size} float32 at {VOXEL_A} Å, {args.particles} particles, box {args.box}")
    machine = f"{platform.machine()}, {platform.processor() or platform.system()}"
    print(f"machine: {machine}, numpy {np.__version__}\n")
    print("| source | voxel Å | source box | particles/s |")
    print("|---|---|---|---|")
    for label, voxels, source_box, rate in rows:
        print(f"| {label} | {voxels} | {source_box}³ | {rate:.0f} |")


if __name__ == "__main__":
    main()
