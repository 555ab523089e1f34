"""Inspecting ``dataset.zarr``: a per-class table (count, shards, SNR, size) and checksum verification."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryoengine.store.fields import FORMAT
from cryoengine.store.reader import ChecksumError, ClassNotFoundError, DatasetFormatError, open_dataset

__all__ = ["InspectionReport", "inspect_dataset"]


@dataclass(frozen=True)
class InspectionReport:
    """What :func:`inspect_dataset` found: a printable table and the classes whose data failed.

    Attributes
    ----------
    table
        Header line, one row per class, total line.
    failures
        Class id → one-line reason, for classes that failed verification (empty when all passed or
        nothing was verified).
    """

    table: str
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no class failed verification."""
        return not self.failures

    def __str__(self) -> str:
        return self.table


def inspect_dataset(path: str | os.PathLike[str], verify: bool = True) -> InspectionReport:
    """Summarise a dataset as a table: per class its name, count, shards, measured SNR, size, checksums.

    Parameters
    ----------
    path
        The dataset directory.
    verify
        Recompute every class's checksums (reads all data) and check the manifest; a dataset without
        a manifest or without classes fails.

    Returns
    -------
    InspectionReport
        ``str(report)`` is the table; ``report.ok`` is False when a class failed verification, with the
        reasons in ``report.failures``.
    """
    dataset = open_dataset(path)
    failures: dict[str, str] = {}
    if verify:
        if not dataset.classes:
            failures["(dataset)"] = f"{dataset.path} holds no class groups"
        if not dataset.attrs.get("classes"):
            failures["(manifest)"] = (
                f"{dataset.path} has no manifest: write_manifest has not run, so it may be incomplete"
            )
        try:
            dataset._verify_manifest()
        except (ClassNotFoundError, DatasetFormatError) as error:
            failures["(manifest)"] = str(error)
    levels = ", ".join(f"{level:g}" for level in dataset.snr_levels)
    quality = "edge-padded" if dataset.observed else "median SNR per level"
    header = ["class", "name", "particles", "shards", quality, "on disk", "checksums"]
    rows = []
    for class_id in dataset.classes:
        attrs = dataset.class_group(class_id).attrs.asdict()
        status, median, shards = "not checked", "?", "?"
        try:
            shards = str(len(dataset.shard_ranges(class_id)))
            small = dataset.per_particle_arrays(class_id)
            if dataset.observed:
                median = str(int(np.count_nonzero(small["edge_padded"])))
            else:
                median = " / ".join(f"{value:.3g}" for value in np.median(small["snr"], axis=0))
            if verify:
                dataset.verify(class_id)
                status = "ok"
        except (ChecksumError, DatasetFormatError) as error:
            failures[class_id] = str(error)
            status = "FAILED"
        rows.append(
            [
                class_id,
                str(attrs.get("name", "")),
                str(dataset.counts[class_id]),
                shards,
                median,
                _format_bytes(_directory_bytes(dataset.path / "classes" / class_id)),
                status,
            ]
        )
    content = "observed particles (no SNR levels)" if dataset.observed else f"SNR levels {levels} (and clean)"
    lines = [
        f"{dataset.path}: {FORMAT} v{dataset.format_version}, {len(dataset.classes)} classes, {len(dataset)} "
        f"subtomograms of {dataset.box}³ voxels at {dataset.voxel_size_A:g} Å, {content}",
        *_format_table(header, rows, right_aligned={2, 3, 5}),
    ]
    if verify:
        lines.append("all checksums ok" if not failures else "FAILED: " + "; ".join(failures.values()))
    return InspectionReport(table="\n".join(lines), failures=failures)


def _directory_bytes(directory: Path) -> int:
    return sum(
        os.path.getsize(os.path.join(dirpath, name))
        for dirpath, _, names in os.walk(directory)
        for name in names
    )


def _format_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    exponent = min(int(math.log(size, 1024)), 4)
    return f"{size / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exponent - 1]}"


def _format_table(header: list[str], rows: list[list[str]], right_aligned: set[int]) -> list[str]:
    """Lines of a fixed-width text table: header, rule, rows; columns in ``right_aligned`` flush right."""
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (
            cell.rjust(width) if k in right_aligned else cell.ljust(width)
            for k, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return [line(header), line(["-" * width for width in widths]), *(line(row) for row in rows)]
