"""CryoEngine: physics-based generator of labelled cryo-ET subtomograms.

Atomic model → electron-scattering density → crowded virtual sample → CTF tilt series → tomogram →
subtomograms with ground truth → calibrated multi-SNR noise → sharded Zarr dataset.

The public surface is importable from here (``from cryoengine import open_dataset, atoms_to_density``);
each name is imported from its module on first use, so ``import cryoengine`` stays light. The layers
(``docs/architecture.md``): ``structure`` (where atoms come from), ``physics`` (pure functions),
``store`` (the dataset contract), ``formats`` (files users exchange), and the application modules
``config``, ``stages``, ``cli``, ``report``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("cryoet-foundation")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

# Public name → the module that defines it.
_EXPORTS = {
    "open_dataset": "cryoengine.store",
    "inspect_dataset": "cryoengine.store",
    "Dataset": "cryoengine.store",
    "Item": "cryoengine.store",
    "Block": "cryoengine.store",
    "ParticleSet": "cryoengine.store.particle_set",
    "load_config": "cryoengine.config",
    "validate_config": "cryoengine.config",
    "EngineConfig": "cryoengine.config",
    "ConfigError": "cryoengine.config",
    "Atoms": "cryoengine.structure.atoms",
    "read_atoms": "cryoengine.structure.atoms",
    "fetch_pdb_entry": "cryoengine.structure.fetch",
    "phantom_atoms": "cryoengine.structure.phantom",
    "atoms_to_density": "cryoengine.physics.density",
    "resample_map": "cryoengine.physics.density",
    "scale_map_to_mass": "cryoengine.physics.density",
    "simulate_particles": "cryoengine.physics.imaging",
    "read_volume": "cryoengine.formats.mrc",
    "write_volume": "cryoengine.formats.mrc",
    "export_class": "cryoengine.formats.relion_export",
}

# Listed literally for static analysis; tests/cryoengine/test_architecture.py checks it against _EXPORTS.
__all__ = [
    "__version__",
    "Atoms",
    "Block",
    "ConfigError",
    "Dataset",
    "EngineConfig",
    "Item",
    "ParticleSet",
    "atoms_to_density",
    "export_class",
    "fetch_pdb_entry",
    "inspect_dataset",
    "load_config",
    "open_dataset",
    "phantom_atoms",
    "read_atoms",
    "read_volume",
    "resample_map",
    "scale_map_to_mass",
    "simulate_particles",
    "validate_config",
    "write_volume",
]

if TYPE_CHECKING:
    from cryoengine.config import ConfigError, EngineConfig, load_config, validate_config
    from cryoengine.formats.mrc import read_volume, write_volume
    from cryoengine.formats.relion_export import export_class
    from cryoengine.physics.density import atoms_to_density, resample_map, scale_map_to_mass
    from cryoengine.physics.imaging import simulate_particles
    from cryoengine.store import Block, Dataset, Item, inspect_dataset, open_dataset
    from cryoengine.store.particle_set import ParticleSet
    from cryoengine.structure.atoms import Atoms, read_atoms
    from cryoengine.structure.fetch import fetch_pdb_entry
    from cryoengine.structure.phantom import phantom_atoms


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cryoengine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
