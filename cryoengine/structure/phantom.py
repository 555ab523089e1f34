"""Procedural pseudo-atomic assemblies (rings, helices, cages, rods, blobs) for offline demos and tests.

Each assembly is made of identical subunits filled with pseudo-atoms at protein density and composition.
A subunit carries an off-axis lobe that breaks mirror symmetry: helices, cages and blobs are clearly chiral;
rings and rods keep their near-symmetry (Cn, stacked discs), as their real counterparts do.
"""

from __future__ import annotations

import numpy as np

from cryoengine.identifiers import PHANTOM_SHAPES, PhantomShape
from cryoengine.structure.atoms import Atoms

__all__ = ["PhantomShape", "phantom_atoms"]

#: Non-hydrogen atoms per Å³ of protein (1.35 g/cm³, ~15 Da per heavy atom with its hydrogens).
PROTEIN_ATOMS_PER_A3 = 0.054
#: Heavy-atom composition of an average protein: C, N, O, S by number.
_ELEMENTS = np.array([6, 7, 8, 16])
_FRACTIONS = np.array([0.63, 0.17, 0.19, 0.01])
_B_ISO_A2 = 30.0


def _rotation_about_z(angle_rad: float) -> np.ndarray:
    """`(3, 3)` rotation of ``(z, y, x)`` coordinates about the z axis."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _frame_towards(direction_zyx: np.ndarray) -> np.ndarray:
    """`(3, 3)` rotation whose first column (local z) points along ``direction_zyx``."""
    z = direction_zyx / np.linalg.norm(direction_zyx)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
    y = np.cross(z, helper)
    y /= np.linalg.norm(y)
    x = np.cross(z, y)
    return np.stack([z, y, x], axis=1)


def _subunit_points(semi_axes_A: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform pseudo-atom positions `(M, 3)` in an ellipsoid plus a lobe on its +x, +y side (Å)."""
    lobe_centre = np.array([0.3, 0.6, 0.8]) * semi_axes_A
    lobe_radius = 0.45 * float(semi_axes_A.min())
    volume_A3 = 4 / 3 * np.pi * (np.prod(semi_axes_A) + lobe_radius**3)
    n_atoms = max(1, int(round(volume_A3 * PROTEIN_ATOMS_PER_A3)))
    extent = np.maximum(semi_axes_A, np.abs(lobe_centre) + lobe_radius)
    points: list[np.ndarray] = []
    count = 0
    while count < n_atoms:
        trial = rng.uniform(-extent, extent, size=(2 * n_atoms, 3))
        inside = (np.sum((trial / semi_axes_A) ** 2, axis=1) <= 1) | (
            np.sum((trial - lobe_centre) ** 2, axis=1) <= lobe_radius**2
        )
        points.append(trial[inside])
        count += int(inside.sum())
    return np.concatenate(points)[:n_atoms]


def _placements(
    shape: PhantomShape, diameter_A: float, subunits: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subunit semi-axes `(3,)` and poses: rotations `(n, 3, 3)` and centres `(n, 3)` in Å, (z, y, x)."""
    radius_A = diameter_A / 2
    n = subunits
    sub: np.ndarray
    angles: np.ndarray
    if shape == "ring":
        sub = radius_A * np.array([0.45, 0.9 * np.sin(np.pi / max(n, 2)), 0.3])
        angles = 2 * np.pi * np.arange(n) / n
        rotations = np.stack([_rotation_about_z(a) for a in angles])
        centres = np.stack(
            [[0.0, (radius_A - sub[2]) * np.sin(a), (radius_A - sub[2]) * np.cos(a)] for a in angles]
        )
    elif shape == "helix":
        twist_rad, rise_A = 2 * np.pi / 5.3, diameter_A / max(n, 1)
        sub = np.array([0.55 * rise_A, 0.2 * radius_A, 0.25 * radius_A])
        angles = twist_rad * np.arange(n)
        rotations = np.stack([_rotation_about_z(a) for a in angles])
        z = rise_A * (np.arange(n) - (n - 1) / 2)
        r = 0.55 * radius_A
        centres = np.stack([z, r * np.sin(angles), r * np.cos(angles)], axis=1)
    elif shape == "cage":
        k = np.arange(n) + 0.5
        polar = np.arccos(1 - 2 * k / n)
        azimuth = np.pi * (1 + 5**0.5) * k
        directions = np.stack(
            [np.cos(polar), np.sin(polar) * np.sin(azimuth), np.sin(polar) * np.cos(azimuth)], 1
        )
        patch = radius_A * np.sqrt(4 / max(n, 1))
        sub = np.array([0.12 * radius_A, 0.45 * patch, 0.45 * patch])
        rotations = np.stack([_frame_towards(d) for d in directions])
        centres = directions * (radius_A - sub[0])
    elif shape == "rod":
        thickness_A = diameter_A / max(n, 1)
        sub = np.array([0.45 * thickness_A, 0.22 * diameter_A, 0.22 * diameter_A])
        rotations = np.stack([_rotation_about_z(2 * np.pi * i / 7) for i in range(n)])
        centres = np.stack([[thickness_A * (i - (n - 1) / 2), 0.0, 0.0] for i in range(n)])
    elif shape == "blob":
        sub = radius_A * np.array([0.35, 0.28, 0.22])
        rotations = np.stack([_frame_towards(rng.normal(size=3)) for _ in range(n)])
        centres = rng.normal(size=(n, 3))
        centres *= (
            (radius_A - sub.max())
            * rng.uniform(0, 1, (n, 1)) ** (1 / 3)
            / np.linalg.norm(centres, axis=1)[:, None]
        )
    else:
        raise ValueError(f"unknown phantom shape {shape!r}; choose one of {', '.join(PHANTOM_SHAPES)}")
    return sub, rotations, centres


def phantom_atoms(shape: PhantomShape, diameter_A: float = 180.0, subunits: int = 7, seed: int = 0) -> Atoms:
    """Build a seeded pseudo-atomic assembly.

    Parameters
    ----------
    shape
        ``"ring"`` (Cn ring about z), ``"helix"`` (helical segment along z, 5.3 units per turn),
        ``"cage"`` (hollow shell of subunits on a Fibonacci sphere), ``"rod"`` (stack of discs along z),
        ``"blob"`` (irregular cluster of subunits).
    diameter_A
        Overall size (Å): ring/cage/blob diameter, helix/rod length.
    subunits
        Number of subunits.
    seed
        Seed of the pseudo-atom positions and of the blob layout; same seed → same atoms.

    Returns
    -------
    Atoms
        Pseudo-atoms with protein composition (C, N, O, S) and B = 30 Å², centred near the origin.
    """
    if diameter_A <= 0:
        raise ValueError(f"diameter_A must be positive, got {diameter_A}")
    if subunits < 1:
        raise ValueError(f"subunits must be at least 1, got {subunits}")
    rng = np.random.default_rng(seed)
    semi_axes_A, rotations, centres = _placements(shape, diameter_A, subunits, rng)
    local = _subunit_points(semi_axes_A, rng)
    poses = zip(rotations, centres, strict=True)
    coords = np.concatenate([local @ rotation.T + centre for rotation, centre in poses])
    numbers = rng.choice(_ELEMENTS, size=len(coords), p=_FRACTIONS).astype(np.int32)
    return Atoms(
        coords_zyx_A=coords,
        atomic_number=numbers,
        b_iso_A2=np.full(len(coords), _B_ISO_A2),
        occupancy=np.ones(len(coords)),
    )
