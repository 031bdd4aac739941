"""Greedy assignment of detections to tracks: by IoU, then by distance for what IoU left over."""

from __future__ import annotations

import numpy as np


def greedy_iou_matches(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(row, column) pairs, highest IoU first, each row and column used once, IoU at least `min_iou`."""
    if iou.size == 0:
        return []
    rows, cols = np.nonzero(iou >= min_iou)
    return _greedy_pairs(rows, cols, np.argsort(-iou[rows, cols], kind="stable"))


def _greedy_pairs(rows: np.ndarray, cols: np.ndarray, order: np.ndarray) -> list[tuple[int, int]]:
    """The candidate (row, column) pairs taken in `order`, each row and column used once."""
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


# A nearby match needs sizes within this factor of each other.
MAX_SIZE_RATIO = 1.6
# Only tracks narrower than this are matched by distance: a bigger face moving more than its own width
# between two detections is rare, and a near neighbour's detection would take its track away.
NEARBY_MAX_TRACK_WIDTH_PX = 48.0


def greedy_nearby_matches(
    track_xyxy: np.ndarray, detection_xyxy: np.ndarray, max_distance_widths: float,
    skip_rows: set[int], skip_cols: set[int],
) -> list[tuple[int, int]]:
    """(track, detection) pairs, nearest first, for boxes IoU did not match: a detection whose centre
    lies within `max_distance_widths` track widths of a small track's centre, at a similar size (a small
    face that moved more than its own width since the track last saw it). Rows and columns in the skip
    sets are taken already."""
    if max_distance_widths <= 0 or track_xyxy.size == 0 or detection_xyxy.size == 0:
        return []
    track_centres = (track_xyxy[:, :2] + track_xyxy[:, 2:]) / 2
    detection_centres = (detection_xyxy[:, :2] + detection_xyxy[:, 2:]) / 2
    track_widths = np.maximum(track_xyxy[:, 2] - track_xyxy[:, 0], 1.0)
    detection_widths = np.maximum(detection_xyxy[:, 2] - detection_xyxy[:, 0], 1.0)
    distance = np.linalg.norm(track_centres[:, None] - detection_centres[None], axis=2) / track_widths[:, None]
    size_ratio = np.maximum(track_widths[:, None] / detection_widths[None], detection_widths[None] / track_widths[:, None])
    small = track_widths < NEARBY_MAX_TRACK_WIDTH_PX
    eligible = (distance <= max_distance_widths) & (size_ratio <= MAX_SIZE_RATIO) & small[:, None]
    eligible[list(skip_rows), :] = False
    eligible[:, list(skip_cols)] = False
    rows, cols = np.nonzero(eligible)
    return _greedy_pairs(rows, cols, np.argsort(distance[rows, cols], kind="stable"))
