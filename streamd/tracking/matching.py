"""Greedy IoU assignment of detections to tracks."""

from __future__ import annotations

import numpy as np


def greedy_iou_matches(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(row, column) pairs, highest IoU first, each row and column used once, IoU at least `min_iou`."""
    if iou.size == 0:
        return []
    rows, cols = np.nonzero(iou >= min_iou)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    matches: list[tuple[int, int]] = []
    for index in order:
        row, col = int(rows[index]), int(cols[index])
        if row in used_rows or col in used_cols:
            continue
        used_rows.add(row)
        used_cols.add(col)
        matches.append((row, col))
    return matches
