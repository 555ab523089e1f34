"""Frozen downstream tasks: embedding, classification, alignment, averaging and FSC (DESIGN §8)."""

from aptvit.tasks.align import (
    Alignment,
    align_exhaustive,
    alignment_errors,
    constrained_correlation,
    frobenius_rotation_error,
    refine_alignment,
    rotation_grid,
)
from aptvit.tasks.average import (
    GoldStandardAverage,
    PosePredictor,
    ReferenceFreeAverage,
    average_with_poses,
    gold_standard_average,
    reference_free_average,
)
from aptvit.tasks.fsc import FscCurve, fourier_shell_correlation
from aptvit.tasks.wedge import MissingWedge, fourier_frequencies_zyx

__all__ = [
    "Alignment",
    "FscCurve",
    "GoldStandardAverage",
    "MissingWedge",
    "PosePredictor",
    "ReferenceFreeAverage",
    "average_with_poses",
    "gold_standard_average",
    "reference_free_average",
    "align_exhaustive",
    "alignment_errors",
    "constrained_correlation",
    "fourier_frequencies_zyx",
    "fourier_shell_correlation",
    "frobenius_rotation_error",
    "refine_alignment",
    "rotation_grid",
]
