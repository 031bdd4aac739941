"""Pictures for the truth benchmark report: missed faces per size bucket (bar chart) and a contact
sheet of missed instances (original crop | output crop)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamd.contact_sheet import write_contact_sheet
from streamd.errors import StreamdError
from streamd.truth.misses import SIZE_BUCKETS
from streamd.truth.runner import RunResult

logger = logging.getLogger(__name__)

SHEET_ROWS = 24
TILE_WH = (260, 180)
PAIRS_PER_ROW = 2


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise StreamdError("the truth report plot needs matplotlib: pip install 'streamd[eval]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def misses_plot(path: Path, report: dict[str, object]) -> None:
    """Grouped bars: missed % per size bucket, one bar per run, instance counts on top."""
    pyplot = _pyplot()
    runs: dict[str, dict] = report["runs"]  # type: ignore[assignment]
    figure, axes = pyplot.subplots(figsize=(8.0, 4.2))
    width = 0.8 / max(len(runs), 1)
    positions = np.arange(len(SIZE_BUCKETS))
    for index, (label, run) in enumerate(runs.items()):
        values = [run["by_size"][name]["missed_pct"] or 0.0 for name in SIZE_BUCKETS]
        bars = axes.bar(positions + (index - (len(runs) - 1) / 2) * width, values, width, label=label)
        for bar, name in zip(bars, SIZE_BUCKETS):
            tally = run["by_size"][name]
            if tally["total"]:
                axes.annotate(f"{tally['missed']}/{tally['total']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                              ha="center", va="bottom", fontsize=7)
    axes.set_xticks(positions, [f"{name} px" for name in SIZE_BUCKETS])
    axes.set_xlabel("ground-truth face box width")
    axes.set_ylabel("missed faces (%)")
    axes.set_ylim(0, 105)
    axes.set_title("Faces left recognisable, per size")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def missed_contact_sheet(path: Path, results: Sequence[RunResult], rows: int = SHEET_ROWS) -> bool:
    """Up to `rows` missed instances spread over runs and sizes (largest first: the worst leaks).
    Returns False (and writes nothing) when nothing was missed."""
    candidates = []
    for result in results:
        ordered = sorted(result.missed_crops, key=lambda item: -item[0].width_px)
        candidates.append([(result.spec.label, *item) for item in ordered])
    picked = []
    while len(picked) < rows and any(candidates):
        for queue in candidates:
            if queue and len(picked) < rows:
                picked.append(queue.pop(0))
    if not picked:
        return False
    tiles = []
    for label, record, original, output in picked:
        caption = f"{record.clip} f{record.frame} id{record.id} w{record.width_px:.0f}"
        tiles += [(caption, original), (f"{label} ssim {record.ssim:.2f}", output)]
    step = 2 * PAIRS_PER_ROW
    sheet_rows = [tiles[start : start + step] for start in range(0, len(tiles), step)]
    write_contact_sheet(path, sheet_rows, TILE_WH)
    return True
