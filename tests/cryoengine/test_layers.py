"""The layers of DESIGN §2, checked by import inspection: physics/ is pure, store/ is the only zarr user.

``physics`` takes arrays and value objects and returns arrays: no module of it may import file, store,
format or config code, directly or through what it imports, nor open or write files itself.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

PHYSICS = sorted(p.stem for p in (REPO_ROOT / "cryoengine" / "physics").glob("*.py") if p.stem != "__init__")
# Modules that read or write files, parse configuration or talk to the network.
FORBIDDEN = (
    "cryoengine.config",
    "cryoengine.stages",
    "cryoengine.cli",
    "cryoengine.report",
    "cryoengine.store",
    "cryoengine.formats",
    "cryoengine.structure.fetch",
    "zarr",
    "mrcfile",
    "starfile",
    "yaml",
    "pydantic",
    "urllib.request",
    "tqdm",
)
# Standard-library modules for files and processes that physics code must not import itself.
FILE_MODULES = {
    "os",
    "shutil",
    "tempfile",
    "pathlib",
    "io",
    "pickle",
    "subprocess",
    "zipfile",
    "gzip",
    "json",
}
# Calls that write files (or print), whatever module they come from.
FILE_CALLS = {"open", "print", "save", "savez", "savetxt", "tofile", "write_volume", "to_csv"}


def _loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    return json.loads(result.stdout)


def test_physics_modules_are_listed():
    assert {"imaging", "rotation", "resampling", "density", "ctf", "tilt", "placement"} <= set(PHYSICS)


@pytest.mark.parametrize("module", PHYSICS)
def test_physics_imports_no_file_or_config_code(module):
    loaded = _loaded_after_import(f"cryoengine.physics.{module}")
    offending = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert offending == [], f"cryoengine.physics.{module} pulls in {offending}"


@pytest.mark.parametrize("module", PHYSICS)
def test_physics_source_opens_and_writes_no_files(module):
    tree = ast.parse((REPO_ROOT / "cryoengine" / "physics" / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint(FILE_MODULES), imported & FILE_MODULES
    calls = {
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
    }
    assert calls.isdisjoint(FILE_CALLS), calls & FILE_CALLS


def test_the_inspection_catches_a_file_import(tmp_path):
    """The check can fail: a module that imports the MRC reader is flagged."""
    (tmp_path / "leaky.py").write_text("import cryoengine.formats.mrc\n")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import leaky; "
        "print('cryoengine.formats.mrc' in sys.modules and 'mrcfile' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "True"


def test_store_imports_no_config_and_cryoengine_imports_light():
    loaded = _loaded_after_import("cryoengine.store")
    assert "cryoengine.config" not in loaded and "pydantic" not in loaded
    light = _loaded_after_import("cryoengine")
    heavy = [m for m in ("zarr", "astra", "gemmi", "pydantic", "scipy", "torch") if m in light]
    assert heavy == []
