"""Seeded synthetic ParticleSets for the store, export and intermediate-file tests (tiny boxes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cryoengine.physics.rotation import random_rotations
from cryoengine.store.particle_set import ParticleSet

BOX = 6
LEVELS = [0.1, 0.05, 0.01]


def make_particles(
    n: int = 7,
    seed: int = 0,
    class_id: str = "a",
    *,
    box: int = BOX,
    levels: Sequence[float] = tuple(LEVELS),
    with_noise: bool = True,
    realisations: int = 2,
    attrs: dict[str, Any] | None = None,
) -> ParticleSet:
    """`n` random particles in `box`³ with `len(levels)` noisy levels and (``with_noise``) `realisations`
    unit-noise volumes with a noise scale; ``attrs`` extend ``{"class_id"}``."""
    rng = np.random.default_rng(seed)
    shift = rng.uniform(-0.5, 0.5, (n, 3))
    return ParticleSet(
        clean=rng.standard_normal((n, box, box, box)),
        noise=rng.standard_normal((n, realisations, box, box, box)) if with_noise else None,
        noise_scale=rng.uniform(0.5, 2.0, n) if with_noise else None,
        noisy=rng.standard_normal((n, len(levels), box, box, box)),
        snr=rng.uniform(0.005, 0.2, (n, len(levels))),
        rotation=random_rotations(n, rng),
        shift=shift,
        position=rng.integers(10, 90, (n, 3)) + shift,
        tomogram=rng.integers(0, 3, n),
        defocus_um=rng.uniform(2, 5, n),
        attrs={"class_id": class_id, **(attrs or {})},
    )
