"""Virtual sample: an ice slab holding non-overlapping particles at random positions and uniform orientations.

Places target particles and crowders of other classes by their rotated support masks, then renders densities.

Every particle obeys ``particle = R · reference + shift`` of :mod:`cryoengine.physics.rotation`: its reference
density (box centre at ``shape // 2``) is rotated by ``R`` and put with that centre at ``centre_zyx_vox``
in the slab. The slab is the whole volume (``nz`` is the ice thickness in voxels); every particle's
support lies fully inside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cryoengine.physics.resampling import SplineVolume, rotate_volume
from cryoengine.physics.rotation import random_rotations

__all__ = [
    "ROTATED_SUPPORT_LEVEL",
    "Placements",
    "density_to_support_mask",
    "isolated_placements",
    "place_particles",
    "render_label_map",
    "render_sample",
]

# Anchors drawn per vectorised batch while searching for a free position.
_ANCHOR_BATCH = 64
#: Positions tried per particle before placement gives up. Dense crowding with touching cores (config.yaml:
#: 0.1 of the slab plus the background) jams small classes at 1,000 tries; the search stops at the first free
#: position, so raising the bound from 1,000 changed only slabs in which some particle needed more than 960
#: tries (where the last batch of the old bound was cut to 40 draws).
MAX_PLACEMENT_ATTEMPTS = 20_000
#: A rotated support voxel is occupied when linear interpolation of the 0/1 mask exceeds this: every voxel
#: that a support voxel contributes to with non-negligible weight, a conservative (slightly grown) mask.
ROTATED_SUPPORT_LEVEL = 0.01


@dataclass(frozen=True, eq=False)
class Placements:
    """Particles of a virtual sample, as parallel arrays (read-only copies).

    Attributes
    ----------
    class_index
        `(M,)` int64 index of each particle's class in the class list.
    centre_zyx_vox
        `(M, 3)` float64 position of each reference's box centre in the slab, in voxels.
    rotation
        `(M, 3, 3)` float64 rotation ``R`` of each particle (``particle = R · reference``).
    """

    class_index: np.ndarray
    centre_zyx_vox: np.ndarray
    rotation: np.ndarray

    def __post_init__(self) -> None:
        class_index = np.asarray(self.class_index)
        if class_index.ndim != 1 or not np.issubdtype(class_index.dtype, np.integer):
            raise ValueError(
                f"class_index must be a 1D integer array, got {class_index.dtype} {class_index.shape}"
            )
        if np.any(class_index < 0):
            raise ValueError(f"class_index must be non-negative, got minimum {class_index.min()}")
        m = len(class_index)
        centre = np.asarray(self.centre_zyx_vox, dtype=np.float64)
        if centre.shape != (m, 3) or not np.all(np.isfinite(centre)):
            raise ValueError(f"centre_zyx_vox must be finite with shape ({m}, 3), got {centre.shape}")
        rotation = np.asarray(self.rotation, dtype=np.float64)
        if rotation.shape != (m, 3, 3) or not np.all(np.isfinite(rotation)):
            raise ValueError(f"rotation must be finite with shape ({m}, 3, 3), got {rotation.shape}")
        for name, value in (
            ("class_index", class_index.astype(np.int64)),
            ("centre_zyx_vox", centre),
            ("rotation", rotation),
        ):
            value = value.copy()
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.class_index)


def density_to_support_mask(
    density_zyx: np.ndarray, threshold_fraction: float, margin_vox: int
) -> np.ndarray:
    """Threshold a density into a binary support and grow it by a margin.

    The support is ``density > threshold_fraction · max(density)``, grown by a Euclidean ball of radius
    ``margin_vox``. The box is padded by ``margin_vox`` on every side so that growth is never cut off;
    the padding keeps the centre convention (index ``shape // 2`` is still the reference centre).

    Parameters
    ----------
    density_zyx
        `(nz, ny, nx)` density whose maximum is positive.
    threshold_fraction
        Contour level as a fraction of the maximum, in ``(0, 1)``.
    margin_vox
        Growth radius in voxels, ``>= 0``; the contours of two placed particles stay about
        ``2 · margin_vox`` voxels apart.

    Returns
    -------
    np.ndarray
        `(nz + 2m, ny + 2m, nx + 2m)` bool support mask, ``m = margin_vox``.
    """
    density_zyx = np.asarray(density_zyx)
    if density_zyx.ndim != 3 or density_zyx.size == 0:
        raise ValueError(f"density_zyx must be a non-empty 3D array, got shape {density_zyx.shape}")
    peak = float(np.max(density_zyx))
    if not np.all(np.isfinite(density_zyx)) or peak <= 0:
        raise ValueError(f"density_zyx must be finite with a positive maximum, got maximum {peak}")
    if not 0 < threshold_fraction < 1:
        raise ValueError(f"threshold_fraction must be in (0, 1), got {threshold_fraction!r}")
    if isinstance(margin_vox, bool) or not isinstance(margin_vox, int | np.integer) or margin_vox < 0:
        raise ValueError(f"margin_vox must be a non-negative integer, got {margin_vox!r}")
    support = np.pad(density_zyx > threshold_fraction * peak, int(margin_vox))
    if margin_vox == 0:
        return support
    return ndimage.distance_transform_edt(~support) <= margin_vox


def place_particles(
    slab_shape_zyx: Sequence[int],
    class_masks: Sequence[np.ndarray],
    n_target: int,
    target_class: int,
    crowding_fraction: float,
    rng: np.random.Generator,
    *,
    target_box: int | None = None,
    max_attempts: int = MAX_PLACEMENT_ATTEMPTS,
    rotated_support_level: float = ROTATED_SUPPORT_LEVEL,
) -> Placements:
    """Place target particles, then crowders, at uniform orientations and non-overlapping positions.

    Each particle gets a uniformly random rotation (Haar measure on SO(3)) and a centre drawn uniformly
    at random, by rejection, among the positions where its rotated support mask lies fully inside the
    slab and overlaps no support placed before. The orientation is drawn once per particle and never
    re-drawn, so crowding cannot bias orientations; to make every orientation fit, each class's
    circumscribed sphere (plus rotation slack) must fit in the slab.

    Crowding is a volume fraction: crowder classes are drawn uniformly among the classes other than
    ``target_class``, and crowders are added while the summed voxel count of their (unrotated) support
    masks stays at or below ``crowding_fraction × slab volume``; the first draw that would exceed it
    ends the list. Targets do not count towards it.

    Parameters
    ----------
    slab_shape_zyx
        `(3,)` slab shape in voxels; ``nz`` is the ice thickness.
    class_masks
        One bool support mask per class, any `(dz, dy, dx)`, reference centre at index ``shape // 2``
        (e.g. from :func:`density_to_support_mask`).
    n_target
        Number of particles of ``target_class``, ``>= 0``.
    target_class
        Index into ``class_masks`` of the class to generate subtomograms of.
    crowding_fraction
        Fraction of the slab volume for crowders' support masks, in ``[0, 1)``.
    rng
        Source of randomness; the same generator state gives the same placements.
    target_box
        If given, targets are also kept where a ``target_box``³ extraction box around their nearest
        voxel (with one voxel to spare) lies inside the slab.
    max_attempts
        Positions tried per particle before giving up.
    rotated_support_level
        A voxel of a rotated mask is occupied where linear interpolation of the 0/1 mask exceeds this, in
        (0, 1). The default 0.01 grows every mask by about a voxel (conservative: supports never touch);
        0.5 keeps its size, so that masks of the particles' *cores* (e.g. the contour at
        :data:`cryoengine.physics.density.MASS_CONTOUR_FRACTION` without margin) may touch but not overlap,
        which lets crowding reach the 20-30 % of cytoplasm.

    Returns
    -------
    Placements
        Targets first (``class_index == target_class``), then crowders.

    Raises
    ------
    ValueError
        On invalid input, on a class or ``target_box`` that does not fit the slab, and when a particle
        finds no free position in ``max_attempts`` tries (the message says how many were placed of how
        many asked).
    """
    slab_shape = _check_slab_shape(slab_shape_zyx)
    slab_text = str(tuple(slab_shape.tolist()))
    masks = [np.asarray(mask) for mask in class_masks]
    if not masks:
        raise ValueError("class_masks is empty")
    for index, mask in enumerate(masks):
        if mask.ndim != 3 or mask.dtype != np.bool_ or not mask.any():
            raise ValueError(
                f"class_masks[{index}] must be a 3D bool array with a True voxel, "
                f"got {mask.dtype} {mask.shape}"
            )
    if isinstance(n_target, bool) or not isinstance(n_target, int | np.integer) or n_target < 0:
        raise ValueError(f"n_target must be a non-negative integer, got {n_target!r}")
    if isinstance(target_class, bool) or not isinstance(target_class, int | np.integer):
        raise ValueError(f"target_class must be an integer, got {target_class!r}")
    if not 0 <= target_class < len(masks):
        raise ValueError(f"target_class {target_class} is not in [0, {len(masks)})")
    if not 0 <= crowding_fraction < 1:
        raise ValueError(f"crowding_fraction must be in [0, 1), got {crowding_fraction!r}")
    crowder_classes = [k for k in range(len(masks)) if k != target_class]
    if crowding_fraction > 0 and not crowder_classes:
        raise ValueError(f"crowding_fraction is {crowding_fraction} but there is no class besides the target")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int | np.integer) or max_attempts < 1:
        raise ValueError(f"max_attempts must be a positive integer, got {max_attempts!r}")
    if not 0 < rotated_support_level < 1:
        raise ValueError(f"rotated_support_level must be in (0, 1), got {rotated_support_level!r}")

    target_range = (np.zeros(3, np.int64), slab_shape - 1)
    if target_box is not None:
        if isinstance(target_box, bool) or not isinstance(target_box, int | np.integer) or target_box < 1:
            raise ValueError(f"target_box must be a positive integer, got {target_box!r}")
        if np.any(target_box + 2 > slab_shape):
            raise ValueError(
                f"target_box {target_box} (+2 voxels of slack) does not fit the slab {slab_text}"
            )
        half = target_box // 2
        target_range = (np.full(3, half + 1), slab_shape - target_box + half - 1)

    budget_vox = crowding_fraction * float(np.prod(slab_shape))
    volumes_vox = [int(mask.sum()) for mask in masks]
    crowders: list[int] = []
    total_vox = 0
    while crowding_fraction > 0:
        k = crowder_classes[int(rng.integers(len(crowder_classes)))]
        if total_vox + volumes_vox[k] > budget_vox:
            break
        crowders.append(k)
        total_vox += volumes_vox[k]

    supports = {k: _support_cube(masks[k]) for k in set(crowders) | ({target_class} if n_target else set())}
    for k, cube in supports.items():
        if np.any(cube.shape[0] > slab_shape):
            raise ValueError(
                f"class {k} does not fit the slab {slab_text} in every orientation: its support "
                f"needs {cube.shape[0]} voxels along each axis (circumscribed sphere plus rotation slack)"
            )
    occupancy = np.zeros(tuple(slab_shape.tolist()), dtype=bool)
    plan = [(target_class, "target")] * int(n_target) + [(k, "crowder") for k in crowders]
    counts = {"target": int(n_target), "crowder": len(crowders)}
    placed = {"target": 0, "crowder": 0}
    classes, centres, rotations = [], [], []
    for k, role in plan:
        rotation = random_rotations(1, rng)[0]
        subvoxel_zyx = rng.uniform(-0.5, 0.5, size=3)
        anchor = _find_free_anchor(
            occupancy,
            supports[k],
            rotation,
            subvoxel_zyx,
            target_range if role == "target" else (np.zeros(3, np.int64), slab_shape - 1),
            rng,
            max_attempts,
            rotated_support_level,
        )
        if anchor is None:
            raise ValueError(
                f"placed {placed[role]} of {counts[role]} {role} particles (class {k}) in slab "
                f"{slab_text}: no free position in {max_attempts} attempts; {placed['target']} "
                f"targets and {placed['crowder']} crowders were placed in all "
                f"(n_target={n_target}, crowding_fraction={crowding_fraction})"
            )
        placed[role] += 1
        classes.append(k)
        centres.append(anchor + subvoxel_zyx)
        rotations.append(rotation)
    return Placements(
        class_index=np.array(classes, dtype=np.int64),
        centre_zyx_vox=np.array(centres, dtype=np.float64).reshape(-1, 3),
        rotation=np.array(rotations, dtype=np.float64).reshape(-1, 3, 3),
    )


def render_sample(
    slab_shape_zyx: Sequence[int], class_densities: Sequence[np.ndarray], placements: Placements
) -> np.ndarray:
    """Sum every placed particle's rotated density into the slab.

    Each particle is its reference's cubic B-spline (zero outside the reference box, the model of
    :func:`~.resampling.rotate_volume`) rotated by ``R`` about the reference centre, which lands at
    ``centre_zyx_vox``, and sampled at every slab voxel; whatever falls outside the slab is dropped. The
    spline of each class is prefiltered once (:class:`~.resampling.SplineVolume`), and values below
    1e-7 of the reference's peak, where the spline rings out beyond the box, are skipped.

    Parameters
    ----------
    slab_shape_zyx
        `(3,)` slab shape in voxels.
    class_densities
        One `(dz, dy, dx)` reference density per class, centre at index ``shape // 2``.
    placements
        Particles to render; ``class_index`` indexes ``class_densities``.

    Returns
    -------
    np.ndarray
        `(nz, ny, nx)` float32 density of the sample.
    """
    slab_shape = _check_slab_shape(slab_shape_zyx)
    densities = [np.asarray(density) for density in class_densities]
    for index, density in enumerate(densities):
        if density.ndim != 3 or density.size == 0 or not np.all(np.isfinite(density)):
            raise ValueError(
                f"class_densities[{index}] must be a finite, non-empty 3D array, got {density.shape}"
            )
    if not isinstance(placements, Placements):
        raise ValueError(f"placements must be a Placements, got {type(placements).__name__}")
    if len(placements) and placements.class_index.max() >= len(densities):
        raise ValueError(
            f"placements use class {placements.class_index.max()} but only {len(densities)} "
            "densities were given"
        )

    slab = np.zeros(tuple(slab_shape.tolist()), dtype=np.float32)
    # Class by class, so that one class's spline model is in memory at a time.
    for k in np.unique(placements.class_index):
        spline = SplineVolume(densities[k])
        for i in np.flatnonzero(placements.class_index == k):
            spline.add_rotated(slab, placements.centre_zyx_vox[i], placements.rotation[i])
    return slab


def render_label_map(
    slab_shape_zyx: Sequence[int], class_masks: Sequence[np.ndarray], placements: Placements
) -> np.ndarray:
    """Label each slab voxel with the class of the particle whose rotated support covers it.

    Each particle's support (its class's mask, e.g. from :func:`density_to_support_mask`) is rotated and
    shifted as in placement (linear interpolation of the 0/1 mask, occupied above one half) and written
    at its centre; what falls outside the slab is dropped. Where supports overlap, the later particle
    wins (placement keeps supports apart, so only margins of different masks can).

    Parameters
    ----------
    slab_shape_zyx
        `(3,)` slab shape in voxels.
    class_masks
        One bool mask per class, centre at index ``shape // 2``.
    placements
        The particles; ``class_index`` indexes ``class_masks``.

    Returns
    -------
    np.ndarray
        `(nz, ny, nx)` int16 labels: 0 outside every support, ``1 + class_index`` inside.
    """
    slab_shape = _check_slab_shape(slab_shape_zyx)
    if not isinstance(placements, Placements):
        raise ValueError(f"placements must be a Placements, got {type(placements).__name__}")
    if len(placements) and placements.class_index.max() >= len(class_masks):
        raise ValueError(
            f"placements use class {placements.class_index.max()} but only {len(class_masks)} masks "
            "were given"
        )
    labels = np.zeros(tuple(slab_shape.tolist()), dtype=np.int16)
    cubes: dict[int, np.ndarray] = {}
    for k, centre, rotation in zip(
        placements.class_index, placements.centre_zyx_vox, placements.rotation, strict=True
    ):
        cube = cubes.setdefault(int(k), _support_cube(np.asarray(class_masks[k], dtype=bool)))
        anchor = np.floor(centre + 0.5).astype(np.int64)
        inside = rotate_volume(cube, rotation, centre - anchor, order=1) > 0.5
        start = anchor - cube.shape[0] // 2
        low, high = np.maximum(start, 0), np.minimum(start + cube.shape[0], slab_shape)
        if np.any(high <= low):
            continue
        region = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
        crop = inside[tuple(slice(a - s0, b - s0) for a, b, s0 in zip(low, high, start, strict=True))]
        labels[region][crop] = k + 1
    return labels


def _check_slab_shape(slab_shape_zyx: Sequence[int]) -> np.ndarray:
    """Return the slab shape as an int64 `(3,)` array after checking it holds three positive integers."""
    shape = np.asarray(slab_shape_zyx)
    if shape.shape != (3,) or not np.issubdtype(shape.dtype, np.integer) or np.any(shape < 1):
        raise ValueError(f"slab_shape_zyx must be three positive integers, got {slab_shape_zyx!r}")
    return shape.astype(np.int64)


def _support_cube(mask_zyx: np.ndarray) -> np.ndarray:
    """Put a support mask's True voxels into an odd float32 cube with room for any rotation and shift.

    The half-width is the circumscribed radius plus two voxels: up to 0.87 for the sub-voxel shift and
    one for the linear-interpolation footprint of the conservative rotated mask.
    """
    offsets = np.argwhere(mask_zyx) - np.array(mask_zyx.shape) // 2
    half = math.ceil(float(np.linalg.norm(offsets, axis=1).max())) + 2
    cube = np.zeros((2 * half + 1,) * 3, dtype=np.float32)
    cube[tuple((offsets + half).T)] = 1.0
    return cube


def _find_free_anchor(
    occupancy: np.ndarray,
    support_cube: np.ndarray,
    rotation: np.ndarray,
    subvoxel_zyx: np.ndarray,
    anchor_range: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
    max_attempts: int,
    level: float = ROTATED_SUPPORT_LEVEL,
) -> np.ndarray | None:
    """Find a voxel where the rotated, sub-voxel-shifted support fits inside and free; mark it occupied.

    Returns the anchor voxel (the reference centre lies at ``anchor + subvoxel_zyx``), or None when
    ``max_attempts`` uniform draws over the admissible anchors all collide.
    """
    rotated = rotate_volume(support_cube, rotation, subvoxel_zyx, order=1) > level
    half = support_cube.shape[0] // 2
    nonzero = np.argwhere(rotated)
    first, last = nonzero.min(axis=0), nonzero.max(axis=0)
    footprint = rotated[tuple(slice(a, b + 1) for a, b in zip(first, last, strict=True))]
    lowest = np.maximum(anchor_range[0], half - first)
    highest = np.minimum(anchor_range[1], np.array(occupancy.shape) - 1 - (last - half))
    if np.any(highest < lowest):
        return None
    attempts = 0
    while attempts < max_attempts:
        batch = min(_ANCHOR_BATCH, max_attempts - attempts)
        for anchor in rng.integers(lowest, highest + 1, size=(batch, 3)):
            start = anchor + first - half
            region = tuple(slice(s, s + n) for s, n in zip(start, footprint.shape, strict=True))
            if not np.any(occupancy[region] & footprint):
                occupancy[region] |= footprint
                return anchor
        attempts += batch
    return None


def isolated_placements(
    class_index: np.ndarray, centre_zyx_vox: np.ndarray, rotation: np.ndarray, cell: int
) -> tuple[tuple[int, int, int], Placements]:
    """Lay particles out one per cubic cell, stacked along the tilt axis y, to image each one alone.

    Slices perpendicular to the tilt axis are imaged independently, and the CTF spreads a particle by a few
    voxels only, so each particle of the returned volume images as if it were alone. Each keeps its
    rotation and its sub-voxel offset, so a box cut at its new centre has the same ``shift``.

    Parameters
    ----------
    class_index
        `(M,)` class of each particle.
    centre_zyx_vox
        `(M, 3)` original centres (only their sub-voxel part is kept).
    rotation
        `(M, 3, 3)` rotations.
    cell
        Cell edge in voxels (e.g. twice the box).

    Returns
    -------
    shape_zyx : tuple of int
        ``(cell, M · cell, cell)`` volume shape.
    placements : Placements
        The particles at the centres of their cells.
    """
    if isinstance(cell, bool) or not isinstance(cell, int | np.integer) or cell < 2:
        raise ValueError(f"cell must be an integer >= 2, got {cell!r}")
    centres = np.asarray(centre_zyx_vox, dtype=np.float64)
    m = len(centres)
    if m < 1:
        raise ValueError("isolated_placements needs at least one particle")
    sub_voxel = centres - np.floor(centres + 0.5)
    cell_centres = np.stack(
        [np.full(m, cell // 2), np.arange(m) * cell + cell // 2, np.full(m, cell // 2)], 1
    )
    placements = Placements(np.asarray(class_index), cell_centres + sub_voxel, rotation)
    return (int(cell), int(m * cell), int(cell)), placements
