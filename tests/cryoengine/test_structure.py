"""Structure sources: PDB IDs through cache, mirrors and download; files; assemblies, chains; bad input."""

from __future__ import annotations

import gzip
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from cryoengine.structure.atoms import StructureError, read_atoms
from cryoengine.structure.fetch import fetch_pdb_entry, find_pdb_entry


@pytest.fixture
def rcsb(tmp_path, shared_data):
    """A loopback HTTP server standing in for RCSB: 1S3X is served, 9BAD is not a structure, others 404."""
    root = tmp_path / "rcsb"
    root.mkdir()
    with (
        open(shared_data / "polnet" / "pdbs" / "1s3x.pdb", "rb") as src,
        gzip.open(root / "1S3X.cif.gz", "wb") as out,
    ):
        shutil.copyfileobj(src, out)  # gemmi detects the format from the content
    (root / "9BAD.cif.gz").write_bytes(gzip.compress(b"<html>rate limited</html>\n"))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{{pdb_id}}.cif.gz"
    server.shutdown()
    server.server_close()


def test_mirror_lookup_finds_common_file_names(shared_data, tmp_path):
    assert find_pdb_entry("1oel", tmp_path, [shared_data]).name == "1OEL.pdb"
    assert find_pdb_entry("6ZU5", tmp_path, [shared_data]).name == "mmcif_6zu5.cif"
    assert find_pdb_entry("1a28", tmp_path, [shared_data]).name == "1a28.pdb.gz"
    assert find_pdb_entry("1AKE", tmp_path, [shared_data]).name == "pdb1ake.pdb"
    assert find_pdb_entry("9XYZ", tmp_path, [shared_data, tmp_path / "absent"]) is None


def test_fetch_from_mirror_caches_a_checked_mmcif(shared_data, tmp_path):
    cached = fetch_pdb_entry("1OEL", tmp_path / "cache", [shared_data], download=False)
    assert cached == tmp_path / "cache" / "1OEL.cif.gz"
    assert gzip.open(cached, "rt").read(5) == "data_"
    # the cache is consulted first: removing the mirror does not matter any more
    assert fetch_pdb_entry("1OEL", tmp_path / "cache", [], download=False) == cached
    # and the cached mmCIF keeps the assembly records of the original PDB file (7 → 14 chains)
    assert len(read_atoms(cached)) == len(read_atoms(shared_data / "groel_nma" / "1OEL.pdb"))
    assert len(read_atoms(cached)) == 2 * len(read_atoms(cached, assembly=None))


def test_offline_unknown_entry_names_every_place_looked(tmp_path, shared_data):
    with pytest.raises(StructureError) as info:
        fetch_pdb_entry("9XYZ", tmp_path / "cache", [shared_data, tmp_path / "nowhere"], download=False)
    message = str(info.value)
    assert "\n" not in message
    for part in ("9XYZ", str(tmp_path / "cache"), str(shared_data), "nowhere (absent)", "download disabled"):
        assert part in message
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_download_is_checked_and_cached(rcsb, tmp_path):
    cached = fetch_pdb_entry("1s3x", tmp_path / "cache", [], download=True, url_template=rcsb)
    assert cached.name == "1S3X.cif.gz"
    assert len(read_atoms(cached)) == 2967
    assert sorted(p.name for p in cached.parent.iterdir()) == ["1S3X.cif.gz"]  # no temporary left behind


@pytest.mark.parametrize(("pdb_id", "message"), [("9NOT", "HTTP 404"), ("9BAD", "is not a structure")])
def test_failed_download_leaves_nothing(rcsb, tmp_path, pdb_id, message):
    with pytest.raises(StructureError, match=message):
        fetch_pdb_entry(pdb_id, tmp_path / "cache", [], download=True, url_template=rcsb)
    assert list((tmp_path / "cache").iterdir()) == []


def test_unreachable_network_is_a_clear_error(tmp_path):
    with pytest.raises(StructureError, match=r"PDB entry 9XYZ not found.*failed"):
        fetch_pdb_entry("9XYZ", tmp_path, [], url_template="http://127.0.0.1:9/{pdb_id}.cif.gz", timeout_s=5)


def test_not_a_pdb_id():
    with pytest.raises(StructureError, match="is not a PDB ID"):
        find_pdb_entry("ribosome", Path("."), [])


def test_assembly_expansion_and_chain_selection(shared_data):
    path = shared_data / "groel_nma" / "1OEL.pdb"
    asu = read_atoms(path, assembly=None)
    full = read_atoms(path, assembly="1")
    assert len(full) == 2 * len(asu)  # one GroEL ring in the file, two in the assembly
    assert len(asu) == 27078 - 149  # atom sites less the ring's 149 waters
    one_chain = read_atoms(path, assembly=None, chains=["A"])
    assert 0 < len(one_chain) < len(asu) / 5
    with pytest.raises(StructureError, match="no chain"):
        read_atoms(path, chains=["ZZ"])
    with pytest.raises(StructureError, match="no assembly '7'"):
        read_atoms(path, assembly="7")


def test_waters_and_hydrogens_are_dropped(shared_data):
    path = shared_data / "nucleosome_Nacev2019" / "1kx5.pdb"
    text = path.read_text()
    waters = sum(1 for line in text.splitlines() if line.startswith("HETATM") and line[17:20] == "HOH")
    assert waters > 0
    atoms = read_atoms(path)
    atom_lines = sum(1 for line in text.splitlines() if line.startswith(("ATOM", "HETATM")))
    assert len(atoms) <= atom_lines - waters
    assert not np.any(atoms.atomic_number == 1)


def test_gzipped_structure_files_read(shared_data):
    assert len(read_atoms(shared_data / "mdanalysistests" / "1a28.pdb.gz", assembly=None)) > 4000
    assert len(read_atoms(shared_data / "mdanalysistests" / "1BD2.cif.gz")) > 6000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"this is not a structure\n" * 10, "holds no atoms|cannot read"),
        (
            b"HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00 20.00           O\n"
            b"HETATM    2 ZN    ZN A   2       3.000   0.000   0.000  1.00 20.00          ZN\nEND\n",
            "no protein or nucleic-acid atoms",
        ),
    ],
)
def test_bad_structure_files(tmp_path, content, message):
    path = tmp_path / "bad.pdb"
    path.write_bytes(content)
    with pytest.raises(StructureError, match=message):
        read_atoms(path)


def test_truncated_gzip(tmp_path, shared_data):
    data = (shared_data / "mdanalysistests" / "1a28.pdb.gz").read_bytes()
    path = tmp_path / "cut.pdb.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StructureError, match="cut.pdb.gz"):
        read_atoms(path)


def test_a_corrupt_cached_entry_is_not_trusted(shared_data, tmp_path):
    cached = fetch_pdb_entry("1OEL", tmp_path / "cache", [shared_data], download=False)
    cached.write_bytes(cached.read_bytes()[:2000])  # a truncated copy
    with pytest.raises(StructureError, match=r"cached entry is corrupt: .* delete .*1OEL.cif.gz to fetch"):
        fetch_pdb_entry("1OEL", tmp_path / "cache", [shared_data], download=False)
