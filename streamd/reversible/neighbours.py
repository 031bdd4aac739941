"""Which face owns a pixel where the regions of several faces overlap.

A sealed region (the face box grown by the anonymizer's margin) often holds part of a neighbour's
face. Each pixel inside two or more regions belongs to exactly one face: the one whose box centre is
nearest, in units of that box's size (Chebyshev: max(|dx| / w, |dy| / h)), lower track id on a tie.
So a pixel inside one face's box and only the margin of another belongs to the first. The sealer
blanks, in each face's payload, the pixels owned by other faces (their own payloads carry them), and
restore pastes only the pixels a face owns. Restoring one track therefore never reveals a neighbour's
face, even when the neighbour's metadata is removed. Sealer and restore use these same functions on
the same quantized geometry, so they agree pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BLANK_VALUE = 128


@dataclass(frozen=True)
class FaceArea:
    """One face of a frame: its track, its sealed region (integer xyxy) and its box (xyxy, pixels)."""

    track_id: int
    region_xyxy: tuple[int, int, int, int]
    box_xyxy: tuple[float, float, float, float]


def _distance(area: FaceArea, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = area.box_xyxy
    width, height = max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)
    centre_x, centre_y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return np.maximum(np.abs(xs + 0.5 - centre_x) / width, np.abs(ys + 0.5 - centre_y) / height)


def owned_mask(area: FaceArea, others: Sequence[FaceArea]) -> np.ndarray:
    """Boolean mask over `area.region_xyxy` (rows, columns): True where the pixel belongs to `area`."""
    x0, y0, x1, y1 = area.region_xyxy
    mask = np.ones((max(0, y1 - y0), max(0, x1 - x0)), dtype=bool)
    for other in others:
        if other.track_id == area.track_id:
            continue
        ox0, oy0 = max(x0, other.region_xyxy[0]), max(y0, other.region_xyxy[1])
        ox1, oy1 = min(x1, other.region_xyxy[2]), min(y1, other.region_xyxy[3])
        if ox1 <= ox0 or oy1 <= oy0:
            continue
        ys, xs = np.mgrid[oy0:oy1, ox0:ox1].astype(np.float64)
        mine, theirs = _distance(area, xs, ys), _distance(other, xs, ys)
        lost = (theirs < mine) | ((theirs == mine) & (other.track_id < area.track_id))
        mask[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0] &= ~lost
    return mask


def overlapping_neighbours(areas: Sequence[FaceArea]) -> list[list[FaceArea]]:
    """For each area, the other areas whose regions overlap its own: the only ones `owned_mask` can
    take pixels from (found for the whole frame at once rather than pair by pair)."""
    if len(areas) < 2:
        return [[] for _ in areas]
    regions = np.array([area.region_xyxy for area in areas], dtype=np.int64)
    across = np.minimum(regions[:, None, 2], regions[None, :, 2]) > np.maximum(regions[:, None, 0], regions[None, :, 0])
    down = np.minimum(regions[:, None, 3], regions[None, :, 3]) > np.maximum(regions[:, None, 1], regions[None, :, 1])
    overlap = across & down
    np.fill_diagonal(overlap, False)
    return [[areas[other] for other in np.flatnonzero(row)] for row in overlap]


def blank_neighbours(crop_bgr: np.ndarray, area: FaceArea, others: Sequence[FaceArea]) -> np.ndarray:
    """A copy of `crop_bgr` (the pixels of `area.region_xyxy`) with the pixels of other faces blanked."""
    mask = owned_mask(area, others)
    if mask.all():
        return crop_bgr
    blanked = crop_bgr.copy()
    blanked[~mask] = BLANK_VALUE
    return blanked
