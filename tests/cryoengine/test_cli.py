"""Command line: each subcommand calls its stage; bad input is one clear line and leaves no file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cryoengine.cli import main, spec_from_argument
from cryoengine.formats.mrc import read_volume


def test_density_of_a_phantom(tmp_path):
    out = tmp_path / "ring.mrc"
    assert main(["density", "phantom:ring", "-o", str(out), "--box", "24", "--voxel-size-A", "12"]) == 0
    volume, voxel = read_volume(out)
    assert volume.shape == (24, 24, 24) and voxel == 12.0
    record = json.loads(out.with_name("ring.mrc.json").read_text())
    assert record["config"]["box"] == 24 and record["argv"]


def test_density_of_a_pdb_id_from_a_mirror_and_fetch(tmp_path, shared_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fetch", "1s3x", "-o", "cache", "--mirror", str(shared_data), "--offline"]) == 0
    assert (tmp_path / "cache" / "1S3X.cif.gz").is_file()
    assert (
        main(["density", "1S3X", "-o", "h.mrc", "--mirror", str(shared_data), "--offline", "--box", "16"])
        == 0
    )
    assert read_volume(tmp_path / "h.mrc")[0].shape == (16, 16, 16)


def test_structure_argument_kinds(tmp_path, shared_data):
    assert spec_from_argument("phantom:cage") == {"kind": "phantom", "shape": "cage"}
    assert spec_from_argument("1oel") == {"kind": "pdb", "pdb_id": "1oel"}
    assert spec_from_argument(str(shared_data / "polnet/maps_10A/3qm1.mrc"))["kind"] == "map"
    assert spec_from_argument(str(shared_data / "groel_nma/1OEL.pdb"))["kind"] == "file"
    with pytest.raises(ValueError, match="neither an existing file"):
        spec_from_argument("not-a-thing")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["9ZZZ", "--offline"], "PDB entry 9ZZZ not found"),
        (["phantom:ring", "--box", "8"], "molecule does not fit"),
        (["phantom:ring", "--voxel-size-A", "-3"], "voxel_size_A: Input should be greater than 0"),
        (["phantom:ring", "--resolution-A", "5"], "finer than Nyquist"),
        (["phantom:torus"], "shape"),
        (["EMPTY"], "is empty"),
        (["CORRUPT"], "not a readable MRC"),
        (["LIGANDS"], "no protein or nucleic-acid atoms"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys, argv, message):
    (tmp_path / "empty.pdb").write_bytes(b"")
    (tmp_path / "corrupt.mrc").write_bytes(b"\x01" * 4096)
    (tmp_path / "ligands.pdb").write_text(
        "HETATM    1 ZN    ZN A   1       0.000   0.000   0.000  1.00 20.00          ZN\nEND\n"
    )
    substitutes = {"EMPTY": "empty.pdb", "CORRUPT": "corrupt.mrc", "LIGANDS": "ligands.pdb"}
    argv = [str(tmp_path / substitutes[a]) if a in substitutes else a for a in argv]
    out = tmp_path / "out" / "map.mrc"
    before = set(tmp_path.rglob("*"))
    assert main(["density", *argv, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("cryoengine: error:")
    assert not out.exists()
    assert {p for p in set(tmp_path.rglob("*")) - before if p.is_file()} == set()


def test_module_entry_point_and_schema():
    result = subprocess.run(
        [sys.executable, "-m", "cryoengine", "schema"], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout)["title"] == "EngineConfig"


def test_report_lists_maps_and_fails_clearly_when_empty(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "no results under" in capsys.readouterr().err
    assert main(["density", "phantom:rod", "-o", str(tmp_path / "density" / "rod.mrc"), "--box", "24"]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rod" in out and "phantom:rod" in out
