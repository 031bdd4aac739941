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

# Blur runs on a copy of the region shrunk to BLUR_DETAIL_PX / strength pixels on its long side,
# smoothed there and scaled back up: the look of a wide Gaussian at a tiny fraction of its cost.
BLUR_DETAIL_PX = 4.0
BLUR_MIN_WORK_SIDE_PX = 3
BLUR_SMOOTHING_SIGMA_PX = 1.0


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
    distance = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
    t = np.clip(1.0 - distance, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def blur_region(region_bgr: np.ndarray, strength: float) -> np.ndarray:
    """A strong blur: `strength` is roughly the Gaussian sigma as a share of the region's long side."""
    height, width = region_bgr.shape[:2]
    work_side = max(BLUR_MIN_WORK_SIDE_PX, round(BLUR_DETAIL_PX / strength))
    scale = min(1.0, work_side / max(height, width, 1))
    work_wh = (max(2, round(width * scale)), max(2, round(height * scale)))
    small = cv2.resize(region_bgr, work_wh, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=BLUR_SMOOTHING_SIGMA_PX, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def mosaic_region(region_bgr: np.ndarray, blocks_across: int) -> np.ndarray:
    height, width = region_bgr.shape[:2]
    blocks_x = max(1, min(blocks_across, width))
    blocks_y = max(1, min(height, round(blocks_across * height / max(width, 1))))
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

    def _replace(self, region_bgr: np.ndarray) -> np.ndarray:
        if self.method == "blur":
            return blur_region(region_bgr, self._config.blur_strength)
        if self.method == "mosaic":
            return mosaic_region(region_bgr, self._config.mosaic_blocks)
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
            mask = margin_fade_mask(region.shape[:2], core)[:, :, None]
            replaced = self._replace(region).astype(np.float32)
            blended = replaced * mask + region.astype(np.float32) * (1.0 - mask)
            out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out
