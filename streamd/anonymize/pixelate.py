"""Pixelation of the face region of an aligned crop, the target domain of the CycleGAN method.

Paper (reversible anonymization by cyclic learning, section 4.3): the face region of M x N pixels is
pixelated with square blocks of min(M, N) / 20 pixels on a side. In an aligned crop the face region is
fixed by the canonical landmarks (`canonical_face_box`), so no detector is needed to build the domain.
Pure functions on uint8 BGR arrays.
"""

from __future__ import annotations

import numpy as np

from streamd.align import canonical_kps5

# Blocks along the shorter side of the face region (the paper's min(M, N) / 20).
PAPER_BLOCKS_PER_SIDE = 20
# The face region around the five canonical landmarks, as fractions of the landmarks' extent:
# eyebrows and forehead above the eyes, the chin below the mouth, the cheeks beside the eyes.
FACE_BOX_SIDE_MARGIN = 0.5
FACE_BOX_TOP_MARGIN = 0.9
FACE_BOX_BOTTOM_MARGIN = 0.45


def canonical_face_box(crop_size: int) -> tuple[int, int, int, int]:
    """Integer xyxy face region of a `crop_size` aligned crop, from the canonical landmarks."""
    kps = canonical_kps5(crop_size)
    x0, y0 = kps.min(axis=0)
    x1, y1 = kps.max(axis=0)
    width, height = x1 - x0, y1 - y0
    box = (
        int(np.floor(x0 - FACE_BOX_SIDE_MARGIN * width)),
        int(np.floor(y0 - FACE_BOX_TOP_MARGIN * height)),
        int(np.ceil(x1 + FACE_BOX_SIDE_MARGIN * width)),
        int(np.ceil(y1 + FACE_BOX_BOTTOM_MARGIN * height)),
    )
    return (max(0, box[0]), max(0, box[1]), min(crop_size, box[2]), min(crop_size, box[3]))


def pixel_block_size(region_wh: tuple[int, int], blocks_per_side: int = PAPER_BLOCKS_PER_SIDE) -> int:
    """Side of a pixelation block for a region of `region_wh`: min(M, N) / blocks_per_side, at least 1."""
    if blocks_per_side < 1:
        raise ValueError(f"blocks_per_side must be >= 1, got {blocks_per_side}")
    width, height = region_wh
    if width < 1 or height < 1:
        raise ValueError(f"the region must be at least 1x1, got {region_wh}")
    return max(1, int(round(min(width, height) / blocks_per_side)))


def pixelate_region(
    bgr: np.ndarray, box_xyxy: tuple[int, int, int, int], blocks_per_side: int = PAPER_BLOCKS_PER_SIDE
) -> np.ndarray:
    """A copy of `bgr` whose `box_xyxy` region is replaced by block means (blocks from its top-left)."""
    x0, y0, x1, y1 = box_xyxy
    height, width = bgr.shape[:2]
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {box_xyxy} is not inside the {width}x{height} image")
    block = pixel_block_size((x1 - x0, y1 - y0), blocks_per_side)
    out = bgr.copy()
    region = bgr[y0:y1, x0:x1].astype(np.float32)
    target = out[y0:y1, x0:x1]
    for top in range(0, y1 - y0, block):
        for left in range(0, x1 - x0, block):
            cell = region[top:top + block, left:left + block]
            target[top:top + block, left:left + block] = np.round(cell.reshape(-1, cell.shape[-1]).mean(axis=0))
    return out


def pixelate_face_crop(crop_bgr: np.ndarray, blocks_per_side: int = PAPER_BLOCKS_PER_SIDE) -> np.ndarray:
    """An aligned square crop pixelated over its canonical face region."""
    size = crop_bgr.shape[0]
    if crop_bgr.shape[1] != size:
        raise ValueError(f"the crop must be square, got {crop_bgr.shape[:2]}")
    return pixelate_region(crop_bgr, canonical_face_box(size), blocks_per_side)
