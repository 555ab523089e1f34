import base64
import json
import re

import numpy as np
import pytest

from aptvit.tasks.report import write_report

METHODS = ["aptvit probe", "raw PCA + logistic"]


def _scores(accuracy, n_classes=3):
    return {
        "accuracy_mean": accuracy,
        "accuracy_std": 0.02,
        "macro_f1_mean": accuracy - 0.01,
        "macro_f1_std": 0.03,
        "confusion": (np.eye(n_classes, dtype=int) * 10 + 1).tolist(),
    }


def _results():
    rng = np.random.default_rng(0)
    box = 12
    truth = rng.standard_normal((box, box, box))
    frequency = np.arange(box // 2 + 1) / box
    dataset = {
        "class_names": ["1bxn", "1qvr", "3gl1"],
        "classification": {
            snr: {method: _scores(acc - 0.1 * i) for i, method in enumerate(METHODS)}
            for snr, acc in (("inf", 0.95), ("0.1", 0.8), ("0.05", 0.7))
        },
        "clustering": {
            "0.05": {"kmeans": {"adjusted_rand_index": 0.5, "normalized_mutual_information": 0.6}}
        },
        "embedding": {"features": rng.standard_normal((30, 8)), "labels": np.repeat(np.arange(3), 10)},
        "alignment": {
            method: {
                "rotation_error_deg": rng.uniform(0, 60, 20),
                "rotation_error_median_deg": 12.0,
                "fraction_below_10deg": 0.4,
                "seconds_per_particle": 0.5,
            }
            for method in ("classical exhaustive", "pose head + refine")
        },
        "averaging": {
            "ground_truth": truth,
            "methods": {
                method: {
                    "average": truth + rng.standard_normal(truth.shape),
                    "fsc_frequency": frequency,
                    "fsc": np.exp(-frequency * 8),
                    "resolution_A": 41.0,
                    "resolution_vs_ground_truth_A": 45.0,
                    "counts": [5, 10, 20],
                    "resolution_vs_count_A": [60.0, 50.0, 41.0],
                }
                for method in ("reference-free", "oracle")
            },
        },
    }
    return {"title": "demo", "command": "python -m aptvit.evaluate ...", "datasets": {"demo.zarr": dataset}}


def test_report_holds_every_figure_and_metrics_every_metric(tmp_path):
    report = write_report(_results(), tmp_path / "out")
    page = report.html_path.read_text()
    expected = [
        "demo-zarr-accuracy-vs-snr",
        "demo-zarr-confusion-snr-inf",
        "demo-zarr-confusion-snr-0p1",
        "demo-zarr-confusion-snr-0p05",
        "demo-zarr-embedding-map",
        "demo-zarr-rotation-errors",
        "demo-zarr-fsc",
        "demo-zarr-resolution-vs-count",
        "demo-zarr-central-slices",
    ]
    assert list(report.figure_ids) == expected
    figures = dict(
        re.findall(r'<figure id="([^"]+)"><img alt="[^"]*" src="data:image/png;base64,([^"]+)">', page)
    )
    assert sorted(figures) == sorted(expected)
    for png in figures.values():
        assert base64.b64decode(png).startswith(b"\x89PNG")  # self-contained: the image is in the page
    assert "http" not in page.replace("python -m", "")  # nothing fetched from elsewhere
    # The summary table: one row per dataset × SNR, one column per method.
    table = page[page.index("<table>") : page.index("</table>")]
    assert table.count("<tr>") == 1 + 3 and all(method in table for method in METHODS)
    assert "0.950 ± 0.020" in table

    metrics = json.loads(report.metrics_path.read_text())
    dataset = metrics["datasets"]["demo.zarr"]
    for snr in ("inf", "0.1", "0.05"):
        for method in METHODS:
            scores = dataset["classification"][snr][method]
            assert set(scores) == {
                "accuracy_mean",
                "accuracy_std",
                "macro_f1_mean",
                "macro_f1_std",
                "confusion",
            }
    assert dataset["clustering"]["0.05"]["kmeans"]["adjusted_rand_index"] == 0.5
    assert dataset["alignment"]["classical exhaustive"] == {
        "rotation_error_median_deg": 12.0,
        "fraction_below_10deg": 0.4,
        "seconds_per_particle": 0.5,
    }
    oracle = dataset["averaging"]["methods"]["oracle"]
    assert oracle["resolution_A"] == 41.0 and oracle["resolution_vs_count_A"] == [60.0, 50.0, 41.0]
    assert oracle["resolution_vs_ground_truth_A"] == 45.0 and len(oracle["fsc"]) == 7
    assert "average" not in oracle and "embedding" not in dataset  # maps and features stay out
    assert metrics["command"].startswith("python -m aptvit.evaluate")


def test_a_report_needs_datasets_and_skips_absent_sections(tmp_path):
    with pytest.raises(ValueError, match="datasets"):
        write_report({}, tmp_path)
    report = write_report(
        {"datasets": {"only-clusters": {"clustering": {"inf": {"kmeans": {"nmi": 1.0}}}}}}, tmp_path
    )
    assert report.figure_ids == ()
    assert "No classification results" in report.html_path.read_text()
    assert not list(tmp_path.glob(".*tmp*"))
