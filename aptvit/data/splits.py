"""Train/validation split by tomogram: never two particles of one tomogram on both sides (DESIGN §8).

A tomogram is keyed ``(dataset, class_id, tomogram)``: tomogram indices are per class in the store, and
per dataset when several are read together.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np

__all__ = ["TomogramKey", "split_tomograms"]

TomogramKey = tuple[int, str, int]


def split_tomograms(
    tomograms: Mapping[tuple[int, str], np.ndarray], val_fraction: float, seed: int
) -> dict[TomogramKey, str]:
    """Assign each tomogram of each class to ``"train"`` or ``"val"``.

    Per class, ``round(val_fraction · T)`` of its `T` tomograms (drawn with a generator seeded by
    ``seed``, the dataset and the class id) go to validation, clipped so that a class with `T ≥ 2`
    tomograms keeps at least one on each side when ``val_fraction > 0``; a class with one tomogram is all
    training (its class and tomogram would be confounded, DESIGN §8).

    Parameters
    ----------
    tomograms
        ``(dataset, class_id)`` → `(N,)` tomogram index of each particle of that class.
    val_fraction
        Fraction of each class's tomograms held out, in ``[0, 1)``.
    seed
        Seed of the draw (the split does not change with the epoch).

    Returns
    -------
    dict
        ``(dataset, class_id, tomogram)`` → ``"train"`` or ``"val"``.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    sides: dict[TomogramKey, str] = {}
    for (dataset, class_id), per_particle in tomograms.items():
        unique = np.unique(np.asarray(per_particle))
        rng = np.random.default_rng([seed, dataset, zlib.crc32(class_id.encode())])
        order = rng.permutation(unique)
        n_val = round(val_fraction * len(unique))
        if val_fraction > 0 and len(unique) >= 2:
            n_val = min(max(n_val, 1), len(unique) - 1)
        elif len(unique) < 2:
            n_val = 0
        for position, tomogram in enumerate(order):
            sides[(dataset, class_id, int(tomogram))] = "val" if position < n_val else "train"
    return sides
