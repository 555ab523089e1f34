"""Export of one class at one SNR level to what RELION reads: one MRC per subtomogram plus a STAR file.

Euler angles come from :func:`cryoengine.physics.rotation.rotation_to_relion_euler_deg`, the one conversion.

Output of ``export_class(dataset, "a", 0.05, out_dir)``
-------------------------------------------------------
``out_dir/subtomograms/a_snr0.05_000000.mrc`` ...
    One float32 `D`³ volume per particle (RELION reads a subtomogram per file; ``n@stack.mrcs`` addresses
    2D images only), voxel size in the header. ``clean`` (∞) is exported as ``a_clean_*``.
``out_dir/ctf/a_tomo0000.mrc`` ...
    The 3D CTF of each source tomogram's subtomograms (:func:`cryoengine.physics.tilt.subtomogram_ctf_weight`:
    every tilt's CTF × exposure filter on its central slice, 0 in the missing wedge), `D`³ float32 on
    the centred Fourier grid, the full-size ``rlnCtfImage`` layout RELION reads; shared by the particles
    of one tomogram (one defocus per tomogram).
``out_dir/a_snr0.05.star``
    RELION 5 tomography subtomogram STAR: ``data_general`` (``rlnTomoSubTomosAre2DStacks`` 0: the
    subtomograms are 3D volumes), ``data_optics`` (``rlnOpticsGroup`` 1, ``rlnImagePixelSize``,
    ``rlnImageSize`` `D`, ``rlnImageDimensionality`` 3, ``rlnTomoTiltSeriesPixelSize`` = the voxel size,
    ``rlnTomoSubtomogramBinning`` 1, ``rlnCtfDataAreCtfPremultiplied`` 0, and ``rlnVoltage``,
    ``rlnSphericalAberration``, ``rlnAmplitudeContrast`` from the dataset's ``optics``) and
    ``data_particles``, whose ``rlnImageName`` and ``rlnCtfImage`` are relative to the STAR file's
    directory. Written last, so a STAR file never names a missing volume.
``out_dir/a_snr0.05.star.json``
    Provenance of the export, with the dataset's own.

Conventions of ``data_particles``
    ``rlnCoordinateX/Y/Z``: the box centre in the source tomogram (voxels), ``position − shift`` with
    ``(z, y, x)`` reversed. ``rlnCenteredCoordinateX/Y/ZAngst`` (RELION 5): the same point relative to
    the tomogram centre (``slab_shape / 2``), in Å. ``rlnOriginX/Y/ZAngst``: ``−shift · voxel_size_A``,
    reversed, because RELION predicts a particle at box centre − origin
    (``ObservationModel::predictObservation`` shifts the projection by ``−rlnOrigin``) while our particle
    sits at box centre + shift; so
    ``rlnCoordinate − rlnOrigin / pixel size`` is the particle centre ``position``, as RELION's
    re-centring computes it. ``rlnAngleRot/Tilt/Psi``: from ``rotation``. ``rlnDefocusU/V``:
    ``defocus_um · 10⁴`` Å, ``rlnDefocusAngle`` 0. ``rlnTomoName``: ``<class>_tomo<index:04d>``.
    ``rlnClassNumber``: the class's stable label (:meth:`~cryoengine.store.Dataset.class_index`) plus 1.

An existing output file is never overwritten unless ``force`` is set: exporting into a directory that
already holds an export of the same class and level is an error naming the first such file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryoengine.formats.atomic_write import atomic_path
from cryoengine.formats.mrc import write_volume
from cryoengine.formats.provenance import provenance
from cryoengine.physics.ctf import CtfParameters
from cryoengine.physics.rotation import rotation_to_relion_euler_deg
from cryoengine.physics.tilt import TiltScheme, subtomogram_ctf_weight
from cryoengine.store import open_dataset

__all__ = ["UnknownSnrLevelError", "export_class"]

# Relative tolerance when matching a requested SNR level to a stored one.
_LEVEL_RTOL = 1e-6


class UnknownSnrLevelError(ValueError):
    """An SNR level that the dataset does not hold (the message lists the available ones)."""


def export_class(
    dataset_path: str | os.PathLike[str],
    class_id: str,
    snr: float | str,
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
) -> tuple[list[Path], Path]:
    """Write one class at one SNR level as per-particle MRC volumes and a RELION STAR file.

    Parameters
    ----------
    dataset_path
        The ``dataset.zarr`` directory.
    class_id
        Class to export.
    snr
        One of the dataset's ``snr_levels`` (number or numeric string), or ``"clean"`` / ``"inf"`` /
        ``math.inf`` for the noise-free volumes.
    out_dir
        Output directory (created if missing); see the module docstring for what goes in it.
    force
        Overwrite files of an earlier export; without it, an existing output file is an error.

    Returns
    -------
    mrc_paths : list of Path
        `N` volumes, in class order.
    star_path : Path
        The STAR file that references them.

    Raises
    ------
    ClassNotFoundError
        ``class_id`` is not in the dataset.
    UnknownSnrLevelError
        ``snr`` is not one of the dataset's levels.
    FileExistsError
        An output file exists and ``force`` is False.
    ValueError
        The dataset lacks the ``tilt_scheme``, ``optics`` or ``sample`` attributes the workflow writes.
    """
    dataset = open_dataset(dataset_path)
    class_index = dataset.class_index(class_id)
    level = _level_index(snr, dataset.snr_levels, dataset.path)
    tag = "clean" if level is None else f"snr{dataset.snr_levels[level]:g}"
    out_dir = Path(out_dir)
    voxel_size_A = dataset.voxel_size_A
    scheme, optics_attrs, slab_shape_zyx = _acquisition(dataset.attrs, dataset.path)
    star_path = out_dir / f"{class_id}_{tag}.star"
    if not force:
        planned = [star_path, *(out_dir / "subtomograms").glob(f"{class_id}_{tag}_*.mrc")]
        existing = next((path for path in planned if path.exists()), None)
        if existing is not None:
            raise FileExistsError(
                f"{existing} exists (an earlier export); pass force=True (--force) to overwrite"
            )

    mrc_paths: list[Path] = []
    columns: dict[str, list[np.ndarray]] = {
        name: [] for name in ("rotation", "shift", "position", "tomogram", "defocus_um")
    }
    for block in dataset.iter_shards(class_id):
        volumes = block.volumes_at(level)
        for row, volume in zip(block.particle_indices, volumes, strict=True):
            path = out_dir / "subtomograms" / f"{class_id}_{tag}_{row:06d}.mrc"
            mrc_paths.append(write_volume(path, volume, voxel_size_A))
        for name, values in columns.items():
            values.append(getattr(block, name))
    rotation, shift, position, tomogram, defocus_um = (np.concatenate(columns[name]) for name in columns)
    ctf_paths = {}
    for index in np.unique(tomogram):
        ctf = CtfParameters(
            defocus_um=float(defocus_um[np.flatnonzero(tomogram == index)[0]]),
            voltage_kV=optics_attrs["voltage_kV"],
            cs_mm=optics_attrs["cs_mm"],
            amplitude_contrast=optics_attrs["amplitude_contrast"],
        )
        weight = subtomogram_ctf_weight(
            dataset.box,
            scheme,
            ctf,
            voxel_size_A,
            phase_flip=optics_attrs.get("phase_flip", False),
            exposure_filtering=optics_attrs.get("exposure_filtering", True),
        )
        ctf_path = out_dir / "ctf" / f"{class_id}_tomo{int(index):04d}.mrc"
        ctf_paths[int(index)] = write_volume(ctf_path, weight, voxel_size_A)

    rot_deg, tilt_deg, psi_deg = rotation_to_relion_euler_deg(rotation)
    box_centre_xyz = (position.astype(np.float64) - shift)[:, ::-1]
    centred_xyz_A = (box_centre_xyz - np.asarray(slab_shape_zyx, dtype=np.float64)[::-1] / 2) * voxel_size_A
    origin_xyz_A = -shift.astype(np.float64)[:, ::-1] * voxel_size_A
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnImagePixelSize": [voxel_size_A],
            "rlnImageSize": [dataset.box],
            "rlnImageDimensionality": [3],
            "rlnTomoTiltSeriesPixelSize": [voxel_size_A],
            "rlnTomoSubtomogramBinning": [1.0],
            "rlnCtfDataAreCtfPremultiplied": [0],
        }
    )
    microscope = optics_attrs
    for column, key in (
        ("rlnVoltage", "voltage_kV"),
        ("rlnSphericalAberration", "cs_mm"),
        ("rlnAmplitudeContrast", "amplitude_contrast"),
    ):
        if key in microscope:
            optics[column] = [microscope[key]]
    particles = pd.DataFrame(
        {
            "rlnTomoName": [f"{class_id}_tomo{t:04d}" for t in tomogram],
            "rlnImageName": [path.relative_to(out_dir).as_posix() for path in mrc_paths],
            "rlnCoordinateX": box_centre_xyz[:, 0],
            "rlnCoordinateY": box_centre_xyz[:, 1],
            "rlnCoordinateZ": box_centre_xyz[:, 2],
            "rlnCenteredCoordinateXAngst": centred_xyz_A[:, 0],
            "rlnCenteredCoordinateYAngst": centred_xyz_A[:, 1],
            "rlnCenteredCoordinateZAngst": centred_xyz_A[:, 2],
            "rlnAngleRot": rot_deg,
            "rlnAngleTilt": tilt_deg,
            "rlnAnglePsi": psi_deg,
            "rlnOriginXAngst": origin_xyz_A[:, 0],
            "rlnOriginYAngst": origin_xyz_A[:, 1],
            "rlnOriginZAngst": origin_xyz_A[:, 2],
            "rlnDefocusU": defocus_um.astype(np.float64) * 1e4,
            "rlnDefocusV": defocus_um.astype(np.float64) * 1e4,
            "rlnDefocusAngle": np.zeros(len(mrc_paths)),
            "rlnCtfImage": [ctf_paths[int(t)].relative_to(out_dir).as_posix() for t in tomogram],
            "rlnOpticsGroup": np.ones(len(mrc_paths), dtype=int),
            "rlnClassNumber": np.full(len(mrc_paths), class_index + 1),
        }
    )

    record = {
        "export": provenance({"dataset": str(dataset.path), "class_id": class_id, "snr": tag}),
        "dataset_provenance": dataset.attrs.get("provenance"),
    }
    with atomic_path(star_path.with_name(star_path.name + ".json")) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    with atomic_path(star_path) as tmp:
        general = {"rlnTomoSubTomosAre2DStacks": 0}
        starfile.write({"general": general, "optics": optics, "particles": particles}, tmp)
    return mrc_paths, star_path


def _acquisition(attrs: dict, dataset_path: Path) -> tuple[TiltScheme, dict, list[int]]:
    """Tilt scheme, optics and slab shape of a dataset written by the workflow (``dataset_attrs``)."""
    missing = [key for key in ("tilt_scheme", "optics", "sample") if key not in attrs]
    if missing:
        raise ValueError(
            f"{dataset_path} has no {', '.join(missing)} attributes (the workflow's dataset_attrs); the "
            "RELION export needs them for the 3D CTF and the centred coordinates"
        )
    tilt = attrs["tilt_scheme"]
    scheme = TiltScheme(
        tilt["min_angle_deg"],
        tilt["max_angle_deg"],
        tilt["step_deg"],
        tilt["order"],
        tilt["group_size"],
        tilt["dose_per_tilt_e_per_A2"],
    )
    return scheme, attrs["optics"], list(attrs["sample"]["slab_shape_zyx"])


def _level_index(snr: float | str, levels: tuple[float, ...], dataset_path: Path) -> int | None:
    """Index of ``snr`` in ``levels``, or None for the clean volumes."""
    available = "clean, " + ", ".join(f"{level:g}" for level in levels)
    if isinstance(snr, str):
        text = snr.strip().lower()
        if text in ("clean", "inf", "infinity", "∞"):
            return None
        try:
            value = float(text)
        except ValueError:
            raise UnknownSnrLevelError(
                f"SNR level {snr!r} is not a number or 'clean' (available in {dataset_path}: {available})"
            ) from None
    elif isinstance(snr, int | float | np.floating | np.integer) and not isinstance(snr, bool):
        value = float(snr)
    else:
        raise UnknownSnrLevelError(f"SNR level must be a number or 'clean', got {type(snr).__name__}")
    if math.isinf(value) and value > 0:
        return None
    for index, level in enumerate(levels):
        if math.isclose(value, level, rel_tol=_LEVEL_RTOL):
            return index
    raise UnknownSnrLevelError(f"SNR level {snr!r} is not in {dataset_path} (available: {available})")
