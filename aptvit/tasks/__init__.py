"""Frozen downstream tasks: embedding, classification, alignment, averaging and FSC (DESIGN §8)."""

from aptvit.tasks.fsc import FscCurve, fourier_shell_correlation
from aptvit.tasks.wedge import MissingWedge, fourier_frequencies_zyx

__all__ = ["FscCurve", "MissingWedge", "fourier_frequencies_zyx", "fourier_shell_correlation"]
