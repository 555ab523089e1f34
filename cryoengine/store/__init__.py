"""The subtomogram dataset ``dataset.zarr`` (DESIGN §4): the only package that imports zarr."""

from cryoengine.store.reader import (
    FORMAT,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    Block,
    ChecksumError,
    ClassNotFoundError,
    Dataset,
    DatasetFormatError,
    DatasetNotFoundError,
    InspectionReport,
    Item,
    MissingChunkError,
    inspect_dataset,
    open_dataset,
    write_class_group,
    write_manifest,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "Block",
    "ChecksumError",
    "ClassNotFoundError",
    "Dataset",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "InspectionReport",
    "Item",
    "MissingChunkError",
    "inspect_dataset",
    "open_dataset",
    "write_class_group",
    "write_manifest",
]
