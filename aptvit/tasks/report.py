"""The evaluation report: a self-contained ``report.html`` (PNG figures inlined) and ``metrics.json``.

:func:`write_report` takes the results of the tasks as one nested dict (keys below; every section is
optional) and draws with matplotlib's object API on the Agg canvas (no pyplot, no global backend).

``results``
    ``title``, ``command``, ``provenance`` (any JSON), and ``datasets``: ``{name: dataset_results}``.
``dataset_results``
    ``class_names``: list of str.
    ``classification``: ``{snr: {method: scores}}``; ``scores`` has ``accuracy_mean``, ``accuracy_std``,
    ``macro_f1_mean``, ``macro_f1_std`` and ``confusion`` `(C, C)`
    (:meth:`~aptvit.tasks.classify.ClassificationScores.as_dict`); ``snr`` is a number or ``"inf"``.
    ``clustering``: ``{snr: {method: {adjusted_rand_index, normalized_mutual_information}}}``.
    ``embedding``: ``{features (N, F), labels (N,)}`` for the 2-D map (PCA).
    ``alignment``: ``{method: {rotation_error_deg (N,), seconds_per_particle, and the keys of
    :func:`~aptvit.tasks.align.alignment_errors`}}``.
    ``averaging``: ``{ground_truth (D, D, D), methods: {method: {average (D, D, D), fsc_frequency (S,),
    fsc (S,), resolution_A, counts (K,), resolution_vs_count_A (K,), and optionally
    resolution_vs_ground_truth_A}}}``; the oracle (ground-truth poses) is one of the methods.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from cryoengine.formats.atomic_write import atomic_path

__all__ = ["Report", "summary_table", "write_report"]

# Keys of each section that are arrays for the figures, not metrics for metrics.json.
_FIGURE_ONLY = {"embedding", "rotation_error_deg", "average", "ground_truth"}


@dataclass(frozen=True)
class Report:
    """Where the report went and what it holds.

    Attributes
    ----------
    html_path, metrics_path
        ``report.html`` and ``metrics.json``.
    figure_ids
        The ``id`` of every ``<figure>`` in the HTML, in order.
    """

    html_path: Path
    metrics_path: Path
    figure_ids: tuple[str, ...]


def write_report(results: Mapping[str, Any], output_dir: str | os.PathLike[str]) -> Report:
    """Write ``report.html`` and ``metrics.json`` for the results of an evaluation run.

    Parameters
    ----------
    results
        Nested results (module docstring).
    output_dir
        Directory to write into (created if missing); both files are written atomically.

    Returns
    -------
    Report
    """
    datasets = results.get("datasets")
    if not isinstance(datasets, Mapping) or not datasets:
        raise ValueError("results must hold a non-empty 'datasets' mapping")
    output_dir = Path(output_dir)
    figures: list[tuple[str, str, str]] = []  # (id, caption, base64 PNG)
    for name, dataset in datasets.items():
        figures.extend(_dataset_figures(str(name), dataset))
    body = [f"<h1>{html.escape(str(results.get('title', 'APT-ViT evaluation')))}</h1>"]
    if "command" in results:
        body.append(f"<p>Command: <code>{html.escape(str(results['command']))}</code></p>")
    body.append(_summary_html(datasets))
    for figure_id, caption, png in figures:
        body.append(
            f'<figure id="{figure_id}"><img alt="{html.escape(caption)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    if "provenance" in results:
        provenance = json.dumps(_jsonable(results["provenance"]), indent=2)
        body.append(f"<h2>Provenance</h2><pre>{html.escape(provenance)}</pre>")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>APT-ViT evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}img{max-width:100%}"
        "</style></head><body>" + "\n".join(body) + "</body></html>"
    )
    metrics = {key: _jsonable(value) for key, value in results.items() if key != "datasets"} | {
        "datasets": {str(name): _metrics_of(dataset) for name, dataset in datasets.items()}
    }
    html_path, metrics_path = output_dir / "report.html", output_dir / "metrics.json"
    with atomic_path(html_path) as temporary:
        temporary.write_text(page, encoding="utf-8")
    with atomic_path(metrics_path) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2, allow_nan=False), encoding="utf-8")
    return Report(html_path, metrics_path, tuple(figure_id for figure_id, _, _ in figures))


def summary_table(datasets: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Tabulate accuracy mean ± std: rows dataset × SNR (highest first), columns methods.

    Parameters
    ----------
    datasets
        ``results["datasets"]`` (module docstring).

    Returns
    -------
    tuple
        The header (``dataset``, ``SNR``, then the methods) and the rows of cells, as text.
    """
    methods: list[str] = []
    for dataset in datasets.values():
        for per_method in dataset.get("classification", {}).values():
            methods.extend(m for m in per_method if m not in methods)
    rows = []
    for name, dataset in datasets.items():
        for snr, per_method in sorted(dataset.get("classification", {}).items(), key=lambda kv: -_snr(kv[0])):
            cells = [str(name), str(snr)]
            for method in methods:
                scores = per_method.get(method)
                cells.append(
                    f"{scores['accuracy_mean']:.3f} ± {scores['accuracy_std']:.3f}" if scores else "–"
                )
            rows.append(cells)
    return ["dataset", "SNR", *methods], rows


def _summary_html(datasets: Mapping[str, Any]) -> str:
    """Render the summary table as HTML."""
    header, rows = summary_table(datasets)
    if len(header) == 2:
        return "<p>No classification results.</p>"
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return (
        "<h2>Summary: classification accuracy (mean ± std over tomogram folds)</h2>"
        f"<table><tr>{head}</tr>{body}</table>"
    )


def _dataset_figures(name: str, dataset: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    slug = "".join(c if c.isalnum() else "-" for c in name)
    figures = []
    classification = dataset.get("classification", {})
    class_names = dataset.get("class_names")
    if classification:
        figures.append(
            (f"{slug}-accuracy-vs-snr", f"{name}: accuracy against SNR", _accuracy_vs_snr(classification))
        )
        for snr, per_method in classification.items():
            figure_id = f"{slug}-confusion-snr-{snr}".replace(".", "p")
            figures.append(
                (figure_id, f"{name}: confusion matrices at SNR {snr}", _confusions(per_method, class_names))
            )
    if "embedding" in dataset:
        figures.append(
            (
                f"{slug}-embedding-map",
                f"{name}: embedding, first two principal components",
                _embedding_map(dataset["embedding"], class_names),
            )
        )
    if "alignment" in dataset:
        figures.append(
            (
                f"{slug}-rotation-errors",
                f"{name}: rotation errors per method",
                _rotation_histograms(dataset["alignment"]),
            )
        )
    averaging = dataset.get("averaging")
    if averaging:
        methods = averaging["methods"]
        figures.append((f"{slug}-fsc", f"{name}: half-map FSC per method", _fsc_curves(methods)))
        figures.append(
            (
                f"{slug}-resolution-vs-count",
                f"{name}: resolution against particles averaged",
                _resolution_vs_count(methods),
            )
        )
        figures.append(
            (
                f"{slug}-central-slices",
                f"{name}: central slices of the averages and the ground truth",
                _central_slices(averaging),
            )
        )
    return figures


def _accuracy_vs_snr(classification: Mapping[str, Mapping[str, Any]]) -> str:
    figure = Figure(figsize=(5, 3.5))
    axes = figure.subplots()
    levels = sorted(classification, key=_snr)
    finite = [_snr(level) for level in levels if math.isfinite(_snr(level))]
    clean_x = max(finite) * 3 if finite else 1.0
    xs = [_snr(level) if math.isfinite(_snr(level)) else clean_x for level in levels]
    methods = sorted({m for per in classification.values() for m in per})
    for method in methods:
        points = [
            (x, classification[level][method])
            for x, level in zip(xs, levels, strict=True)
            if method in classification[level]
        ]
        axes.errorbar(
            [p[0] for p in points],
            [p[1]["accuracy_mean"] for p in points],
            yerr=[p[1]["accuracy_std"] for p in points],
            marker="o",
            capsize=3,
            label=method,
        )
    axes.set_xscale("log")
    axes.set_xticks(
        xs, [("clean" if not math.isfinite(_snr(level)) else f"{_snr(level):g}") for level in levels]
    )
    axes.set_xlabel("SNR")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1.02)
    axes.legend(fontsize="small")
    return _png(figure)


def _confusions(per_method: Mapping[str, Mapping[str, Any]], class_names: list[str] | None) -> str:
    methods = list(per_method)
    figure = Figure(figsize=(3.2 * len(methods), 3.2))
    for axes, method in zip(np.atleast_1d(figure.subplots(1, len(methods))), methods, strict=True):
        confusion = np.asarray(per_method[method]["confusion"], dtype=float)
        rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
        axes.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        axes.set_title(method, fontsize="small")
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        if class_names is not None and len(class_names) <= 12:
            axes.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize="x-small")
            axes.set_yticks(range(len(class_names)), class_names, fontsize="x-small")
    return _png(figure)


def _embedding_map(embedding: Mapping[str, Any], class_names: list[str] | None) -> str:
    features, labels = np.asarray(embedding["features"]), np.asarray(embedding["labels"])
    points = PCA(n_components=2, random_state=0).fit_transform(features)
    figure = Figure(figsize=(4.5, 4))
    axes = figure.subplots()
    for label in np.unique(labels):
        chosen = labels == label
        text = class_names[label] if class_names is not None and label < len(class_names) else str(label)
        axes.scatter(points[chosen, 0], points[chosen, 1], s=6, label=text)
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    if len(np.unique(labels)) <= 12:
        axes.legend(fontsize="x-small", markerscale=2)
    return _png(figure)


def _rotation_histograms(alignment: Mapping[str, Mapping[str, Any]]) -> str:
    figure = Figure(figsize=(5, 3.5))
    axes = figure.subplots()
    bins = np.linspace(0, 180, 37).tolist()
    for method, values in alignment.items():
        axes.hist(
            np.asarray(values["rotation_error_deg"]),
            bins=bins,
            histtype="step",
            linewidth=1.5,
            label=f"{method} (median {values.get('rotation_error_median_deg', float('nan')):.1f}°)",
        )
    axes.set_xlabel("rotation error (°)")
    axes.set_ylabel("particles")
    axes.legend(fontsize="small")
    return _png(figure)


def _fsc_curves(methods: Mapping[str, Mapping[str, Any]]) -> str:
    figure = Figure(figsize=(5, 3.5))
    axes = figure.subplots()
    for method, values in methods.items():
        axes.plot(values["fsc_frequency"], values["fsc"], label=f"{method} ({values['resolution_A']:.1f} Å)")
    for threshold in (0.143, 0.5):
        axes.axhline(threshold, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("spatial frequency (1/voxel)")
    axes.set_ylabel("FSC")
    axes.legend(fontsize="small")
    return _png(figure)


def _resolution_vs_count(methods: Mapping[str, Mapping[str, Any]]) -> str:
    figure = Figure(figsize=(5, 3.5))
    axes = figure.subplots()
    for method, values in methods.items():
        axes.plot(values["counts"], values["resolution_vs_count_A"], marker="o", label=method)
    axes.set_xscale("log")
    axes.set_xlabel("particles averaged")
    axes.set_ylabel("resolution at FSC 0.143 (Å)")
    axes.legend(fontsize="small")
    return _png(figure)


def _central_slices(averaging: Mapping[str, Any]) -> str:
    maps = {"ground truth": np.asarray(averaging["ground_truth"])} | {
        method: np.asarray(values["average"]) for method, values in averaging["methods"].items()
    }
    figure = Figure(figsize=(2.2 * len(maps), 6.6))
    grid = np.atleast_2d(figure.subplots(3, len(maps)))
    for column, (title, volume) in enumerate(maps.items()):
        centre = [n // 2 for n in volume.shape]
        for row, (plane, label) in enumerate(
            [(volume[centre[0]], "z"), (volume[:, centre[1]], "y"), (volume[:, :, centre[2]], "x")]
        ):
            axes = grid[row, column]
            axes.imshow(plane, cmap="gray")
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(title, fontsize="small")
            if column == 0:
                axes.set_ylabel(f"central {label} slice", fontsize="small")
    return _png(figure)


def _png(figure: Figure) -> str:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _snr(level: Any) -> float:
    return float(level)


def _metrics_of(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """Everything but the figure-only arrays, JSON-ready."""

    def strip(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): strip(v) for k, v in value.items() if k not in _FIGURE_ONLY}
        return _jsonable(value)

    return strip(dataset)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "nan": JSON has no such numbers
    return value
