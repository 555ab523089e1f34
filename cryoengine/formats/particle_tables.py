"""Particle coordinate files users exchange (RELION 5, Warp/WarpTools STAR, plain CSV) ↔ one particle table.

Every reader returns a :class:`ParticleTable`; :func:`write_relion5_particles` writes one back.

The table (``ParticleTable.particles``, one row per particle)
-------------------------------------------------------------
``tomogram`` (str)
    Tomogram name: ``rlnTomoName``, the stem of Warp's ``rlnMicrographName``, the CSV's ``tomogram``,
    or the copick run.
``source_file`` (str), ``source_row`` (int)
    The file and 0-based row the particle came from.
``centre_z_A``, ``centre_y_A``, ``centre_x_A`` (float)
    Particle centre in Å from the centre of the tomogram's voxel 0 (the "corner" convention), with
    RELION's origin shifts applied. Voxel ``i`` of a tomogram at voxel ``p`` is at ``i · p`` Å whatever
    its binning, so the centre is at voxel ``centre_A / p`` of any reconstruction of the field.
``coordinate_pixel_size_A`` (float)
    Pixel size the file's coordinates were given in (NaN for coordinates given in Å).
``tomogram_size_z_A``, ``tomogram_size_y_A``, ``tomogram_size_x_A`` (float)
    Tomogram extent (voxel count × voxel) when known, NaN otherwise; it defines the centre of
    ``rlnCenteredCoordinate*Angst``.

``ParticleTable.rotation`` is `(N, 3, 3)` (``particle = R · reference`` on ``(z, y, x)``, through
:func:`cryoengine.physics.rotation.relion_euler_deg_to_rotation`) when the file has orientations, else None;
``ParticleTable.original`` keeps the rows as read (same index), for write-back.

Conventions of the formats
--------------------------
RELION 5 ``rlnCenteredCoordinateX/Y/ZAngst``
    Relative to the tomogram centre, which RELION places at ``size / 2`` pixels in float division
    (``TomogramSet::loadTomogram``: ``centre = (w0 / 2.0, h0 / 2.0, d0 / 2.0)``, with ``w0, h0, d0`` =
    ``rlnTomoSizeX/Y/Z``); ``ParticleSet::getParticleCoordDecenteredPixel`` returns
    ``rlnCenteredCoordinate / rlnTomoTiltSeriesPixelSize + centre``. So
    ``centre_A = centred_A + size_A / 2 − origin_A``, with ``size_A`` from ``rlnTomoSizeX/Y/Z ·
    rlnTomoTiltSeriesPixelSize`` of the tomograms STAR, or the tomogram's voxel count × voxel. This is
    the inverse of :func:`cryoengine.formats.relion_export.export_class`.
RELION ``rlnCoordinateX/Y/Z``
    Pixels (RELION 4/5: of the tilt series, ``rlnTomoTiltSeriesPixelSize``) from voxel 0:
    ``centre_A = coordinate · pixel_size_A − origin_A``.
``rlnOriginX/Y/ZAngst``
    RELION predicts the particle at box centre − origin, so the particle centre is the coordinate minus
    the origin (as RELION's re-centring computes it).
Warp / WarpTools
    ``rlnMicrographName`` names the tomogram (its stem, less ``.tomostar``/``.mrc``, is the tomogram
    name), ``rlnCoordinateX/Y/Z`` in pixels of ``rlnImagePixelSize`` / ``rlnPixelSize`` /
    ``rlnDetectorPixelSize · 10⁴ / rlnMagnification`` or of the tomogram.
CSV
    Columns ``tomogram, x, y, z`` (any other columns are kept) in pixels or Å, as the caller states.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import starfile

from cryoengine.formats.mrc import TomogramGeometry
from cryoengine.physics.rotation import relion_euler_deg_to_rotation, rotation_to_relion_euler_deg

__all__ = [
    "TABLE_COLUMNS",
    "ParticleTable",
    "ParticleTableError",
    "read_csv_particles",
    "read_tomogram_names",
    "read_relion5_particles",
    "read_relion_tomogram_files",
    "read_relion_tomograms",
    "read_warp_particles",
    "write_relion5_particles",
]

TABLE_COLUMNS = (
    "tomogram",
    "source_file",
    "source_row",
    "centre_z_A",
    "centre_y_A",
    "centre_x_A",
    "coordinate_pixel_size_A",
    "tomogram_size_z_A",
    "tomogram_size_y_A",
    "tomogram_size_x_A",
)
_CENTRE = ("centre_z_A", "centre_y_A", "centre_x_A")
_SIZE = ("tomogram_size_z_A", "tomogram_size_y_A", "tomogram_size_x_A")
_ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
_SUBTOMOGRAM_ANGLES = ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")
_WARP_SUFFIXES = (".tomostar", ".mrc", ".rec", ".st")
# WarpTools names a reconstruction <tomostar stem>_<pixel size, 2 decimals>Apx.mrc.
_WARP_PIXEL_SUFFIX = re.compile(r"_\d+(\.\d+)?Apx$")


class ParticleTableError(ValueError):
    """A particle file that cannot be read as particles (the message names the file and the field)."""


@dataclass(frozen=True)
class ParticleTable:
    """Particles of one or more tomograms in one table (module docstring).

    Attributes
    ----------
    particles
        `N` rows with :data:`TABLE_COLUMNS`.
    rotation
        `(N, 3, 3)` float64 orientations, or None.
    original
        `N` rows of the file as read, same index as ``particles``.
    """

    particles: pd.DataFrame
    rotation: np.ndarray | None
    original: pd.DataFrame

    def centres_zyx_A(self) -> np.ndarray:
        """`(N, 3)` float64 particle centres in Å from voxel 0."""
        return self.particles[list(_CENTRE)].to_numpy(dtype=np.float64)

    def with_tomogram_sizes(self, tomograms: Mapping[str, TomogramGeometry]) -> ParticleTable:
        """Fill unknown tomogram sizes (NaN) from the tomograms' geometry, e.g. for copick picks.

        Parameters
        ----------
        tomograms
            Tomogram name → :class:`TomogramGeometry`; names not listed keep their sizes.

        Returns
        -------
        ParticleTable
            A copy with ``tomogram_size_*_A`` filled where they were NaN.
        """
        particles = self.particles.copy()
        sizes = particles[list(_SIZE)].to_numpy(dtype=np.float64, copy=True)
        for name, geometry in tomograms.items():
            rows = (particles["tomogram"] == name).to_numpy() & np.any(np.isnan(sizes), axis=1)
            sizes[rows] = geometry.size_zyx_A
        particles[list(_SIZE)] = sizes
        return ParticleTable(particles, self.rotation, self.original)

    def select(self, tomogram: str) -> ParticleTable:
        """Select the particles of one tomogram."""
        mask = (self.particles["tomogram"] == tomogram).to_numpy()
        return ParticleTable(
            self.particles[mask].reset_index(drop=True),
            None if self.rotation is None else self.rotation[mask],
            self.original[mask].reset_index(drop=True),
        )


def read_relion_tomograms(path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """Read a RELION 5 tomograms STAR: name → tilt-series pixel size, binning and size in Å.

    Parameters
    ----------
    path
        ``tomograms.star`` (block ``global``, one row per tomogram).

    Returns
    -------
    dict
        ``{name: {"tilt_series_pixel_size_A", "binning", "size_z_A", "size_y_A", "size_x_A"}}``; sizes
        are NaN when ``rlnTomoSizeX/Y/Z`` is absent, binning 1 when ``rlnTomoTomogramBinning`` is.
    """
    table = _star_block(path, ("global",), "rlnTomoName")
    if "rlnTomoTiltSeriesPixelSize" not in table:
        raise ParticleTableError(f"{path}: no rlnTomoTiltSeriesPixelSize column in the tomograms table")
    out = {}
    for _, row in table.iterrows():
        pixel = float(row["rlnTomoTiltSeriesPixelSize"])
        sizes = [
            float(row[f"rlnTomoSize{axis}"]) * pixel if f"rlnTomoSize{axis}" in row else math.nan
            for axis in "ZYX"
        ]
        out[str(row["rlnTomoName"])] = {
            "tilt_series_pixel_size_A": pixel,
            "binning": float(row.get("rlnTomoTomogramBinning", 1.0)),
            "size_z_A": sizes[0],
            "size_y_A": sizes[1],
            "size_x_A": sizes[2],
        }
    return out


def read_relion_tomogram_files(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a RELION 5 tomograms STAR's reconstructions: name → ``rlnTomoReconstructedTomogram`` (as written).

    Tomograms without that column (or an empty entry) are left out.
    """
    table = _star_block(path, ("global",), "rlnTomoName")
    if "rlnTomoReconstructedTomogram" not in table:
        return {}
    return {
        str(name): str(file)
        for name, file in zip(table["rlnTomoName"], table["rlnTomoReconstructedTomogram"], strict=True)
        if str(file)
    }


def read_tomogram_names(
    path: str | os.PathLike[str], input_format: Literal["relion5", "warp", "csv"]
) -> list[str]:
    """Read the names of the tomograms a particle file refers to, in order of first appearance.

    Needs no tomogram geometry (unlike the particle readers).

    Parameters
    ----------
    path
        Particle STAR or CSV.
    input_format
        ``"relion5"`` (``rlnTomoName``), ``"warp"`` (stems of ``rlnMicrographName``) or ``"csv"``
        (``tomogram``).

    Returns
    -------
    list of str
        Distinct names.
    """
    path = Path(path)
    if input_format == "csv":
        if not path.is_file():
            raise ParticleTableError(f"particle file {path} does not exist")
        frame = pd.read_csv(path)
        column = "tomogram"
    elif input_format in ("relion5", "warp"):
        frame = _particles_block(_read_star(path), path)
        column = "rlnTomoName" if input_format == "relion5" else "rlnMicrographName"
    else:
        raise ValueError(f"input_format must be 'relion5', 'warp' or 'csv', got {input_format!r}")
    if column not in frame:
        raise ParticleTableError(f"{path}: no {column} column naming the particles' tomograms")
    values = frame[column].astype(str)
    names = [_warp_tomogram_name(v) for v in values] if input_format == "warp" else list(values)
    return list(dict.fromkeys(names))


def read_relion5_particles(
    path: str | os.PathLike[str],
    *,
    tomograms_star: str | os.PathLike[str] | None = None,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
    pixel_size_A: float | None = None,
) -> ParticleTable:
    """Read a RELION 5 tomography particle STAR.

    Centred coordinates (``rlnCenteredCoordinate*Angst``) are used when present, else pixel
    coordinates (``rlnCoordinate*``). The tomogram size (for centred coordinates) comes from
    ``tomograms_star``, else from ``tomograms``; the pixel size (for pixel coordinates) from the
    optics table's ``rlnTomoTiltSeriesPixelSize``, else ``tomograms_star``, else ``pixel_size_A``, else
    the tomogram's header voxel.

    Parameters
    ----------
    path
        Particle STAR (a ``particles`` block, with or without ``optics``).
    tomograms_star
        RELION 5 ``tomograms.star`` of the same tomograms.
    tomograms
        Tomogram name → :class:`TomogramGeometry` from the tomogram files' headers.
    pixel_size_A
        Pixel size of ``rlnCoordinate*`` when neither STAR file gives it.

    Returns
    -------
    ParticleTable
        One row per particle.

    Raises
    ------
    ParticleTableError
        No coordinates or no ``rlnTomoName``; a tomogram whose size or pixel size is unknown (or 0).
    """
    path = Path(path)
    blocks = _read_star(path)
    particles = _particles_block(blocks, path)
    if "rlnTomoName" not in particles:
        raise ParticleTableError(
            f"{path}: no rlnTomoName column (a RELION 5 tomography particle STAR names its tomograms)"
        )
    optics = blocks.get("optics")
    star_tomograms = {} if tomograms_star is None else read_relion_tomograms(tomograms_star)
    tomograms = dict(tomograms or {})
    names = particles["rlnTomoName"].astype(str).to_numpy()
    centred = _columns(particles, "rlnCenteredCoordinate{}Angst")
    pixels = _columns(particles, "rlnCoordinate{}")
    if centred is None and pixels is None:
        raise ParticleTableError(
            f"{path}: no coordinates (neither rlnCenteredCoordinateX/Y/ZAngst nor rlnCoordinateX/Y/Z)"
        )

    sizes = np.full((len(particles), 3), np.nan)
    for name in np.unique(names):
        rows = names == name
        if name in star_tomograms:
            entry = star_tomograms[name]
            sizes[rows] = [entry["size_z_A"], entry["size_y_A"], entry["size_x_A"]]
        if np.any(np.isnan(sizes[rows])) and name in tomograms:
            sizes[rows] = tomograms[name].size_zyx_A
    pixel = np.full(len(particles), np.nan)
    if centred is not None:
        missing = np.flatnonzero(np.any(~np.isfinite(sizes), axis=1))
        if len(missing):
            name = names[missing[0]]
            raise ParticleTableError(
                f"{path}: tomogram {name!r} (rlnTomoName) has no known size for rlnCenteredCoordinate*Angst: "
                "give a tomograms STAR with rlnTomoSizeX/Y/Z and rlnTomoTiltSeriesPixelSize, or its "
                "tomogram file with a voxel size in the header"
            )
        centre_zyx_A = centred[:, ::-1] + sizes / 2
    elif pixels is not None:
        pixel = _pixel_sizes(particles, optics, names, star_tomograms, tomograms, pixel_size_A, path)
        centre_zyx_A = pixels[:, ::-1] * pixel[:, None]
    centre_zyx_A = centre_zyx_A - _origins_zyx_A(particles, pixel, path)
    return _table(path, particles, names, centre_zyx_A, pixel, sizes)


def read_warp_particles(
    path: str | os.PathLike[str],
    *,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
    pixel_size_A: float | None = None,
) -> ParticleTable:
    """Read a Warp / WarpTools particle STAR (``rlnMicrographName``, pixel coordinates).

    Parameters
    ----------
    path
        Particle STAR.
    tomograms
        Tomogram name → :class:`TomogramGeometry`; its voxel is the coordinates' pixel when the STAR
        gives none.
    pixel_size_A
        Pixel size of the coordinates, overriding the tomogram header.

    Returns
    -------
    ParticleTable
        One row per particle; ``tomogram`` is the stem of ``rlnMicrographName``.
    """
    path = Path(path)
    blocks = _read_star(path)
    particles = _particles_block(blocks, path)
    if "rlnMicrographName" not in particles:
        raise ParticleTableError(
            f"{path}: no rlnMicrographName column (Warp names each particle's tomogram there)"
        )
    pixels = _columns(particles, "rlnCoordinate{}")
    if pixels is None:
        raise ParticleTableError(f"{path}: no coordinates (rlnCoordinateX/Y/Z)")
    names = np.array([_warp_tomogram_name(value) for value in particles["rlnMicrographName"]])
    tomograms = dict(tomograms or {})
    pixel = _pixel_sizes(particles, blocks.get("optics"), names, {}, tomograms, pixel_size_A, path)
    sizes = np.array([tomograms[n].size_zyx_A if n in tomograms else [np.nan] * 3 for n in names]).reshape(
        -1, 3
    )
    centre_zyx_A = pixels[:, ::-1] * pixel[:, None] - _origins_zyx_A(particles, pixel, path)
    return _table(path, particles, names, centre_zyx_A, pixel, sizes)


def read_csv_particles(
    path: str | os.PathLike[str],
    *,
    unit: Literal["pixel", "angstrom"],
    tomograms: Mapping[str, TomogramGeometry] | None = None,
    pixel_size_A: float | None = None,
) -> ParticleTable:
    """Read a CSV with columns ``tomogram, x, y, z`` (coordinates from voxel 0).

    Parameters
    ----------
    path
        CSV file with a header row.
    unit
        ``"angstrom"`` or ``"pixel"`` (pixels of ``pixel_size_A``, else of the tomogram's header voxel).
    tomograms
        Tomogram name → :class:`TomogramGeometry`.
    pixel_size_A
        Pixel size for ``unit="pixel"``.

    Returns
    -------
    ParticleTable
        One row per particle, without rotations.
    """
    path = Path(path)
    if unit not in ("pixel", "angstrom"):
        raise ValueError(f"unit must be 'pixel' or 'angstrom', got {unit!r}")
    if not path.is_file():
        raise ParticleTableError(f"particle file {path} does not exist")
    frame = pd.read_csv(path)
    missing = [column for column in ("tomogram", "x", "y", "z") if column not in frame]
    if missing:
        raise ParticleTableError(
            f"{path}: no {', '.join(missing)} column (a particle CSV has tomogram, x, y, z)"
        )
    names = frame["tomogram"].astype(str).to_numpy()
    xyz = frame[["x", "y", "z"]].to_numpy(dtype=np.float64)
    tomograms = dict(tomograms or {})
    sizes = np.array([tomograms[n].size_zyx_A if n in tomograms else [np.nan] * 3 for n in names]).reshape(
        -1, 3
    )
    if unit == "angstrom":
        pixel = np.full(len(frame), np.nan)
        centre_zyx_A = xyz[:, ::-1]
    else:
        pixel = _pixel_sizes(frame, None, names, {}, tomograms, pixel_size_A, path)
        centre_zyx_A = xyz[:, ::-1] * pixel[:, None]
    return _table(path, frame, names, centre_zyx_A, pixel, sizes, with_angles=False)


def write_relion5_particles(
    path: str | os.PathLike[str],
    table: ParticleTable,
    *,
    tilt_series_pixel_size_A: float,
    rotation: np.ndarray | None = None,
    class_number: Sequence[int] | np.ndarray | None = None,
    confidence: Sequence[float] | np.ndarray | None = None,
    shift_zyx_A: np.ndarray | None = None,
    optics: Mapping[str, float] | None = None,
) -> Path:
    """Write a RELION 5 tomography particle STAR (blocks ``optics`` and ``particles``).

    Columns: ``rlnTomoName``, ``rlnCenteredCoordinateX/Y/ZAngst`` (relative to the tomogram centre,
    ``size_A / 2``), ``rlnCoordinateX/Y/Z`` (pixels of ``tilt_series_pixel_size_A``), ``rlnOriginX/Y/ZAngst``
    (0: the coordinates are the particle centres), ``rlnAngleRot/Tilt/Psi`` when a rotation is known,
    ``rlnClassNumber`` and ``rlnMaxValueProbDistribution`` (confidence) when given, ``rlnOpticsGroup``;
    other ``rln*`` columns of the original rows are carried over. Optics: ``rlnOpticsGroup``,
    ``rlnOpticsGroupName``, ``rlnTomoTiltSeriesPixelSize`` and any ``optics`` entries (e.g.
    ``rlnVoltage``).

    Parameters
    ----------
    path
        Output STAR.
    table
        The particles (their tomogram sizes must be known).
    tilt_series_pixel_size_A
        Pixel size of the tilt series (Å), the unit of ``rlnCoordinate*``.
    rotation
        `(N, 3, 3)` poses to write; default ``table.rotation``.
    class_number
        `(N,)` 1-based classes.
    confidence
        `(N,)` per-particle confidence in ``[0, 1]``.
    shift_zyx_A
        `(N, 3)` refined offsets of the particle centres (Å), added to the coordinates.
    optics
        Extra optics columns.

    Returns
    -------
    Path
        ``path``.
    """
    if not _positive(tilt_series_pixel_size_A):
        raise ValueError(f"tilt_series_pixel_size_A must be positive, got {tilt_series_pixel_size_A!r}")
    frame = table.particles
    n = len(frame)
    sizes = frame[list(_SIZE)].to_numpy(dtype=np.float64)
    if np.any(~np.isfinite(sizes)):
        bad = frame["tomogram"].to_numpy()[np.flatnonzero(np.any(~np.isfinite(sizes), axis=1))[0]]
        raise ValueError(f"tomogram {bad!r} has no known size, needed for rlnCenteredCoordinate*Angst")
    centre = table.centres_zyx_A()
    if shift_zyx_A is not None:
        centre = centre + _array(shift_zyx_A, (n, 3), "shift_zyx_A")
    carried = {c: table.original[c].to_numpy() for c in table.original.columns if str(c).startswith("rln")}
    out = pd.DataFrame(carried)
    out["rlnTomoName"] = frame["tomogram"].astype(str).to_numpy()
    centred_xyz = (centre - sizes / 2)[:, ::-1]
    pixel_xyz = centre[:, ::-1] / tilt_series_pixel_size_A
    for k, axis in enumerate("XYZ"):
        out[f"rlnCenteredCoordinate{axis}Angst"] = centred_xyz[:, k]
        out[f"rlnCoordinate{axis}"] = pixel_xyz[:, k]
        out[f"rlnOrigin{axis}Angst"] = np.zeros(n)
    rotation = table.rotation if rotation is None else np.asarray(rotation, dtype=np.float64)
    if rotation is not None:
        angles = rotation_to_relion_euler_deg(_array(rotation, (n, 3, 3), "rotation"))
        for column, values in zip(_ANGLES, angles, strict=True):
            out[column] = np.asarray(values, dtype=np.float64).reshape(n)
    if class_number is not None:
        out["rlnClassNumber"] = _array(class_number, (n,), "class_number").astype(int)
    if confidence is not None:
        out["rlnMaxValueProbDistribution"] = _array(confidence, (n,), "confidence")
    out["rlnOpticsGroup"] = np.ones(n, dtype=int)
    first = ["rlnTomoName", *(f"rlnCenteredCoordinate{a}Angst" for a in "XYZ")]
    out = out[first + [c for c in out.columns if c not in first]]
    optics_frame = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnTomoTiltSeriesPixelSize": [float(tilt_series_pixel_size_A)],
            **{key: [value] for key, value in (optics or {}).items()},
        }
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    starfile.write({"optics": optics_frame, "particles": out}, path, overwrite=True)
    return path


def _read_star(path: Path) -> dict[str, pd.DataFrame]:
    """All blocks of a STAR file as data frames."""
    if not path.is_file():
        raise ParticleTableError(f"particle file {path} does not exist")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as error:  # starfile raises assorted errors on malformed files
        raise ParticleTableError(f"{path} is not a readable STAR file ({error})") from None
    return {
        name: block if isinstance(block, pd.DataFrame) else pd.DataFrame([block])
        for name, block in blocks.items()
    }


def _star_block(path: str | os.PathLike[str], names: tuple[str, ...], required: str) -> pd.DataFrame:
    """Return the first block of ``names`` (else the only block) that has column ``required``."""
    blocks = _read_star(Path(path))
    for name in (*names, *blocks):
        block = blocks.get(name)
        if block is not None and required in block:
            return block
    raise ParticleTableError(f"{path}: no block with a {required} column")


def _particles_block(blocks: dict[str, pd.DataFrame], path: Path) -> pd.DataFrame:
    """Return the ``particles`` block, or the only block that is not ``optics`` / ``general``."""
    if "particles" in blocks:
        return blocks["particles"].reset_index(drop=True)
    others = [name for name in blocks if name not in ("optics", "general")]
    if len(others) == 1:
        return blocks[others[0]].reset_index(drop=True)
    raise ParticleTableError(f"{path}: no data_particles block (blocks: {', '.join(blocks) or 'none'})")


def _columns(frame: pd.DataFrame, pattern: str) -> np.ndarray | None:
    """`(N, 3)` float64 columns ``pattern`` for X, Y, Z, or None when any is absent."""
    names = [pattern.format(axis) for axis in "XYZ"]
    if not all(name in frame for name in names):
        return None
    values = frame[names].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ParticleTableError(f"non-finite values in {', '.join(names)}")
    return values


def _pixel_sizes(
    frame: pd.DataFrame,
    optics: pd.DataFrame | None,
    names: np.ndarray,
    star_tomograms: Mapping[str, Mapping[str, float]],
    tomograms: Mapping[str, TomogramGeometry],
    pixel_size_A: float | None,
    path: Path,
) -> np.ndarray:
    """`(N,)` pixel size of each particle's coordinates (the order of preference of the readers)."""
    pixel = np.full(len(frame), np.nan)
    if optics is not None and "rlnOpticsGroup" in optics and "rlnOpticsGroup" in frame:
        for column in ("rlnTomoTiltSeriesPixelSize", "rlnImagePixelSize"):
            if column in optics:
                lookup = dict(zip(optics["rlnOpticsGroup"], optics[column], strict=True))
                values = np.array([float(lookup.get(g, np.nan)) for g in frame["rlnOpticsGroup"]])
                pixel = np.where(_positive_mask(pixel), pixel, values)
                break
    for column in ("rlnPixelSize", "rlnImagePixelSize"):
        if column in frame:
            pixel = np.where(_positive_mask(pixel), pixel, frame[column].to_numpy(dtype=np.float64))
    if "rlnDetectorPixelSize" in frame and "rlnMagnification" in frame:
        derived = (
            frame["rlnDetectorPixelSize"].to_numpy(dtype=np.float64)
            * 1e4
            / frame["rlnMagnification"].to_numpy(dtype=np.float64)
        )
        pixel = np.where(_positive_mask(pixel), pixel, derived)
    for name in np.unique(names):
        rows = (names == name) & ~_positive_mask(pixel)
        if not np.any(rows):
            continue
        if name in star_tomograms and _positive(star_tomograms[name]["tilt_series_pixel_size_A"]):
            pixel[rows] = star_tomograms[name]["tilt_series_pixel_size_A"]
        elif pixel_size_A is not None and _positive(pixel_size_A):
            pixel[rows] = pixel_size_A
        elif name in tomograms and _positive(tomograms[name].voxel_size_A):
            pixel[rows] = tomograms[name].voxel_size_A
        else:
            header = f" and in the header of {tomograms[name].source}" if name in tomograms else ""
            raise ParticleTableError(
                f"{path}: pixel size of the coordinates of tomogram {name!r} is missing or 0 in the STAR "
                f"(rlnTomoTiltSeriesPixelSize / rlnImagePixelSize){header}; pass pixel_size_A"
            )
    return pixel


def _origins_zyx_A(frame: pd.DataFrame, pixel: np.ndarray, path: Path) -> np.ndarray:
    """`(N, 3)` RELION origin shifts in Å, ``(z, y, x)`` (0 when absent)."""
    angst = _columns(frame, "rlnOrigin{}Angst")
    if angst is not None:
        return angst[:, ::-1]
    pixels = _columns(frame, "rlnOrigin{}")
    if pixels is not None:
        if not np.all(_positive_mask(pixel)):
            raise ParticleTableError(f"{path}: rlnOriginX/Y/Z are in pixels but the pixel size is unknown")
        return pixels[:, ::-1] * pixel[:, None]
    return np.zeros((len(frame), 3))


def _table(
    path: Path,
    frame: pd.DataFrame,
    names: np.ndarray,
    centre_zyx_A: np.ndarray,
    pixel: np.ndarray,
    sizes: np.ndarray,
    *,
    with_angles: bool = True,
) -> ParticleTable:
    """Assemble a :class:`ParticleTable`, converting RELION angles when present."""
    present = [column in frame for column in _SUBTOMOGRAM_ANGLES]
    if with_angles and any(present):
        extra = frame[[c for c, p in zip(_SUBTOMOGRAM_ANGLES, present, strict=True) if p]].to_numpy(
            dtype=np.float64
        )
        if np.any(extra != 0):
            raise ParticleTableError(
                f"{path}: non-zero rlnTomoSubtomogramRot/Tilt/Psi (pseudo-subtomogram frames) are not "
                "supported; apply them to rlnAngleRot/Tilt/Psi first"
            )
    rotation = None
    if with_angles and all(column in frame for column in _ANGLES):
        angles = frame[list(_ANGLES)].to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(angles)):
            raise ParticleTableError(f"{path}: non-finite values in rlnAngleRot/Tilt/Psi")
        rotation = relion_euler_deg_to_rotation(angles[:, 0], angles[:, 1], angles[:, 2])
    particles = pd.DataFrame(
        {
            "tomogram": names.astype(str),
            "source_file": str(path),
            "source_row": np.arange(len(frame), dtype=np.int64),
            **{column: centre_zyx_A[:, k] for k, column in enumerate(_CENTRE)},
            "coordinate_pixel_size_A": pixel.astype(np.float64),
            **{column: sizes[:, k] for k, column in enumerate(_SIZE)},
        }
    )
    return ParticleTable(particles, rotation, frame.reset_index(drop=True))


def _warp_tomogram_name(value: object) -> str:
    """Tomogram name from Warp's ``rlnMicrographName``: the file name less the known suffixes.

    ``TS_01.tomostar``, ``TS_01.mrc`` and WarpTools' reconstruction ``TS_01_10.00Apx.mrc`` all give
    ``TS_01``.
    """
    name = Path(str(value)).name
    changed = True
    while changed:
        changed = False
        for suffix in _WARP_SUFFIXES:
            if name.endswith(suffix):
                name, changed = name[: -len(suffix)], True
    return _WARP_PIXEL_SUFFIX.sub("", name)


def _array(values: object, shape: tuple[int, ...], label: str) -> np.ndarray:
    """``values`` as float64 of ``shape``, finite."""
    array = np.asarray(values, dtype=np.float64)
    if array.shape != shape or not np.all(np.isfinite(array)):
        raise ValueError(f"{label} must be finite with shape {shape}, got shape {array.shape}")
    return array


def _positive(value: float | None) -> bool:
    """Tell whether ``value`` is a finite number > 0."""
    return value is not None and math.isfinite(float(value)) and float(value) > 0


def _positive_mask(values: np.ndarray) -> np.ndarray:
    """Element-wise finite and > 0."""
    return np.isfinite(values) & (values > 0)
