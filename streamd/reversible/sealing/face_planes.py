"""A face region cut from the decoded source's yuv420p planes, on the chroma grid, neighbours blanked.

The cut spans the region grown to even coordinates, (x0 & ~1, y0 & ~1) to ((x1 + 1) & ~1, (y1 + 1) & ~1),
so every 2x2 chroma block of it is one of the frame's and the region sits at its
`streamd.reversible.sealing.face_stream.chroma_offset`, as `FaceStreamEncoder.encode` places a BGR region. A
pixel added to reach the grid repeats the region's edge pixel, and a chroma block it falls in repeats
the block inside the region next to it, so nothing outside the region is sealed. Pixels of the region
that belong to another face (`streamd.reversible.neighbours`) are blanked, and so is the chroma of
every block holding one of them: restore pastes a chroma sample only where a face owns all four
pixels of its block, so the blanked samples are never needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamd.reversible.neighbours import BLANK_VALUE, FaceArea, owned_mask
from streamd.types import Yuv420Planes


def _repeat_edges(plane: np.ndarray, left: int, top: int, right: int, bottom: int) -> None:
    """Overwrite the added outer column/row of `plane` with the one next to it (in place)."""
    if left and plane.shape[1] > 1:
        plane[:, 0] = plane[:, 1]
    if right and plane.shape[1] > 1:
        plane[:, -1] = plane[:, -2]
    if top and plane.shape[0] > 1:
        plane[0] = plane[1]
    if bottom and plane.shape[0] > 1:
        plane[-1] = plane[-2]


def region_planes(planes: Yuv420Planes, area: FaceArea,
                  others: Sequence[FaceArea]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V of `area.region_xyxy` on the chroma grid (copies), with other faces' pixels blanked."""
    x0, y0, x1, y1 = area.region_xyxy
    gx0, gy0, gx1, gy1 = x0 & ~1, y0 & ~1, (x1 + 1) & ~1, (y1 + 1) & ~1
    left, top, right, bottom = x0 - gx0, y0 - gy0, gx1 - x1, gy1 - y1
    luma = planes.y[gy0:gy1, gx0:gx1].copy()
    chroma = [plane[gy0 // 2:gy1 // 2, gx0 // 2:gx1 // 2].copy() for plane in (planes.u, planes.v)]
    mask = owned_mask(area, others)
    whole_blocks: np.ndarray | None = None
    if not mask.all():
        luma[top:top + y1 - y0, left:left + x1 - x0][~mask] = BLANK_VALUE
        grid_mask = np.pad(mask, ((top, bottom), (left, right)), mode="edge")
        whole_blocks = grid_mask.reshape(grid_mask.shape[0] // 2, 2, grid_mask.shape[1] // 2, 2).all(axis=(1, 3))
    _repeat_edges(luma, left, top, right, bottom)
    for plane in chroma:
        _repeat_edges(plane, left, top, right, bottom)
        if whole_blocks is not None:
            plane[~whole_blocks] = BLANK_VALUE
    return luma, chroma[0], chroma[1]
