"""The supervised baseline: a small 3D CNN trained from scratch on the labelled training fold.

A scikit-learn estimator over flattened subtomograms, so that :func:`~aptvit.tasks.classify.
cross_validate_classifier` scores it on exactly the folds, splits and metrics of the frozen-feature methods.
Its budget (epochs × training particles, stated in the report) is the ``epochs`` argument.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from aptvit.data.views import standardise_volumes
from aptvit.tasks.classify import ClassificationScores, cross_validate_classifier

__all__ = ["Cnn3dClassifier", "supervised_cnn_classify"]


class Cnn3dClassifier(ClassifierMixin, BaseEstimator):
    """Three conv–BN–ReLU–pool stages, global average pooling and a linear layer, trained with AdamW.

    Parameters
    ----------
    box
        Edge ``D`` of the subtomograms (the inputs are their flattened `(D³,)` voxels).
    epochs
        Passes over the training fold.
    width
        Channels of the first stage (doubled at each of the next two).
    batch_size, lr
        Mini-batch and AdamW learning rate.
    seed
        Seed of the initialisation and the batch order.
    """

    def __init__(
        self,
        box: int,
        epochs: int = 30,
        width: int = 16,
        batch_size: int = 32,
        lr: float = 1e-3,
        seed: int = 0,
    ) -> None:
        self.box = box
        self.epochs = epochs
        self.width = width
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed

    def fit(self, flat_volumes: np.ndarray, labels: np.ndarray) -> Cnn3dClassifier:
        """Train on `(N, D³)` flattened subtomograms with integer labels `(N,)`."""
        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.classes_ = np.unique(labels)
        targets = torch.as_tensor(np.searchsorted(self.classes_, labels))
        volumes = self._volumes(flat_volumes)
        self.network_ = _network(self.width, len(self.classes_))
        optimizer = torch.optim.AdamW(self.network_.parameters(), lr=self.lr, weight_decay=1e-4)
        self.network_.train()
        for _ in range(self.epochs):
            for batch in torch.randperm(len(volumes), generator=generator).split(self.batch_size):
                # Random axis flips: the label does not change, and the wedge stays a wedge about y.
                flips = [axis for axis in (2, 3, 4) if torch.rand((), generator=generator) < 0.5]
                inputs = volumes[batch].flip(flips) if flips else volumes[batch]
                loss = nn.functional.cross_entropy(self.network_(inputs), targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return self

    def predict(self, flat_volumes: np.ndarray) -> np.ndarray:
        """Labels `(N,)` of `(N, D³)` flattened subtomograms."""
        self.network_.eval()
        with torch.no_grad():
            logits = torch.cat([self.network_(chunk) for chunk in self._volumes(flat_volumes).split(256)])
        return self.classes_[logits.argmax(dim=1).numpy()]

    def _volumes(self, flat_volumes: np.ndarray) -> torch.Tensor:
        volumes = torch.as_tensor(np.asarray(flat_volumes, dtype=np.float32))
        if volumes.ndim != 2 or volumes.shape[1] != self.box**3:
            raise ValueError(f"expected (N, {self.box**3}) flattened boxes, got {tuple(volumes.shape)}")
        return standardise_volumes(volumes.reshape(-1, 1, self.box, self.box, self.box))


def _network(width: int, n_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 1
    for stage in range(3):
        out = width * 2**stage
        layers += [nn.Conv3d(channels, out, 3, padding=1), nn.BatchNorm3d(out), nn.ReLU(), nn.MaxPool3d(2)]
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(channels, n_classes))


def supervised_cnn_classify(
    volumes: np.ndarray,
    labels: np.ndarray,
    tomograms: np.ndarray,
    *,
    epochs: int = 30,
    n_splits: int | None = None,
    seed: int = 0,
) -> ClassificationScores:
    """Cross-validated accuracy of the 3D CNN trained from scratch on each training fold.

    Parameters
    ----------
    volumes
        `(N, D, D, D)` subtomograms.
    labels, tomograms, n_splits, seed
        As in :func:`~aptvit.tasks.classify.linear_probe` (the same folds for the same seed).
    epochs
        Training budget: passes over each training fold.

    Returns
    -------
    ClassificationScores
    """
    volumes = np.asarray(volumes, dtype=np.float32)
    if volumes.ndim != 4 or len(set(volumes.shape[1:])) != 1:
        raise ValueError(f"volumes must be (N, D, D, D), got {volumes.shape}")
    box = volumes.shape[1]
    return cross_validate_classifier(
        volumes.reshape(len(volumes), -1),
        labels,
        tomograms,
        lambda: Cnn3dClassifier(box, epochs=epochs, seed=seed),
        n_splits,
        seed,
        standardise=False,
    )
