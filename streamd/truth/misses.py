"""Was a ground-truth face left recognisable? Per-instance miss scoring, false masks, size buckets.

A face instance is MISSED in a frame when the middle of its box (the central half of its width and
height, at least MIN_REGION_PX square) is structurally unchanged in the output: SSIM above
MISS_SSIM against the same region of the original frame (grey, Gaussian window 11x11, sigma 1.5,
as everywhere else in streamd). Before SSIM, both regions are brightened by the same factor, so
that the original region's mean is at least BRIGHTNESS_TARGET (at most MAX_GAIN times), and
smoothed with a 1 px Gaussian: in a dark noisy frame SSIM's constants would otherwise swamp the
face's faint structure, and the codec's loss of sensor noise would read as a change. Codec loss
alone keeps SSIM well above the threshold; any blur, mosaic or fill over the face middle drops it
far below.

False masks: the share of the frame, farther than one face box size from every ground-truth face,
whose grey value changed by more than FALSE_MASK_DIFF (codec loss stays below that).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

MISS_SSIM = 0.8
MIN_REGION_PX = 8
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
BRIGHTNESS_TARGET = 128.0
MAX_GAIN = 8.0
DENOISE_SIGMA = 1.0
FALSE_MASK_DIFF = 25
# Box widths (pixels) that start each size bucket; the last bucket is open-ended.
SIZE_EDGES_PX = (24, 48, 96)
SIZE_BUCKETS = ("<24", "24-48", "48-96", ">=96")


def size_bucket(width_px: float) -> str:
    """Size bucket of a face box by its width: <24, 24-48, 48-96 or >=96 px (lower edge inclusive)."""
    for edge, name in zip(SIZE_EDGES_PX, SIZE_BUCKETS):
        if width_px < edge:
            return name
    return SIZE_BUCKETS[-1]


def central_region(xyxy: Sequence[float], frame_wh: tuple[int, int], share: float = 0.5,
                   min_px: int = MIN_REGION_PX) -> tuple[int, int, int, int] | None:
    """Integer xyxy of the middle `share` of a box, grown to at least `min_px` square, inside the frame.

    None when the box lies outside the frame.
    """
    width, height = frame_wh
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w = max((x1 - x0) * share, min_px) / 2
    half_h = max((y1 - y0) * share, min_px) / 2
    rx0, ry0 = int(round(cx - half_w)), int(round(cy - half_h))
    rx1, ry1 = int(round(cx + half_w)), int(round(cy + half_h))
    rx0, ry0, rx1, ry1 = max(rx0, 0), max(ry0, 0), min(rx1, width), min(ry1, height)
    if rx1 - rx0 < 2 or ry1 - ry0 < 2:
        return None
    return rx0, ry0, rx1, ry1


def to_grey(bgr: np.ndarray) -> np.ndarray:
    return bgr if bgr.ndim == 2 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def region_ssim(original_grey: np.ndarray, output_grey: np.ndarray, region_xyxy: tuple[int, int, int, int],
                normalise: bool = True) -> float:
    """Mean SSIM over `region_xyxy`; the Gaussian windows see the frame around the region too.

    With `normalise`, both crops are first brightened alike (original region mean to at least
    BRIGHTNESS_TARGET, gain at most MAX_GAIN) and smoothed with a DENOISE_SIGMA Gaussian.
    """
    x0, y0, x1, y1 = region_xyxy
    pad = SSIM_WINDOW // 2 + 3
    height, width = original_grey.shape[:2]
    px0, py0, px1, py1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, width), min(y1 + pad, height)
    a = original_grey[py0:py1, px0:px1].astype(np.float64)
    b = output_grey[py0:py1, px0:px1].astype(np.float64)
    if normalise:
        mean = float(original_grey[y0:y1, x0:x1].mean())
        gain = min(MAX_GAIN, max(1.0, BRIGHTNESS_TARGET / max(mean, 1.0)))
        a = cv2.GaussianBlur(a * gain, (0, 0), DENOISE_SIGMA, borderType=cv2.BORDER_REFLECT)
        b = cv2.GaussianBlur(b * gain, (0, 0), DENOISE_SIGMA, borderType=cv2.BORDER_REFLECT)

    def smooth(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = smooth(a), smooth(b)
    var_a = smooth(a * a) - mu_a * mu_a
    var_b = smooth(b * b) - mu_b * mu_b
    cov = smooth(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (var_a + var_b + SSIM_C2)
    )
    inner = ssim_map[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
    return float(inner.mean())


@dataclass(frozen=True)
class InstanceScore:
    frame: int
    id: int
    width_px: float
    ssim: float
    missed: bool


def score_instance(original_grey: np.ndarray, output_grey: np.ndarray, frame: int, track_id: int,
                   xyxy: Sequence[float], threshold: float = MISS_SSIM) -> InstanceScore | None:
    """Missed or not, for one face box in one frame; None when the box is outside the frame."""
    frame_wh = (original_grey.shape[1], original_grey.shape[0])
    region = central_region(xyxy, frame_wh)
    if region is None:
        return None
    ssim = region_ssim(original_grey, output_grey, region)
    return InstanceScore(frame, track_id, float(xyxy[2]) - float(xyxy[0]), ssim, ssim > threshold)


def far_from_faces_mask(frame_hw: tuple[int, int], faces_xyxy: Iterable[Sequence[float]]) -> np.ndarray:
    """True where a pixel is farther than one box size (width sideways, height up/down) from every face."""
    height, width = frame_hw
    far = np.ones((height, width), bool)
    for x0, y0, x1, y1 in faces_xyxy:
        w, h = x1 - x0, y1 - y0
        ex0, ey0 = max(int(np.floor(x0 - w)), 0), max(int(np.floor(y0 - h)), 0)
        ex1, ey1 = min(int(np.ceil(x1 + w)), width), min(int(np.ceil(y1 + h)), height)
        if ex1 > ex0 and ey1 > ey0:
            far[ey0:ey1, ex0:ex1] = False
    return far


def false_mask_share(original_grey: np.ndarray, output_grey: np.ndarray,
                     faces_xyxy: Iterable[Sequence[float]], diff_threshold: int = FALSE_MASK_DIFF) -> float:
    """Share of the whole frame (0..1) that changed by more than `diff_threshold` far from every face."""
    far = far_from_faces_mask(original_grey.shape[:2], faces_xyxy)
    changed = np.abs(original_grey.astype(np.int16) - output_grey.astype(np.int16)) > diff_threshold
    return float(np.count_nonzero(changed & far)) / changed.size


@dataclass
class Tally:
    """Missed out of scored, for one group of instances."""

    missed: int = 0
    total: int = 0

    def add(self, missed: bool) -> None:
        self.total += 1
        self.missed += int(missed)

    @property
    def missed_pct(self) -> float | None:
        return 100.0 * self.missed / self.total if self.total else None

    def as_dict(self) -> dict[str, object]:
        return {"missed": self.missed, "total": self.total, "missed_pct": self.missed_pct}


def tally_by_bucket(widths_and_missed: Iterable[tuple[float, bool]]) -> dict[str, Tally]:
    """Per size bucket (every bucket present, possibly empty)."""
    tallies = {name: Tally() for name in SIZE_BUCKETS}
    for width, missed in widths_and_missed:
        tallies[size_bucket(width)].add(missed)
    return tallies
