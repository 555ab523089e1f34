"""docs/architecture.md lists every module of cryoengine/, once, and nothing else; the public surface."""

from __future__ import annotations

import re

from conftest import REPO_ROOT

import cryoengine

DOC = REPO_ROOT / "docs" / "architecture.md"


def test_architecture_page_lists_every_module_once():
    listed = re.findall(r"^- `(cryoengine/[\w/]+\.py)` — \S", DOC.read_text(), flags=re.MULTILINE)
    on_disk = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "cryoengine").rglob("*.py"))
    assert sorted(listed) == on_disk, {
        "missing from the page": sorted(set(on_disk) - set(listed)),
        "not on disk": sorted(set(listed) - set(on_disk)),
    }
    assert len(listed) == len(set(listed)), "a module is listed twice"


def test_every_package_has_a_section():
    text = DOC.read_text()
    packages = sorted(p.parent.name for p in (REPO_ROOT / "cryoengine").glob("*/__init__.py"))
    assert packages == ["formats", "physics", "store", "structure"]
    for package in packages:
        assert f"`cryoengine/{package}/` — " in text, package


def test_public_surface_resolves_and_matches_all():
    assert set(cryoengine.__all__) == {"__version__", *cryoengine._EXPORTS}
    for name in cryoengine._EXPORTS:
        assert getattr(cryoengine, name).__name__ == name
