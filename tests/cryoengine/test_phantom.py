"""Procedural phantoms: seeded, protein-like, and chiral (their orientation is identifiable)."""

from __future__ import annotations

import numpy as np
import pytest

from cryoengine.identifiers import PHANTOM_SHAPES
from cryoengine.physics.correlation import best_translation_correlation
from cryoengine.physics.density import atoms_to_density
from cryoengine.physics.resampling import rotate_volume
from cryoengine.physics.rotation import octahedral_rotations
from cryoengine.structure.phantom import PROTEIN_ATOMS_PER_A3, phantom_atoms

SHAPES = list(PHANTOM_SHAPES)


@pytest.mark.parametrize("shape", SHAPES)
def test_seeded_and_protein_like(shape):
    a = phantom_atoms(shape, 160, 6, seed=11)
    b = phantom_atoms(shape, 160, 6, seed=11)
    c = phantom_atoms(shape, 160, 6, seed=12)
    assert np.array_equal(a.coords_zyx_A, b.coords_zyx_A) and np.array_equal(a.atomic_number, b.atomic_number)
    assert not np.array_equal(a.coords_zyx_A, c.coords_zyx_A)
    assert set(np.unique(a.atomic_number)) <= {6, 7, 8, 16}
    assert np.mean(a.atomic_number == 6) == pytest.approx(0.63, abs=0.03)
    # size: everything within the stated diameter (plus a subunit's lobe)
    assert np.abs(a.coords_zyx_A - a.coords_zyx_A.mean(0)).max() < 0.75 * 160


def test_atoms_fill_subunits_at_protein_density():
    atoms = phantom_atoms("ring", 200, 8, seed=0)
    density = atoms_to_density(atoms, 5.0, 64)
    occupied_voxels = np.count_nonzero(density > 0.15 * density.max())
    implied = len(atoms) / (occupied_voxels * 5.0**3)
    assert implied == pytest.approx(PROTEIN_ATOMS_PER_A3, rel=0.5)


def _best_over_octahedral(moving, fixed):
    """Best correlation of ``moving`` with ``fixed`` over the 24 octahedral rotations and translations."""
    return [
        best_translation_correlation(rotate_volume(moving, r, order=1), fixed)[0]
        for r in octahedral_rotations()
    ]


@pytest.mark.parametrize("shape", ["helix", "cage", "blob"])
def test_asymmetric_phantoms_are_chiral_and_orientable(shape):
    # No proper rotation (of the 24 exact on the grid) superposes the mirror image, and only the identity
    # superposes the phantom on itself. Rings and rods are near-symmetric by design and are not checked.
    density = atoms_to_density(phantom_atoms(shape, 160, 6, seed=1), 10.0, 32)
    self_scores = _best_over_octahedral(density, density)
    assert self_scores[0] == pytest.approx(1.0, abs=1e-6)  # identity first
    assert max(self_scores[1:]) < 0.9
    assert max(_best_over_octahedral(density[::-1].copy(), density)) < 0.9


def test_bad_parameters():
    with pytest.raises(ValueError, match="unknown phantom shape"):
        phantom_atoms("torus")
    with pytest.raises(ValueError, match="diameter_A must be positive"):
        phantom_atoms("ring", diameter_A=0)
    with pytest.raises(ValueError, match="subunits must be at least 1"):
        phantom_atoms("ring", subunits=0)
