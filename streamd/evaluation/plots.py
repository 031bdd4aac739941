"""Report plots with matplotlib (the 'eval' extra): identity distance histograms and PSNR spread."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

HISTOGRAM_BINS = 20
FIGURE_SIZE_IN = (7.0, 4.0)
FIGURE_DPI = 110


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib (pip install matplotlib, part of the 'eval' extra)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def distance_histogram(path: Path, distances_by_series: Mapping[str, Sequence[float]], threshold: float,
                       title: str) -> None:
    """Overlaid histograms of identity distances, one series per method, with the threshold line."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=FIGURE_SIZE_IN)
    upper = max([threshold * 2, *(max(values) for values in distances_by_series.values() if values)])
    bins = [upper * i / HISTOGRAM_BINS for i in range(HISTOGRAM_BINS + 1)]
    for label, values in distances_by_series.items():
        if values:
            axes.hist(values, bins=bins, alpha=0.55, label=f"{label} (n={len(values)})")
    axes.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=f"threshold {threshold}")
    axes.set_xlabel("dlib identity distance to the original (Euclidean)")
    axes.set_ylabel("faces")
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=FIGURE_DPI)
    pyplot.close(figure)


def psnr_distribution(path: Path, psnr_by_series: Mapping[str, Sequence[float]], title: str) -> None:
    """Restore PSNR per face, one strip per method; exact restores (infinite PSNR) are counted in the label."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=FIGURE_SIZE_IN)
    labels = []
    for position, (label, values) in enumerate(psnr_by_series.items()):
        finite = [value for value in values if math.isfinite(value)]
        exact = len(values) - len(finite)
        labels.append(f"{label}\n{exact} exact (inf dB)" if exact else label)
        if finite:
            axes.boxplot(finite, positions=[position], widths=0.5)
            axes.scatter([position] * len(finite), finite, s=12, alpha=0.7)
    axes.set_xticks(range(len(labels)), labels, fontsize=8)
    axes.set_ylabel("restored face PSNR (dB)")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=FIGURE_DPI)
    pyplot.close(figure)
