"""Atomic models: find a PDB entry (cache, mirrors, RCSB), read PDB/mmCIF files, and reduce them to atoms.

The result of every structure source is an :class:`Atoms` value object (coordinates in Å, ``(z, y, x)``
order, atomic numbers, B-factors), which is all the density calculation needs.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from cryoengine.atomic_file import atomic_path

__all__ = [
    "Atoms",
    "StructureError",
    "fetch_pdb_entry",
    "find_pdb_entry",
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


# --- finding a PDB entry -------------------------------------------------------------------------------


def _entry_names(pdb_id: str) -> set[str]:
    """File names under which mirrors commonly keep an entry (lower case, any compression)."""
    stems = {pdb_id, f"pdb{pdb_id}", f"mmcif_{pdb_id}", f"{pdb_id}-assembly1"}
    return {stem + suffix + gz for stem in stems for suffix in STRUCTURE_SUFFIXES for gz in ("", ".gz")}


@functools.cache
def _mirror_index(mirror: Path) -> dict[str, Path]:
    """Lower-case file name → path, for every structure file below ``mirror`` (first found wins)."""
    index: dict[str, Path] = {}
    for path in sorted(mirror.rglob("*")):
        name = path.name.lower()
        if path.is_file() and any(s in name for s in STRUCTURE_SUFFIXES):
            index.setdefault(name, path)
    return index


def _check_pdb_id(pdb_id: str) -> str:
    if not re.fullmatch(r"[0-9][A-Za-z0-9]{3}", pdb_id):
        raise StructureError(f"{pdb_id!r} is not a PDB ID (four characters, starting with a digit)")
    return pdb_id.upper()


def find_pdb_entry(pdb_id: str, cache_dir: Path, mirrors: Sequence[Path] = ()) -> Path | None:
    """Look for a PDB entry in the cache, then in each mirror; never touches the network.

    Parameters
    ----------
    pdb_id
        Four-character PDB ID (any case).
    cache_dir
        Directory of fetched entries (``<ID>.cif.gz``).
    mirrors
        Read-only directories searched recursively for common file names of the entry.

    Returns
    -------
    Path or None
        The first file found, or None.
    """
    pdb_id = _check_pdb_id(pdb_id)
    cached = Path(cache_dir) / f"{pdb_id}.cif.gz"
    if cached.is_file():
        return cached
    names = _entry_names(pdb_id.lower())
    for mirror in map(Path, mirrors):
        if not mirror.is_dir():
            continue
        index = _mirror_index(mirror.resolve())
        for name in sorted(names):
            if name in index:
                return index[name]
    return None


def _download(url: str, dest: Path, timeout_s: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out)


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


def _write_mmcif_gz(structure: gemmi.Structure, dest: Path) -> None:
    structure.setup_entities()
    text = structure.make_mmcif_document().as_string()
    with atomic_path(dest) as tmp, gzip.open(tmp, "wt") as out:
        out.write(text)


def fetch_pdb_entry(
    pdb_id: str,
    cache_dir: Path,
    mirrors: Sequence[Path] = (),
    download: bool = True,
    url_template: str = "https://files.rcsb.org/download/{pdb_id}.cif.gz",
    timeout_s: float = 60.0,
) -> Path:
    """Make sure ``cache_dir/<ID>.cif.gz`` holds the entry, copying from a mirror or downloading it.

    Whatever the source, the cached copy is a gzipped mmCIF that was read back and checked to hold atoms;
    a download that is not a readable structure is discarded.

    Parameters
    ----------
    pdb_id
        Four-character PDB ID.
    cache_dir
        Cache directory (created if missing).
    mirrors
        Read-only directories searched before the network.
    download
        Whether to try RCSB when no local copy exists.
    url_template
        Download URL with a ``{pdb_id}`` placeholder.
    timeout_s
        Network timeout (s).

    Returns
    -------
    Path
        ``cache_dir/<ID>.cif.gz``.

    Raises
    ------
    StructureError
        One line naming the ID and every place looked.
    """
    pdb_id = _check_pdb_id(pdb_id)
    cache_dir = Path(cache_dir)
    cached = cache_dir / f"{pdb_id}.cif.gz"
    found = find_pdb_entry(pdb_id, cache_dir, mirrors)
    if found == cached:
        try:
            _read_structure(cached)  # a truncated download or a damaged disk must not be trusted forever
        except StructureError as error:
            raise StructureError(
                f"the cached entry is corrupt: {error}; delete {cached} to fetch it again"
            ) from None
        return cached
    if found is not None:
        _write_mmcif_gz(_read_structure(found), cached)
        return cached
    looked = [f"cache {cache_dir}"] + [
        f"mirror {m}" + ("" if Path(m).is_dir() else " (absent)") for m in mirrors
    ]
    if not download:
        raise StructureError(
            f"PDB entry {pdb_id} not found: looked in {', '.join(looked)}; download disabled"
        )
    url = url_template.format(pdb_id=pdb_id)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{pdb_id}.download-", dir=cache_dir) as scratch:
        downloaded = Path(scratch) / f"{pdb_id}.cif.gz"
        try:
            _download(url, downloaded, timeout_s)
        except urllib.error.HTTPError as error:
            reason = f"HTTP {error.code}" + (" (no such entry)" if error.code == 404 else "")
            raise StructureError(
                f"PDB entry {pdb_id} not found: looked in {', '.join(looked)}; download {url}: {reason}"
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            cause: object = error.reason if isinstance(error, urllib.error.URLError) else error
            raise StructureError(
                f"PDB entry {pdb_id} not found: looked in {', '.join(looked)}; download {url} failed: {cause}"
            ) from None
        try:
            structure = _read_structure(downloaded)
        except StructureError as error:
            message = f"download of PDB entry {pdb_id} from {url} is not a structure: {error}"
            raise StructureError(message) from None
    _write_mmcif_gz(structure, cached)
    return cached


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
