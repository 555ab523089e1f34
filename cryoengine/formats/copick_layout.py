"""copick projects on disk, read and written directly (the ``copick`` package pins zarr < 3; we run zarr 3).

The documented filesystem layout of copick (``config_type: "filesystem"``)::

    <config>.json       {"name", "description", "version", "config_type": "filesystem",
                         "pickable_objects": [{"name", "is_particle", "label", ...}],
                         "overlay_root": "local:///abs/path", "static_root": ... (optional)}
    <root>/ExperimentRuns/<run>/
        VoxelSpacing<voxel:.3f>/<tomo_type>.zarr   OME-Zarr (zarr v2 format) multiscale: arrays "0", "1", ...
            (``multiscales[0].datasets[i].coordinateTransformations`` scale in Å, axes (z, y, x))
        Picks/<user_id>_<session_id>_<object>.json {"pickable_object_name", "user_id", "session_id",
                                                    "run_name", "voxel_spacing", "unit": "angstrom",
                                                    "points": [{"location": {"x", "y", "z"} (Å),
                                                                "transformation_": 4×4, "instance_id",
                                                                "score"}], "trust_orientation"}

Conventions
    ``location`` is in Å from the centre of the tomogram's voxel 0, ``(x, y, z)``. ``transformation_``
    takes object coordinates to tomogram coordinates (copick's ``CopickPoint.transformation``), on
    ``(x, y, z)`` in Å: its rotation block is the reference → particle rotation, our ``R`` with rows and
    columns reversed (``R = J M J``, as RELION's matrix in :mod:`cryoengine.physics.rotation`), and its
    translation column moves the particle centre from ``location``. The overlay root is searched before the
    static root.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from cryoengine.formats.mrc import TomogramGeometry
from cryoengine.formats.particle_tables import TABLE_COLUMNS, ParticleTable

__all__ = [
    "CopickLayoutError",
    "CopickProject",
    "write_copick_config",
    "write_copick_picks",
    "write_copick_tomogram",
]

_AXES = [{"name": axis, "type": "space", "unit": "angstrom"} for axis in "zyx"]


class CopickLayoutError(ValueError):
    """A copick project, run, object, tomogram or picks file that does not exist or cannot be read."""


def _voxel_folder(voxel_size_A: float) -> str:
    """``VoxelSpacing<voxel:.3f>``, copick's folder name (voxel rounded to the third decimal)."""
    return f"VoxelSpacing{float(voxel_size_A):.3f}"


def _root_path(value: str, config_path: Path) -> Path:
    """Resolve a ``local://`` (or plain) root of the config, relative roots taken from the config's folder."""
    text = value[len("local://") :] if value.startswith("local://") else value
    if "://" in text:
        raise CopickLayoutError(f"{config_path}: only local roots are supported, got {value!r}")
    root = Path(text)
    return root if root.is_absolute() else config_path.parent / root


class CopickProject:
    """A copick project on the local filesystem.

    Parameters
    ----------
    config_path
        The project's configuration JSON.
    """

    def __init__(self, config_path: str | os.PathLike[str]) -> None:
        self.config_path = Path(config_path)
        if not self.config_path.is_file():
            raise CopickLayoutError(f"copick config {self.config_path} does not exist")
        try:
            self.config = json.loads(self.config_path.read_text())
        except json.JSONDecodeError as error:
            raise CopickLayoutError(f"{self.config_path} is not valid JSON ({error})") from None
        if "pickable_objects" not in self.config:
            raise CopickLayoutError(f"{self.config_path}: no pickable_objects")
        roots = [self.config[key] for key in ("overlay_root", "static_root") if self.config.get(key)]
        if not roots:
            raise CopickLayoutError(f"{self.config_path}: neither overlay_root nor static_root is set")
        self.roots = [_root_path(root, self.config_path) for root in roots]

    @property
    def object_names(self) -> list[str]:
        """Names of the pickable objects."""
        return [entry["name"] for entry in self.config["pickable_objects"]]

    @property
    def run_names(self) -> list[str]:
        """Runs found under any root, sorted."""
        names: set[str] = set()
        for root in self.roots:
            runs = root / "ExperimentRuns"
            if runs.is_dir():
                names.update(entry.name for entry in runs.iterdir() if entry.is_dir())
        return sorted(names)

    def _run_dirs(self, run: str) -> list[Path]:
        """Return the run's folders (overlay first); an unknown run is an error."""
        dirs = [
            root / "ExperimentRuns" / run for root in self.roots if (root / "ExperimentRuns" / run).is_dir()
        ]
        if not dirs:
            raise CopickLayoutError(
                f"{self.config_path}: run {run!r} does not exist "
                f"(runs: {', '.join(self.run_names) or 'none'})"
            )
        return dirs

    def open_tomogram(
        self, run: str, voxel_size_A: float, tomo_type: str
    ) -> tuple[zarr.Array, TomogramGeometry]:
        """Open a tomogram's full-resolution level lazily.

        Parameters
        ----------
        run
            Run name.
        voxel_size_A
            Voxel spacing (Å), as in the folder name.
        tomo_type
            Reconstruction type, e.g. ``"wbp"`` or ``"denoised"``.

        Returns
        -------
        array : zarr.Array
            `(nz, ny, nx)` lazy array (slicing reads only the chunks it touches).
        geometry : TomogramGeometry
            Shape and voxel (from the OME scale of that level, else the folder's spacing).
        """
        for run_dir in self._run_dirs(run):
            path = run_dir / _voxel_folder(voxel_size_A) / f"{tomo_type}.zarr"
            if path.is_dir():
                break
        else:
            raise CopickLayoutError(
                f"{self.config_path}: run {run!r} has no {tomo_type!r} tomogram at voxel spacing "
                f"{voxel_size_A:.3f} Å ({_voxel_folder(voxel_size_A)}/{tomo_type}.zarr)"
            )
        try:
            group = zarr.open_group(path, mode="r")
        except (FileNotFoundError, ValueError) as error:
            raise CopickLayoutError(f"{path} is not a readable zarr group ({error})") from None
        multiscales: Any = group.attrs.get("multiscales")
        level, voxel = "0", float(voxel_size_A)
        if multiscales:
            dataset = multiscales[0]["datasets"][0]
            level = str(dataset["path"])
            for transform in dataset.get("coordinateTransformations", []):
                if transform.get("type") == "scale":
                    voxel = float(transform["scale"][-1])
        array = group[level]
        if not isinstance(array, zarr.Array) or array.ndim != 3:
            raise CopickLayoutError(f"{path}/{level} is not a 3D array")
        shape = (int(array.shape[0]), int(array.shape[1]), int(array.shape[2]))
        return array, TomogramGeometry(shape, voxel, str(path))

    def read_picks(
        self,
        object_name: str,
        runs: Sequence[str] | None = None,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> ParticleTable:
        """Read the picks of one object as a particle table.

        Parameters
        ----------
        object_name
            A pickable object of the config.
        runs
            Runs to read; default all.
        user_id, session_id
            Keep only picks files of this user / session.

        Returns
        -------
        ParticleTable
            ``tomogram`` = run; ``rotation`` from ``transformation_`` when every file trusts orientations.
            ``original`` holds ``user_id``, ``session_id``, ``instance_id``, ``score`` and ``location_*_A``.
        """
        if object_name not in self.object_names:
            raise CopickLayoutError(
                f"{self.config_path}: object {object_name!r} is not a pickable object "
                f"(objects: {', '.join(self.object_names) or 'none'})"
            )
        rows, rotations, trusted = [], [], True
        for run in self.run_names if runs is None else list(runs):
            files = sorted(
                {p for d in self._run_dirs(run) for p in (d / "Picks").glob(f"*_{object_name}.json")}
            )
            for path in files:
                record = json.loads(path.read_text())
                if record.get("pickable_object_name") != object_name:
                    continue
                if user_id is not None and record.get("user_id") != user_id:
                    continue
                if session_id is not None and str(record.get("session_id")) != str(session_id):
                    continue
                if record.get("unit", "angstrom") != "angstrom":
                    raise CopickLayoutError(f"{path}: unit {record.get('unit')!r}, expected 'angstrom'")
                trusted = trusted and bool(record.get("trust_orientation", True))
                for index, point in enumerate(record.get("points") or []):
                    try:
                        location = np.array([point["location"][axis] for axis in "xyz"], dtype=np.float64)
                    except (KeyError, TypeError):
                        raise CopickLayoutError(f"{path}: point {index} has no location x/y/z") from None
                    matrix = np.asarray(point.get("transformation_", np.eye(4)), dtype=np.float64)
                    if matrix.shape != (4, 4):
                        raise CopickLayoutError(f"{path}: point {index} transformation_ is not 4×4")
                    centre_xyz = location + matrix[:3, 3]
                    rotations.append(matrix[:3, :3][::-1, ::-1])
                    rows.append(
                        {
                            "tomogram": run,
                            "source_file": str(path),
                            "source_row": index,
                            "centre_z_A": centre_xyz[2],
                            "centre_y_A": centre_xyz[1],
                            "centre_x_A": centre_xyz[0],
                            "coordinate_pixel_size_A": np.nan,
                            "tomogram_size_z_A": np.nan,
                            "tomogram_size_y_A": np.nan,
                            "tomogram_size_x_A": np.nan,
                            "user_id": record.get("user_id"),
                            "session_id": str(record.get("session_id")),
                            "instance_id": point.get("instance_id", 0),
                            "score": point.get("score", 1.0),
                            "location_x_A": location[0],
                            "location_y_A": location[1],
                            "location_z_A": location[2],
                        }
                    )
        frame = pd.DataFrame(rows)
        if frame.empty:
            raise CopickLayoutError(
                f"{self.config_path}: no picks of object {object_name!r} in the selected runs"
            )
        original = frame[
            ["user_id", "session_id", "instance_id", "score", "location_x_A", "location_y_A", "location_z_A"]
        ]
        rotation = np.stack(rotations) if trusted else None
        return ParticleTable(
            frame[list(TABLE_COLUMNS)].reset_index(drop=True), rotation, original.reset_index(drop=True)
        )


def write_copick_config(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    object_names: Sequence[str],
    *,
    name: str = "cryoengine",
) -> Path:
    """Write a filesystem copick config whose overlay root is ``root``.

    Parameters
    ----------
    path
        Output JSON.
    root
        Project root (holds ``ExperimentRuns``).
    object_names
        Pickable particle objects (labels 1, 2, ...).
    name
        Project name.

    Returns
    -------
    Path
        ``path``.
    """
    config = {
        "name": name,
        "description": "written by cryoengine",
        "version": "0.2.0",
        "config_type": "filesystem",
        "pickable_objects": [
            {"name": object_name, "is_particle": True, "label": label}
            for label, object_name in enumerate(object_names, start=1)
        ],
        "overlay_root": f"local://{Path(root).resolve()}",
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def write_copick_tomogram(
    root: str | os.PathLike[str],
    run: str,
    voxel_size_A: float,
    tomo_type: str,
    volume_zyx: np.ndarray,
    *,
    chunk: int = 64,
) -> Path:
    """Write a tomogram as a one-level OME-Zarr (zarr v2 format, as copick writes it).

    Parameters
    ----------
    root
        Project root.
    run, voxel_size_A, tomo_type
        Where it goes: ``ExperimentRuns/<run>/VoxelSpacing<voxel>/<tomo_type>.zarr``.
    volume_zyx
        `(nz, ny, nx)` tomogram (stored float32).
    chunk
        Chunk edge in voxels.

    Returns
    -------
    Path
        The ``.zarr`` folder.
    """
    volume = np.asarray(volume_zyx, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume_zyx must be 3D, got shape {volume.shape}")
    path = Path(root) / "ExperimentRuns" / run / _voxel_folder(voxel_size_A) / f"{tomo_type}.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=2)
    array = group.create_array("0", shape=volume.shape, chunks=(chunk,) * 3, dtype="float32")
    array[...] = volume
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": tomo_type,
            "axes": _AXES,
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [float(voxel_size_A)] * 3}],
                }
            ],
        }
    ]
    return path


def write_copick_picks(
    root: str | os.PathLike[str],
    run: str,
    object_name: str,
    centres_zyx_A: np.ndarray,
    *,
    rotation: np.ndarray | None = None,
    user_id: str = "cryoengine",
    session_id: str = "0",
    voxel_size_A: float | None = None,
    scores: np.ndarray | None = None,
) -> Path:
    """Write one picks file (centres in Å from voxel 0; rotations ``particle = R · reference``).

    Parameters
    ----------
    root
        Project root.
    run, object_name, user_id, session_id
        Name the file: ``ExperimentRuns/<run>/Picks/<user_id>_<session_id>_<object_name>.json``.
    centres_zyx_A
        `(N, 3)` particle centres (Å).
    rotation
        `(N, 3, 3)` orientations on ``(z, y, x)``; without them the identity is written and
        ``trust_orientation`` is false.
    voxel_size_A
        Voxel spacing the picks were made on.
    scores
        `(N,)` per-pick scores (default 1).

    Returns
    -------
    Path
        The JSON file.
    """
    centres = np.asarray(centres_zyx_A, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 3 or not np.all(np.isfinite(centres)):
        raise ValueError(f"centres_zyx_A must be finite with shape (N, 3), got shape {centres.shape}")
    points = []
    for index, centre in enumerate(centres):
        matrix = np.eye(4)
        if rotation is not None:
            matrix[:3, :3] = np.asarray(rotation[index], dtype=np.float64)[::-1, ::-1]
        points.append(
            {
                "location": {"x": float(centre[2]), "y": float(centre[1]), "z": float(centre[0])},
                "transformation_": matrix.tolist(),
                "instance_id": 0,
                "score": 1.0 if scores is None else float(scores[index]),
            }
        )
    record = {
        "pickable_object_name": object_name,
        "user_id": user_id,
        "session_id": str(session_id),
        "run_name": run,
        "voxel_spacing": None if voxel_size_A is None else float(voxel_size_A),
        "unit": "angstrom",
        "points": points,
        "trust_orientation": rotation is not None,
    }
    path = Path(root) / "ExperimentRuns" / run / "Picks" / f"{user_id}_{session_id}_{object_name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path
