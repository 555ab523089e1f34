"""Finding a PDB entry: the cache, then local mirrors, then RCSB (the only network code of cryoengine).

Every entry that reaches the cache is a gzipped mmCIF read back and checked to hold atoms
(:func:`cryoengine.structure.atoms.read_atoms` reads it).
"""

from __future__ import annotations

import functools
import gzip
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryoengine.formats.atomic_write import atomic_path
from cryoengine.identifiers import PDB_ID_PATTERN
from cryoengine.structure.atoms import STRUCTURE_SUFFIXES, StructureError, _read_structure

if TYPE_CHECKING:
    import gemmi

__all__ = ["fetch_pdb_entry", "find_pdb_entry"]


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
    if not re.fullmatch(PDB_ID_PATTERN, pdb_id):
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
