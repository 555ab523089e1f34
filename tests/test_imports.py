"""Each heavy backend is imported only in the modules DESIGN.md allows; cryoengine never needs torch."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

# backend → the modules allowed to import it (gemmi: structure reading, the cached mmCIF, the density).
ALLOWED = {
    "astra": {"cryoengine/physics/projector.py"},
    "cupy": {"cryoengine/physics/array_module.py"},
    "zarr": {
        "cryoengine/store/reader.py",
        "cryoengine/store/writer.py",
        "cryoengine/formats/copick_layout.py",
    },  # the store, and users' copick OME-Zarr tomograms
    "e3nn": {"aptvit/models/steerable.py"},
    "mrcfile": {"cryoengine/formats/mrc.py"},
    "gemmi": {
        "cryoengine/structure/atoms.py",
        "cryoengine/structure/fetch.py",
        "cryoengine/physics/density.py",
    },
}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("backend", sorted(ALLOWED))
def test_heavy_backend_imported_only_where_allowed(backend):
    importers = {
        str(path.relative_to(REPO_ROOT))
        for package in ("cryoengine", "aptvit")
        for path in (REPO_ROOT / package).rglob("*.py")
        if backend in set(_imports(path))
    }
    assert importers <= ALLOWED[backend], importers - ALLOWED[backend]


def test_cryoengine_never_imports_torch_or_aptvit():
    code = (
        "import sys, importlib, pkgutil, cryoengine\n"
        "for m in pkgutil.iter_modules(cryoengine.__path__):\n"
        "    if m.name != '__main__':\n"
        "        importlib.import_module('cryoengine.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('torch', 'aptvit', 'lightning'))\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
