"""Frozen downstream tasks: embedding, classification, alignment, averaging and FSC (DESIGN §8)."""

from aptvit.tasks.align import (
    Alignment,
    PosePredictor,
    align_exhaustive,
    alignment_errors,
    constrained_correlation,
    exhaustive_pose_predictor,
    frobenius_rotation_error,
    refine_alignment,
    rotation_grid,
)
from aptvit.tasks.average import (
    ClusterAverages,
    GoldStandardAverage,
    ReferenceFreeAverage,
    average_clusters,
    average_with_poses,
    gold_standard_average,
    reference_free_average,
)
from aptvit.tasks.classify import (
    ClassificationScores,
    ClusteringScores,
    SoftClusters,
    cluster_features,
    few_shot_classify,
    kmeans_with_confidence,
    knn_classify,
    linear_probe,
    raw_voxel_pca_features,
    tomogram_folds,
)
from aptvit.tasks.embed import (
    Embeddings,
    cached_embed_dataset,
    embed_dataset,
    embed_volumes,
    embedding_cache_path,
)
from aptvit.tasks.fsc import FscCurve, fourier_shell_correlation
from aptvit.tasks.report import Report, write_report
from aptvit.tasks.wedge import MissingWedge, fourier_frequencies_zyx

__all__ = [
    "Alignment",
    "ClassificationScores",
    "ClusterAverages",
    "ClusteringScores",
    "Embeddings",
    "FscCurve",
    "GoldStandardAverage",
    "MissingWedge",
    "PosePredictor",
    "ReferenceFreeAverage",
    "Report",
    "SoftClusters",
    "average_clusters",
    "average_with_poses",
    "cached_embed_dataset",
    "cluster_features",
    "embed_dataset",
    "embed_volumes",
    "embedding_cache_path",
    "exhaustive_pose_predictor",
    "few_shot_classify",
    "gold_standard_average",
    "kmeans_with_confidence",
    "knn_classify",
    "linear_probe",
    "raw_voxel_pca_features",
    "reference_free_average",
    "align_exhaustive",
    "alignment_errors",
    "constrained_correlation",
    "fourier_frequencies_zyx",
    "fourier_shell_correlation",
    "frobenius_rotation_error",
    "refine_alignment",
    "rotation_grid",
    "tomogram_folds",
    "write_report",
]
