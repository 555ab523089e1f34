"""python -m aptvit.evaluate on a pre-trained checkpoint: report.html with every figure, metrics.json."""

from __future__ import annotations

import json

import pytest

from aptvit.checkpoint import CheckpointError, require_compatible
from aptvit.evaluate import main as evaluate_main


@pytest.mark.slow
def test_evaluate_writes_every_figure_and_metric(straight_run, simulated_dataset, tmp_path, capsys):
    _, checkpoint = straight_run
    output = tmp_path / "report"
    evaluate_main(
        [
            "--checkpoint", str(checkpoint), "--dataset", str(simulated_dataset), "-o", str(output),
            "--unseen", "rod", "blob", "--snr", "0.1", "0.03", "--headline-snr", "0.03",
            "--cnn-epochs", "1", "--align-pairs", "1", "--exhaustive-step-deg", "40",
            "--average-particles", "8", "--knn-k", "3",
        ]
    )  # fmt: skip
    html = (output / "report.html").read_text()
    metrics = json.loads((output / "metrics.json").read_text())
    unseen, everything = list(metrics["datasets"])
    assert "unseen: rod, blob" in unseen and "all classes" in everything
    classification = metrics["datasets"][unseen]["classification"]
    assert set(classification) == {"0.1", "0.03"}
    methods = set(classification["0.03"])
    for method in ("APT-ViT linear", "APT-ViT kNN", "APT-ViT 1-shot", "untrained linear", "PCA linear"):
        assert method in methods
    assert any(method.startswith("3D CNN") for method in methods)
    alignment = metrics["datasets"][unseen]["alignment"]
    assert set(alignment) == {"SE(3) head", "SE(3) head + refine", "exhaustive (classical)"}
    for errors in alignment.values():
        assert {"rotation_error_median_deg", "frobenius_median", "seconds_per_particle"} <= set(errors)
    averaging = metrics["datasets"][unseen]["averaging"]["methods"]
    assert "oracle (ground-truth poses)" in averaging
    assert all("resolution_A" in record for record in averaging.values())
    for figure in ("accuracy-vs-snr", "confusion", "embedding", "rotation-error", "fsc", "slices"):
        assert figure in html
    assert html.count("data:image/png;base64,") >= 6
    printed = capsys.readouterr().out
    assert "APT-ViT linear" in printed and "report.html" in printed


def test_a_checkpoint_and_a_dataset_of_other_boxes_are_an_error_naming_both(straight_run):
    _, checkpoint = straight_run
    with pytest.raises(CheckpointError, match=rf"{checkpoint} was trained on box 24, other.zarr has box 32"):
        require_compatible(checkpoint, 32, 10.0, source="other.zarr")
    with pytest.raises(CheckpointError, match="trained at 10.0 Å/voxel, other.zarr has 7.84 Å/voxel"):
        require_compatible(checkpoint, 24, 7.84, source="other.zarr")
