"""Classification of frozen features: linear probe, kNN, few-shot, clustering, and the raw-voxel baseline.

Every supervised score is a k-fold cross-validation split by tomogram (DESIGN §8): the group of a
particle is its (class, tomogram) pair, so no tomogram has particles on both sides of a split, and the
folds are stratified by class and seeded. Scores are the mean ± standard deviation over the folds and the
confusion matrix summed over the test folds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    confusion_matrix,
    f1_score,
    normalized_mutual_info_score,
)
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from aptvit.data.views import standardise_volumes

__all__ = [
    "ClassificationScores",
    "ClusteringScores",
    "SoftClusters",
    "cluster_features",
    "cross_validate_classifier",
    "few_shot_classify",
    "knn_accuracy",
    "kmeans_with_confidence",
    "knn_classify",
    "linear_probe",
    "raw_voxel_pca_features",
    "tomogram_folds",
]


@dataclass(frozen=True)
class ClassificationScores:
    """Cross-validated scores of one classifier.

    Attributes
    ----------
    accuracy_mean, accuracy_std, macro_f1_mean, macro_f1_std
        Mean and standard deviation over the folds.
    accuracy_per_fold, macro_f1_per_fold
        `(K,)` the score of each test fold.
    confusion
        `(C, C)` counts summed over the test folds; row = true class, column = predicted class.
    """

    accuracy_mean: float
    accuracy_std: float
    macro_f1_mean: float
    macro_f1_std: float
    accuracy_per_fold: np.ndarray
    macro_f1_per_fold: np.ndarray
    confusion: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy (arrays as lists)."""
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ClusteringScores:
    """Clusters of unlabelled features and, when labels are known, their agreement with them.

    Attributes
    ----------
    assignment
        `(N,)` cluster of each particle.
    adjusted_rand_index, normalized_mutual_information
        Agreement with the labels; None without labels.
    """

    assignment: np.ndarray
    adjusted_rand_index: float | None
    normalized_mutual_information: float | None


def tomogram_folds(
    labels: np.ndarray, tomograms: np.ndarray, n_splits: int | None = None, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold split in which every (class, tomogram) group falls on one side.

    Parameters
    ----------
    labels
        `(N,)` class index of each particle.
    tomograms
        `(N,)` source tomogram of each particle (numbered within its class, as in the dataset).
    n_splits
        Number of folds, ≥ 2; None: ``min(5, fewest tomograms of any class)``.
    seed
        Seed of the fold assignment.

    Returns
    -------
    list of tuple
        ``(train_indices, test_indices)`` per fold.

    Raises
    ------
    ValueError
        A class has fewer tomograms than the folds need (each class must appear in every test fold).
    """
    labels, tomograms = _check_labels(labels, tomograms)
    classes = np.unique(labels)
    per_class = {int(c): len(np.unique(tomograms[labels == c])) for c in classes}
    fewest_class = min(per_class, key=per_class.__getitem__)
    if n_splits is None:
        n_splits = min(5, per_class[fewest_class])
    if n_splits < 2 or per_class[fewest_class] < n_splits:
        raise ValueError(
            f"class {fewest_class} has {per_class[fewest_class]} tomogram(s); a {max(n_splits, 2)}-fold "
            "split by tomogram needs at least that many per class (and at least 2)"
        )
    groups = np.unique(np.stack([labels, tomograms], axis=1), axis=0, return_inverse=True)[1].ravel()
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(train, test) for train, test in splitter.split(np.zeros(len(labels)), labels, groups)]


def linear_probe(
    features: np.ndarray,
    labels: np.ndarray | None,
    tomograms: np.ndarray,
    *,
    n_splits: int | None = None,
    seed: int = 0,
    inverse_regularisation: float = 1.0,
) -> ClassificationScores:
    """Logistic regression on standardised features (the scaler fitted on the training fold only).

    Parameters
    ----------
    features
        `(N, F)` frozen embeddings.
    labels, tomograms, n_splits, seed
        As in :func:`tomogram_folds`; ``labels`` None is an error (use :func:`cluster_features`).
    inverse_regularisation
        ``C`` of the L2-regularised logistic regression, > 0.

    Returns
    -------
    ClassificationScores
    """
    if not inverse_regularisation > 0:
        raise ValueError(f"inverse_regularisation must be > 0, got {inverse_regularisation}")

    def make() -> ClassifierMixin:
        return LogisticRegression(C=inverse_regularisation, max_iter=5000)

    return cross_validate_classifier(features, labels, tomograms, make, n_splits, seed, standardise=True)


def knn_classify(
    features: np.ndarray,
    labels: np.ndarray | None,
    tomograms: np.ndarray,
    *,
    k: int = 20,
    n_splits: int | None = None,
    seed: int = 0,
) -> ClassificationScores:
    """k-nearest-neighbour vote under cosine distance (k capped at the training-fold size).

    Parameters
    ----------
    features, labels, tomograms, n_splits, seed
        As in :func:`linear_probe`.
    k
        Neighbours, ≥ 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return cross_validate_classifier(
        features,
        labels,
        tomograms,
        lambda: _cosine_knn(k),
        n_splits,
        seed,
        standardise=False,
    )


def knn_accuracy(
    bank_features: np.ndarray,
    bank_labels: np.ndarray,
    query_features: np.ndarray,
    query_labels: np.ndarray,
    k: int = 20,
) -> float:
    """Accuracy of the cosine kNN vote of ``query_features`` among labelled ``bank_features``.

    The online monitor of pre-training: the bank is part of the training split, the queries the validation
    split (other tomograms), so no tomogram lends a query its own neighbours.

    Parameters
    ----------
    bank_features, query_features
        `(N_bank, C)` and `(N_query, C)` features (N ≥ 2 each).
    bank_labels, query_labels
        `(N_bank,)` and `(N_query,)` integer labels.
    k
        Neighbours (≥ 1; capped at the bank size).

    Returns
    -------
    float
        Fraction of queries whose vote is their label.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    bank_features, query_features = _check_features(bank_features), _check_features(query_features)
    classifier = _cosine_knn(min(k, len(bank_features))).fit(bank_features, bank_labels)
    return float(accuracy_score(query_labels, classifier.predict(query_features)))


def _cosine_knn(k: int) -> KNeighborsClassifier:
    return KNeighborsClassifier(n_neighbors=k, metric="cosine")


def few_shot_classify(
    features: np.ndarray,
    labels: np.ndarray | None,
    tomograms: np.ndarray,
    *,
    shots: tuple[int, ...] = (1, 5, 10),
    n_splits: int | None = None,
    seed: int = 0,
) -> dict[int, ClassificationScores]:
    """Linear probe trained on ``s`` labelled particles per class drawn from each training fold.

    The features are standardised with the statistics of the whole training fold (its features only,
    no labels): a scaler fitted on one particle per class would blow up the noise dimensions.

    Parameters
    ----------
    features, labels, tomograms, n_splits, seed
        As in :func:`linear_probe`; the labelled particles are drawn with ``seed``.
    shots
        Labelled particles per class, each ≥ 1.

    Returns
    -------
    dict
        ``{shots: ClassificationScores}``.

    Raises
    ------
    ValueError
        A training fold holds fewer particles of a class than ``shots``.
    """
    if not shots or min(shots) < 1:
        raise ValueError(f"shots must be integers >= 1, got {shots}")

    def make() -> ClassifierMixin:
        return LogisticRegression(max_iter=5000)

    return {
        s: cross_validate_classifier(
            features, labels, tomograms, make, n_splits, seed, standardise=True, shots=s
        )
        for s in shots
    }


def cluster_features(
    features: np.ndarray,
    n_clusters: int,
    *,
    method: Literal["kmeans", "agglomerative"] = "kmeans",
    labels: np.ndarray | None = None,
    seed: int = 0,
) -> ClusteringScores:
    """Cluster standardised features without labels (k-means, or Ward agglomerative); score with ARI/NMI.

    Parameters
    ----------
    features
        `(N, F)` embeddings.
    n_clusters
        Clusters to form, in [2, N].
    method
        ``"kmeans"`` (10 seeded restarts) or ``"agglomerative"`` (Ward linkage).
    labels
        `(N,)` true classes, only to score the clusters; None: no scores.
    seed
        Seed of k-means.
    """
    features = _check_features(features)
    if not 2 <= n_clusters <= len(features):
        raise ValueError(f"n_clusters must lie in [2, {len(features)}], got {n_clusters}")
    scaled = StandardScaler().fit_transform(features)
    if method == "kmeans":
        assignment = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(scaled)
    elif method == "agglomerative":
        assignment = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(scaled)
    else:
        raise ValueError(f"method must be 'kmeans' or 'agglomerative', got {method!r}")
    if labels is None:
        return ClusteringScores(assignment, None, None)
    labels = np.asarray(labels)
    if labels.shape != (len(features),):
        raise ValueError(f"labels must have shape ({len(features)},), got {labels.shape}")
    return ClusteringScores(
        assignment,
        float(adjusted_rand_score(labels, assignment)),
        float(normalized_mutual_info_score(labels, assignment)),
    )


@dataclass(frozen=True)
class SoftClusters:
    """k-means clusters of unlabelled features with a per-particle confidence.

    Attributes
    ----------
    assignment
        `(N,)` int cluster of each particle (its nearest centroid), ``0 … K−1``.
    probability
        `(N, K)` soft assignment, rows summing to 1 (:func:`kmeans_with_confidence`).
    confidence
        `(N,)` the probability of the assigned cluster, in ``[1/K, 1]``.
    centroids
        `(K, F)` centroids in the standardised feature space.
    """

    assignment: np.ndarray
    probability: np.ndarray
    confidence: np.ndarray
    centroids: np.ndarray


def kmeans_with_confidence(features: np.ndarray, n_clusters: int, *, seed: int = 0) -> SoftClusters:
    """k-means on standardised frozen features, with a softmax confidence over the centroid distances.

    The features are standardised per dimension (as in :func:`cluster_features`) and clustered by k-means
    (10 seeded restarts). The soft assignment is a softmax over negative squared distances,
    ``p_k ∝ exp(−‖f − c_k‖² / τ)``, with the temperature ``τ`` the mean squared distance of the particles to
    their own centroid (the within-cluster spread): scale-free, so a particle as far from the other centroid
    as its cluster's typical spread beyond its own gets ``p ≈ e / (1 + e) ≈ 0.73``. One cluster gives
    confidence 1 everywhere.

    Parameters
    ----------
    features
        `(N, F)` embeddings.
    n_clusters
        Clusters `K`, in ``[1, N]``.
    seed
        Seed of k-means.

    Returns
    -------
    SoftClusters
    """
    features = _check_features(features)
    if not 1 <= n_clusters <= len(features):
        raise ValueError(f"n_clusters must lie in [1, {len(features)}], got {n_clusters}")
    scaled = StandardScaler().fit_transform(features)
    if n_clusters == 1:
        n = len(features)
        return SoftClusters(np.zeros(n, int), np.ones((n, 1)), np.ones(n), scaled.mean(0, keepdims=True))
    kmeans = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(scaled)
    squared = ((scaled[:, None, :] - kmeans.cluster_centers_[None]) ** 2).sum(-1)
    assignment = squared.argmin(1)
    temperature = max(float(squared[np.arange(len(scaled)), assignment].mean()), 1e-12)
    logits = -(squared - squared.min(1, keepdims=True)) / temperature
    probability = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    confidence = probability[np.arange(len(scaled)), assignment]
    return SoftClusters(assignment, probability, confidence, kmeans.cluster_centers_)


def raw_voxel_pca_features(volumes: np.ndarray, n_components: int = 32, seed: int = 0) -> np.ndarray:
    """Baseline features: PCA of the flattened, per-subtomogram standardised voxels.

    The PCA is fitted on all the given subtomograms without labels (unsupervised, like the encoder's
    pre-training), so the linear probe on top sees no test labels.

    Parameters
    ----------
    volumes
        `(N, D, D, D)` subtomograms.
    n_components
        Principal components kept, ≥ 1 (capped at `N`).
    seed
        Seed of the randomised SVD.

    Returns
    -------
    np.ndarray
        `(N, n_components)` float32 scores.
    """
    volumes = np.asarray(volumes)
    if volumes.ndim != 4 or volumes.shape[0] < 2:
        raise ValueError(f"volumes must be (N, D, D, D) with N >= 2, got {volumes.shape}")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    flat = standardise_volumes(torch.as_tensor(volumes, dtype=torch.float32)).flatten(1).numpy()
    pca = PCA(n_components=min(n_components, flat.shape[0]), random_state=seed)
    return pca.fit_transform(flat).astype(np.float32)


def cross_validate_classifier(
    features: np.ndarray,
    labels: np.ndarray | None,
    tomograms: np.ndarray,
    make_classifier: Callable[[], ClassifierMixin],
    n_splits: int | None,
    seed: int,
    *,
    standardise: bool,
    shots: int | None = None,
) -> ClassificationScores:
    """Score a classifier over the tomogram folds; the scaler sees the training fold's features only.

    Parameters
    ----------
    features
        `(N, F)` inputs of the classifier (features, or flattened subtomograms for a supervised model).
    labels, tomograms, n_splits, seed
        As in :func:`linear_probe`.
    make_classifier
        Returns a fresh scikit-learn classifier (``fit`` / ``predict``) for each fold.
    standardise
        Standardise each feature with the training fold's statistics first.
    shots
        Train on this many particles per class of the training fold (few-shot); all when None.

    Returns
    -------
    ClassificationScores
    """
    features = _check_features(features)
    if labels is None:
        raise ValueError(
            "classification needs labels; the dataset has none (cluster_features runs without them)"
        )
    labels, tomograms = _check_labels(labels, tomograms, len(features))
    n_classes = int(labels.max()) + 1
    generator = np.random.default_rng(seed)
    accuracy, macro_f1 = [], []
    confusion = np.zeros((n_classes, n_classes), dtype=int)
    for train, test in tomogram_folds(labels, tomograms, n_splits, seed):
        fold = StandardScaler().fit(features[train]).transform(features) if standardise else features
        if shots is not None:
            train = _draw_shots(train, labels, shots, generator)
        classifier = make_classifier()
        if isinstance(classifier, KNeighborsClassifier):
            classifier.set_params(n_neighbors=min(classifier.n_neighbors, len(train)))
        predicted = classifier.fit(fold[train], labels[train]).predict(fold[test])
        accuracy.append(accuracy_score(labels[test], predicted))
        # Macro over the classes of this test fold: a class absent from it has no F1 to average.
        present = np.unique(labels[test])
        macro_f1.append(f1_score(labels[test], predicted, labels=present, average="macro", zero_division=0))
        confusion += confusion_matrix(labels[test], predicted, labels=np.arange(n_classes))
    accuracy_array, f1_array = np.asarray(accuracy), np.asarray(macro_f1)
    return ClassificationScores(
        accuracy_mean=float(accuracy_array.mean()),
        accuracy_std=float(accuracy_array.std()),
        macro_f1_mean=float(f1_array.mean()),
        macro_f1_std=float(f1_array.std()),
        accuracy_per_fold=accuracy_array,
        macro_f1_per_fold=f1_array,
        confusion=confusion,
    )


def _draw_shots(
    train: np.ndarray, labels: np.ndarray, shots: int, generator: np.random.Generator
) -> np.ndarray:
    chosen = []
    for label in np.unique(labels):
        candidates = train[labels[train] == label]
        if len(candidates) < shots:
            raise ValueError(
                f"class {label} has {len(candidates)} particles in a training fold, fewer than {shots} shots"
            )
        chosen.append(generator.choice(candidates, size=shots, replace=False))
    return np.concatenate(chosen)


def _check_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be (N, F) with N >= 2, got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinity")
    return features


def _check_labels(
    labels: np.ndarray, tomograms: np.ndarray, n: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    labels, tomograms = np.asarray(labels), np.asarray(tomograms)
    n = len(labels) if n is None else n
    if labels.shape != (n,) or tomograms.shape != (n,):
        raise ValueError(
            f"labels and tomograms must have shape ({n},), got {labels.shape} and {tomograms.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"labels must be non-negative class indices, got dtype {labels.dtype}")
    return labels.astype(int), tomograms.astype(int)
