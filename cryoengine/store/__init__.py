"""The subtomogram dataset ``dataset.zarr`` (DESIGN §4): the only package that imports zarr.

``fields`` is the particle record (one table), ``writer`` writes class groups and the manifest, ``reader``
reads items and blocks (and documents the layout), ``inspection`` summarises and verifies, ``particle_set``
is the ``.npz`` intermediate between the workflow steps, ``observed_set`` the one of an import (a user's
particles, written by :func:`write_observed_dataset`).
"""

from cryoengine.store.fields import (
    FIELDS,
    FORMAT,
    FORMAT_VERSION,
    OBSERVED_FIELDS,
    OBSERVED_FORMAT_VERSION,
    READABLE_VERSIONS,
    Field,
)
from cryoengine.store.inspection import InspectionReport, inspect_dataset
from cryoengine.store.observed_set import ObservedParticles
from cryoengine.store.reader import (
    Block,
    ChecksumError,
    ClassNotFoundError,
    Dataset,
    DatasetFormatError,
    DatasetNotFoundError,
    Item,
    MissingChunkError,
    open_dataset,
)
from cryoengine.store.writer import write_class_group, write_manifest, write_observed_dataset

__all__ = [
    "FIELDS",
    "FORMAT",
    "FORMAT_VERSION",
    "OBSERVED_FIELDS",
    "OBSERVED_FORMAT_VERSION",
    "READABLE_VERSIONS",
    "Block",
    "ChecksumError",
    "ClassNotFoundError",
    "Dataset",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "Field",
    "InspectionReport",
    "Item",
    "MissingChunkError",
    "ObservedParticles",
    "inspect_dataset",
    "open_dataset",
    "write_class_group",
    "write_manifest",
    "write_observed_dataset",
]
