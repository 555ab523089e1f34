"""Learning-rate schedule of pre-training: linear warm-up, then a half cosine down to a floor."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine_factor"]


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, final_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimiser step ``step``.

    Rises linearly from ``1 / warmup_steps`` to 1 over the first ``warmup_steps`` steps, then follows a half
    cosine from 1 to ``final_factor`` at ``total_steps`` (and stays there).

    Parameters
    ----------
    step
        Optimiser step, from 0.
    total_steps
        Steps of the whole run (≥ 1).
    warmup_steps
        Steps of the linear warm-up (0 for none, < ``total_steps``).
    final_factor
        Multiplier reached at the end, in ``[0, 1]``.

    Returns
    -------
    float
        The multiplier.
    """
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")
    if not 0.0 <= final_factor <= 1.0:
        raise ValueError(f"final_factor must be in [0, 1], got {final_factor}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
