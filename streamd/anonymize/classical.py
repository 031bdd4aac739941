"""Irreversible classical replacements: Gaussian blur, mosaic and a solid fill.

Each face box is grown by `margin` and replaced under a feathered mask whose full-strength core covers
the whole detected box, so the soft edge only ever falls on the margin. Faces are pasted smallest first.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from streamd.align import expand_box, paste_order
from streamd.anonymize.base import FaceAnonymizer
from streamd.config import AnonymizerConfig
from streamd.types import TrackedFace

# Blur: a Gaussian whose sigma is `blur_strength` times the face box width, never below
# BLUR_MIN_SIGMA_PX, so a small face loses its detail as surely as a large one. A wide Gaussian is
# run on a copy of the region shrunk until the sigma there is BLUR_WORK_SIGMA_PX, then scaled back
# up: the same look at a cost that stays flat with the face size.
BLUR_MIN_SIGMA_PX = 3.0
BLUR_WORK_SIGMA_PX = 2.0
# Mosaic: `mosaic_blocks` blocks across the face box width, but never blocks under MOSAIC_MIN_BLOCK_PX
# on a side: a small face gets fewer, larger blocks (a 16 px face two across), not a copy of itself.
MOSAIC_MIN_BLOCK_PX = 8.0


def margin_fade_mask(region_hw: tuple[int, int], core_xyxy: np.ndarray) -> np.ndarray:
    """Float32 mask over a region: 1 inside `core_xyxy` (region coordinates), fading to 0 at the edge.

    The fade follows rounded-rectangle level sets, so corners are soft too.
    """
    height, width = region_hw
    x0, y0, x1, y1 = (float(v) for v in core_xyxy)
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    margin_left, margin_right = max(x0, 1.0), max(width - x1, 1.0)
    margin_top, margin_bottom = max(y0, 1.0), max(height - y1, 1.0)
    dx = np.maximum(np.maximum(x0 - xs, 0) / margin_left, np.maximum(xs - x1, 0) / margin_right)
    dy = np.maximum(np.maximum(y0 - ys, 0) / margin_top, np.maximum(ys - y1, 0) / margin_bottom)
    t = np.add.outer(dy * dy, dx * dx)
    np.sqrt(t, out=t)
    np.subtract(1.0, t, out=t)
    np.clip(t, 0.0, 1.0, out=t)
    # smoothstep t * t * (3 - 2 t)
    return t * t * (3.0 - 2.0 * t)


def blur_sigma_px(face_width_px: float, strength: float) -> float:
    """The Gaussian sigma, in pixels, that blurs a face box `face_width_px` wide."""
    return max(BLUR_MIN_SIGMA_PX, strength * face_width_px)


def blur_region(region_bgr: np.ndarray, sigma_px: float) -> np.ndarray:
    """The region under a Gaussian blur of `sigma_px` pixels, run at reduced resolution when wide."""
    height, width = region_bgr.shape[:2]
    scale = min(1.0, BLUR_WORK_SIGMA_PX / sigma_px)
    work_wh = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = region_bgr if work_wh == (width, height) else cv2.resize(region_bgr, work_wh, interpolation=cv2.INTER_AREA)
    sigma_x, sigma_y = sigma_px * work_wh[0] / width, sigma_px * work_wh[1] / height
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y, borderType=cv2.BORDER_REFLECT)
    if small.shape[:2] == (height, width):
        return small
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def mosaic_blocks_per_face(face_width_px: float, blocks_per_face: int) -> int:
    """Blocks across the face box: `blocks_per_face`, fewer where they would be under MOSAIC_MIN_BLOCK_PX."""
    return max(1, min(blocks_per_face, int(face_width_px // MOSAIC_MIN_BLOCK_PX)))


def mosaic_face_region(region_bgr: np.ndarray, core_xyxy: np.ndarray, blocks_per_face: int) -> np.ndarray:
    """The region as square blocks on a grid anchored at the face box (`core_xyxy`, region coordinates),
    so the box holds `mosaic_blocks_per_face` whole blocks across wherever it lies on the pixel grid."""
    height, width = region_bgr.shape[:2]
    x0, y0, x1, _ = (float(v) for v in core_xyxy)
    block = max(x1 - x0, 1.0) / mosaic_blocks_per_face(x1 - x0, blocks_per_face)
    # the grid extended over the whole region, and the border that makes the region fit it
    grid_x0, grid_y0 = x0 - np.ceil(x0 / block) * block, y0 - np.ceil(y0 / block) * block
    blocks_x = max(1, int(np.ceil((width - grid_x0) / block - 1e-6)))
    blocks_y = max(1, int(np.ceil((height - grid_y0) / block - 1e-6)))
    left, top = int(np.ceil(-grid_x0 - 1e-6)), int(np.ceil(-grid_y0 - 1e-6))
    right = max(0, int(np.ceil(grid_x0 + blocks_x * block - width - 1e-6)))
    bottom = max(0, int(np.ceil(grid_y0 + blocks_y * block - height - 1e-6)))
    padded = cv2.copyMakeBorder(region_bgr, top, bottom, left, right, cv2.BORDER_REFLECT)
    small = cv2.resize(padded, (blocks_x, blocks_y), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (padded.shape[1], padded.shape[0]), interpolation=cv2.INTER_NEAREST)
    return big[top:top + height, left:left + width]


def mosaic_region(region_bgr: np.ndarray, blocks_across: int) -> np.ndarray:
    """The whole region as `blocks_across` blocks across and as many down as keep them about square."""
    height, width = region_bgr.shape[:2]
    blocks_x = max(1, min(blocks_across, width))
    blocks_y = max(1, min(height, round(blocks_x * height / max(width, 1))))
    small = cv2.resize(region_bgr, (blocks_x, blocks_y), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def solid_region(region_bgr: np.ndarray, fill_bgr: tuple[int, int, int]) -> np.ndarray:
    return np.full_like(region_bgr, fill_bgr, dtype=np.uint8)


class RegionAnonymizer(FaceAnonymizer):
    """Blur, mosaic or solid fill of each face region."""

    def __init__(self, config: AnonymizerConfig) -> None:
        if config.method not in ("blur", "mosaic", "solid"):
            raise ValueError(f"RegionAnonymizer does not handle method {config.method!r}")
        self.method = config.method
        self._config = config

    def region_of(self, face: TrackedFace, frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
        return expand_box(face.xyxy, self._config.margin, frame_wh)

    def _replace(self, region_bgr: np.ndarray, core_xyxy: np.ndarray, face_width_px: float) -> np.ndarray:
        if self.method == "blur":
            return blur_region(region_bgr, blur_sigma_px(face_width_px, self._config.blur_strength))
        if self.method == "mosaic":
            return mosaic_face_region(region_bgr, core_xyxy, self._config.mosaic_blocks)
        return solid_region(region_bgr, self._config.solid_bgr)

    def apply(self, bgr: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
        out = bgr.copy()
        frame_wh = (bgr.shape[1], bgr.shape[0])
        for index in paste_order(faces):
            face = faces[index]
            x0, y0, x1, y1 = self.region_of(face, frame_wh)
            if x1 <= x0 or y1 <= y0:
                continue
            region = out[y0:y1, x0:x1]
            core = np.asarray(face.xyxy, np.float32) - np.array([x0, y0, x0, y0], np.float32)
            mask = margin_fade_mask(region.shape[:2], core)
            # the face's own width, not the clipped region's: a face at the frame edge is masked as strongly
            replaced = self._replace(region, core, float(face.xyxy[2] - face.xyxy[0]))
            out[y0:y1, x0:x1] = cv2.blendLinear(replaced, region, mask, 1.0 - mask)
        return out
