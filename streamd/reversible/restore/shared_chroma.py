"""Chroma for the pixels a face owns in 2x2 blocks it shares with a neighbour.

A yuv420p chroma sample covers a 2x2 block of pixels. Where a neighbour's region overlaps a face's,
the pixels of a block can belong to two faces (`streamd.reversible.neighbours`), and the sample
mixes both: the sealer blanks it in both payloads, so that no payload carries any of a neighbour's
colour (`streamd.reversible.sealing.face_planes`). Pasted as it is, a blanked sample would give the
face's own pixels along the border between the two faces grey colour (or leave the anonymized colour
there), a seam through the restored face.

Restore therefore estimates these samples from the face's own samples next to them (the mean of the
known neighbours of each sample, repeated outward while samples are left to fill). The estimate
uses nothing but the face's own pixels, so it reveals nothing of the neighbour, and colour is
smooth enough at that scale that the seam all but disappears.
"""

from __future__ import annotations

import av
import cv2
import numpy as np

from streamd.reversible.sealing.face_stream import FACE_PIXEL_FORMAT, DecodedCanvas, chroma_offset

#: How many rings of samples outward an estimate may reach; a seam is one or two samples wide.
FILL_PASSES = 4
_NEIGHBOURS = np.ones((3, 3), dtype=np.float32)


def shared_blocks(mask: np.ndarray, region_xyxy: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Over the region's chroma blocks (the region grown to even frame coordinates): blocks whose four
    pixels the face owns, and blocks it owns only some pixels of. A pixel added to reach the grid
    counts as the region's edge pixel next to it, as the sealer treats it."""
    left, top = chroma_offset(region_xyxy)
    _, _, x1, y1 = region_xyxy
    right, bottom = x1 & 1, y1 & 1
    grid = np.pad(mask, ((top, bottom), (left, right)), mode="edge")
    blocks = grid.reshape(grid.shape[0] // 2, 2, grid.shape[1] // 2, 2)
    whole = blocks.all(axis=(1, 3))
    return whole, blocks.any(axis=(1, 3)) & ~whole


def fill_shared_chroma(canvas: DecodedCanvas, region_xyxy: tuple[int, int, int, int],
                       mask: np.ndarray | None) -> DecodedCanvas:
    """`canvas` with the chroma of the blocks the face shares with a neighbour estimated from its
    own; `canvas` itself when it shares none (or is a 4:4:4 canvas of an earlier recording, whose
    region was never blanked this way)."""
    if mask is None or mask.all() or not canvas.chroma_420 or canvas.frame is None:
        return canvas
    whole, shared = shared_blocks(mask, region_xyxy)
    if not shared.any() or not whole.any():
        return canvas
    stacked = canvas.frame.to_ndarray()
    height, width = canvas.frame.height, canvas.frame.width
    chroma = stacked[height:].reshape(2, height // 2, width // 2)
    rows, columns = whole.shape
    for plane in chroma:
        area = plane[:rows, :columns]
        area[:] = _filled(area, whole, shared)
    frame = av.VideoFrame.from_ndarray(stacked, format=FACE_PIXEL_FORMAT)
    planes = canvas.planes.copy()
    planes[1:] = chroma.repeat(2, axis=1).repeat(2, axis=2)
    return DecodedCanvas(planes, chroma_420=True, frame=frame)


def _filled(samples: np.ndarray, known: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """`samples` with each `wanted` sample set to the mean of its known 8-neighbours, ring by ring."""
    values = samples.astype(np.float32)
    known = known.copy()
    wanted = wanted & ~known
    for _ in range(FILL_PASSES):
        if not wanted.any():
            break
        weights = known.astype(np.float32)
        sums = cv2.filter2D(values * weights, -1, _NEIGHBOURS, borderType=cv2.BORDER_CONSTANT)
        counts = cv2.filter2D(weights, -1, _NEIGHBOURS, borderType=cv2.BORDER_CONSTANT)
        reached = wanted & (counts > 0)
        values[reached] = sums[reached] / counts[reached]
        known |= reached
        wanted &= ~reached
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
