"""Summary of a workflow's results directory: what was produced, where, and its key figures.

``make demo`` ends with it; it grows with each stage the workflow gains.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cryoengine.formats.mrc import read_volume
from cryoengine.store import inspect_dataset

__all__ = ["results_report"]


def results_report(results_dir: str | Path) -> str:
    """Describe the outputs under ``results_dir`` as a text table.

    Parameters
    ----------
    results_dir
        The workflow's ``results/`` directory.

    Returns
    -------
    str
        One line per density map (class, box, voxel size, integral = Σ f(0) in Å, source) and, once the
        workflow has made it, the ``inspect`` table of ``dataset.zarr`` (checksums verified).

    Raises
    ------
    FileNotFoundError
        If the directory holds no results.
    """
    results_dir = Path(results_dir)
    maps = sorted((results_dir / "density").glob("*.mrc"))
    if not maps:
        raise FileNotFoundError(f"no results under {results_dir} (run the workflow first)")
    header = f"{'class':<16} {'box':>5} {'voxel (Å)':>9} {'Σf(0) (Å)':>16}  source"
    lines = [f"Density maps in {(results_dir / 'density').resolve()}:", header, "-" * len(header)]
    for path in maps:
        volume, voxel_A = read_volume(path)
        sidecar = path.with_name(path.name + ".json")
        record = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        class_id = record.get("class_id", path.stem)
        source = (record.get("config") or {}).get("classes", {}).get(class_id, {})
        what = source.get("pdb_id") or source.get("path") or source.get("shape") or "?"
        integral = float(np.sum(volume, dtype=np.float64)) * voxel_A**3
        kind = source.get("kind", "?")
        lines.append(f"{path.stem:<16} {volume.shape[0]:>5} {voxel_A:>9g} {integral:>16.4g}  {kind}:{what}")
    dataset = results_dir / "dataset.zarr"
    if dataset.is_dir():
        lines += ["", f"Dataset {dataset.resolve()}:", str(inspect_dataset(dataset))]
    return "\n".join(lines)
