"""Names shared across layers, each defined once: class ids, PDB ids, phantom shapes.

A leaf module (imports nothing of cryoengine) that the config, the store, the structure fetcher, the
phantoms and the CLI all read.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["CLASS_ID_PATTERN", "PDB_ID_PATTERN", "PHANTOM_SHAPES", "PhantomShape"]

#: A class id: a group name in the store and a file stem in the workflow.
CLASS_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
#: A four-character PDB ID starting with a digit (any case).
PDB_ID_PATTERN = r"^[0-9][A-Za-z0-9]{3}$"

PhantomShape = Literal["ring", "helix", "cage", "rod", "blob"]
#: The procedural phantom shapes of :mod:`cryoengine.structure.phantom`, in documentation order.
PHANTOM_SHAPES: tuple[str, ...] = get_args(PhantomShape)
