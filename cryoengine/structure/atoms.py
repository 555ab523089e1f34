"""Atomic models: read PDB/mmCIF files and reduce them to atoms (finding an entry: :mod:`.fetch`).

The result of every structure source is an :class:`Atoms` value object (coordinates in Å, ``(z, y, x)``
order, atomic numbers, B-factors), which is all the density calculation needs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

__all__ = [
    "Atoms",
    "StructureError",
    "read_atoms",
]

STRUCTURE_SUFFIXES = (".cif", ".mmcif", ".pdb", ".ent")


class StructureError(ValueError):
    """A structure that cannot be found or read; the message is one line naming the input."""


@dataclass(frozen=True)
class Atoms:
    """Atoms of a molecule, ready for the density calculation.

    Attributes
    ----------
    coords_zyx_A
        `(N, 3)` float64 positions in Å, columns ``(z, y, x)``.
    atomic_number
        `(N,)` int atomic numbers (hydrogens and waters already removed).
    b_iso_A2
        `(N,)` float isotropic B-factors in Å² (0 where the source has none).
    occupancy
        `(N,)` float occupancies in [0, 1].
    """

    coords_zyx_A: np.ndarray
    atomic_number: np.ndarray
    b_iso_A2: np.ndarray
    occupancy: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.atomic_number)
        if self.coords_zyx_A.shape != (n, 3):
            raise ValueError(f"coords_zyx_A has shape {self.coords_zyx_A.shape}, expected ({n}, 3)")
        if self.b_iso_A2.shape != (n,) or self.occupancy.shape != (n,):
            raise ValueError("b_iso_A2 and occupancy must have one value per atom")
        if n == 0:
            raise ValueError("a molecule needs at least one atom")

    def __len__(self) -> int:
        return len(self.atomic_number)


def _read_structure(path: Path) -> gemmi.Structure:
    """Read any PDB/mmCIF file (gzipped or not, format detected from the content)."""
    if not path.is_file():
        raise StructureError(f"structure file {path} does not exist")
    if path.stat().st_size == 0:
        raise StructureError(f"structure file {path} is empty")
    try:
        structure = gemmi.read_structure(str(path), format=gemmi.CoorFormat.Detect)
    except (RuntimeError, ValueError, OSError, EOFError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StructureError(f"cannot read structure file {path}: {reason}") from None
    if len(structure) == 0 or structure[0].count_atom_sites() == 0:
        raise StructureError(f"structure file {path} holds no atoms")
    return structure


# --- reading atoms -------------------------------------------------------------------------------------


def read_atoms(
    path: str | os.PathLike[str], assembly: str | None = "1", chains: Sequence[str] | None = None
) -> Atoms:
    """Read a structure file into :class:`Atoms`: first model, assembly expanded, chains selected.

    Waters and hydrogens (and deuteriums) are dropped (waters after the assembly is built, since assembly
    records name their subchains); alternative conformations keep the first one.

    Parameters
    ----------
    path
        PDB or mmCIF file, optionally gzipped.
    assembly
        Name of the biological assembly to build (``"1"`` by default). ``None`` keeps the asymmetric
        unit. A file without assembly records keeps its asymmetric unit for ``"1"``; any other missing
        name is an error.
    chains
        If given, keep only these chain names (after expansion, copies are named ``A``, ``A2``, ...).

    Returns
    -------
    Atoms

    Raises
    ------
    StructureError
        Unreadable or empty file, unknown assembly or chain, or a file with no polymer atoms.
    """
    path = Path(path)
    structure = _read_structure(path)
    structure.remove_alternative_conformations()
    structure.remove_hydrogens()
    model = structure[0]
    if assembly is not None and structure.assemblies:
        names = [a.name for a in structure.assemblies]
        if assembly not in names:
            raise StructureError(f"{path}: no assembly {assembly!r}; available: {', '.join(names)}")
        picked = structure.assemblies[names.index(assembly)]
        try:
            model = gemmi.make_assembly(picked, model, gemmi.HowToNameCopiedChain.AddNumber)
        except RuntimeError as error:
            raise StructureError(f"{path}: cannot build assembly {assembly!r}: {error}") from None
    elif assembly not in (None, "1"):
        raise StructureError(f"{path}: no assembly {assembly!r}; the file has no assembly records")
    if chains is not None:
        present = [chain.name for chain in model]
        missing = sorted(set(chains) - set(present))
        if missing:
            raise StructureError(f"{path}: no chain(s) {', '.join(missing)}; available: {', '.join(present)}")
    return _model_atoms(model, path, None if chains is None else set(chains))


def _model_atoms(model: gemmi.Model, path: Path, keep_chains: set[str] | None) -> Atoms:
    coords, numbers, b_iso, occupancy = [], [], [], []
    polymer_atoms = 0
    for chain in model:
        if keep_chains is not None and chain.name not in keep_chains:
            continue
        for residue in chain:
            if residue.is_water():
                continue
            info = gemmi.find_tabulated_residue(residue.name)
            is_polymer = info is not None and (info.is_amino_acid() or info.is_nucleic_acid())
            for atom in residue:
                if atom.element.is_hydrogen:
                    continue
                coords.append((atom.pos.z, atom.pos.y, atom.pos.x))
                numbers.append(atom.element.atomic_number)
                b_iso.append(atom.b_iso)
                occupancy.append(atom.occ)
                polymer_atoms += is_polymer
    if polymer_atoms == 0:
        raise StructureError(f"{path}: no protein or nucleic-acid atoms (only ligands, ions or nothing)")
    numbers_arr = np.asarray(numbers, dtype=np.int32)
    if np.any(numbers_arr <= 0):
        raise StructureError(f"{path}: atoms with unknown element")
    return Atoms(
        coords_zyx_A=np.asarray(coords, dtype=np.float64),
        atomic_number=numbers_arr,
        b_iso_A2=np.asarray(b_iso, dtype=np.float64),
        occupancy=np.asarray(occupancy, dtype=np.float64),
    )
