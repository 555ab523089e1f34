import numpy as np
import pytest

from aptvit.tasks.classify import (
    cluster_features,
    few_shot_classify,
    kmeans_with_confidence,
    knn_classify,
    linear_probe,
    raw_voxel_pca_features,
    tomogram_folds,
)

N_CLASSES, TOMOGRAMS, PER_TOMOGRAM = 3, 5, 12


def _separable(seed=0, margin=4.0):
    """Three classes in 8-D, linearly separable by a wide margin; 5 tomograms of 12 particles each."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(N_CLASSES), TOMOGRAMS * PER_TOMOGRAM)
    tomograms = np.tile(np.repeat(np.arange(TOMOGRAMS), PER_TOMOGRAM), N_CLASSES)
    centres = np.eye(N_CLASSES, 8) * margin
    features = centres[labels] + 0.3 * rng.standard_normal((len(labels), 8))
    return features, labels, tomograms


def test_folds_keep_each_tomogram_on_one_side_and_every_class_in_every_test_fold():
    _, labels, tomograms = _separable()
    folds = tomogram_folds(labels, tomograms, n_splits=5, seed=0)
    assert len(folds) == 5
    groups = labels * 100 + tomograms
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert set(labels[test]) == set(range(N_CLASSES))
    assert np.array_equal(np.sort(np.concatenate([test for _, test in folds])), np.arange(len(labels)))
    same = tomogram_folds(labels, tomograms, n_splits=5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, same, strict=True))


def test_linear_probe_separates_separable_features_and_scores_chance_on_shuffled_labels():
    features, labels, tomograms = _separable()
    scores = linear_probe(features, labels, tomograms, seed=0)
    assert scores.accuracy_mean == 1.0 and scores.macro_f1_mean == 1.0 and scores.accuracy_std == 0.0
    assert np.array_equal(scores.confusion, np.diag(np.bincount(labels)))
    shuffled = np.random.default_rng(1).permutation(labels)
    chance = linear_probe(features, shuffled, tomograms, seed=0)
    assert abs(chance.accuracy_mean - 1 / N_CLASSES) < 0.12
    assert chance.as_dict()["confusion"] == chance.confusion.tolist()


def test_knn_few_shot_and_clustering_on_separable_features():
    features, labels, tomograms = _separable()
    assert knn_classify(features, labels, tomograms, k=5).accuracy_mean == 1.0
    few = few_shot_classify(features, labels, tomograms, shots=(1, 5))
    assert set(few) == {1, 5} and few[5].accuracy_mean == 1.0 and few[1].accuracy_mean > 0.8  # chance: 1/3
    for method in ("kmeans", "agglomerative"):
        clusters = cluster_features(features, N_CLASSES, method=method, labels=labels)
        assert clusters.adjusted_rand_index == pytest.approx(1.0)
        assert clusters.normalized_mutual_information == pytest.approx(1.0)
    unlabelled = cluster_features(features, N_CLASSES)
    assert unlabelled.adjusted_rand_index is None and unlabelled.assignment.shape == labels.shape


def test_too_few_tomograms_or_particles_and_missing_labels_are_clear_errors():
    features, labels, tomograms = _separable()
    one_tomogram = tomograms.copy()
    one_tomogram[labels == 2] = 0
    with pytest.raises(ValueError, match="class 2 has 1 tomogram"):
        linear_probe(features, labels, one_tomogram)
    with pytest.raises(ValueError, match="class 0 has 5 tomogram"):
        tomogram_folds(labels, tomograms, n_splits=6)
    with pytest.raises(ValueError, match="fewer than 50 shots"):
        few_shot_classify(features, labels, tomograms, shots=(50,))
    with pytest.raises(ValueError, match="needs labels"):
        linear_probe(features, None, tomograms)


def test_raw_voxel_pca_baseline_feeds_the_probe():
    rng = np.random.default_rng(2)
    _, labels, tomograms = _separable()
    box = 6
    patterns = rng.standard_normal((N_CLASSES, box, box, box))
    volumes = patterns[labels] * rng.uniform(0.5, 3.0, (len(labels), 1, 1, 1)) + rng.standard_normal(
        (len(labels), box, box, box)
    )
    features = raw_voxel_pca_features(volumes, n_components=8)
    assert features.shape == (len(labels), 8)
    assert linear_probe(features, labels, tomograms).accuracy_mean > 0.95


def test_kmeans_confidence_is_high_inside_clusters_and_even_between_them():
    rng = np.random.default_rng(0)
    centres = np.array([[-5.0, 0.0], [5.0, 0.0]])
    features = np.concatenate([rng.normal(c, 0.5, (40, 2)) for c in centres] + [[[0.0, 0.0]]])
    clusters = kmeans_with_confidence(features, 2)
    assert len(set(clusters.assignment[:40])) == 1 and len(set(clusters.assignment[40:80])) == 1
    assert clusters.assignment[0] != clusters.assignment[40]
    np.testing.assert_allclose(clusters.probability.sum(1), 1.0)
    assert np.median(clusters.confidence[:80]) > 0.95
    assert abs(clusters.confidence[80] - 0.5) < 0.1  # the midpoint belongs to neither
    single = kmeans_with_confidence(features, 1)
    assert np.all(single.assignment == 0) and np.all(single.confidence == 1.0)
    with pytest.raises(ValueError, match=r"n_clusters must lie in \[1, 81\]"):
        kmeans_with_confidence(features, 0)
