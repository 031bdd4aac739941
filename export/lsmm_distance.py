"""The perceptual distance of the LSMM report: LPIPS where it can run, else a named offline stand-in.

LPIPS comes from `streamd.evaluation.perceptual.scores.lpips_distance` (the `lpips` package with its
AlexNet weights already on the machine). Where it cannot run, the report uses the gradient-pyramid
distance below and names it as a stand-in in every output; it is not LPIPS and not comparable with
the paper's LPIPS values.

Gradient-pyramid distance: for each image, grey levels in [0, 1] at full, half and quarter size
(area resampling); at each level the Sobel gradient magnitude; the distance is the mean absolute
difference of the gradient magnitudes, averaged over the three levels.
"""

from __future__ import annotations

import dataclasses
import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)
_REPORTED_REASONS: set[str] = set()

STAND_IN_NAME = "gradient-pyramid distance (offline stand-in, not LPIPS)"
PYRAMID_LEVELS = 3


@dataclasses.dataclass(frozen=True)
class DistanceMetric:
    name: str
    is_lpips: bool
    note: str


def _gradients(bgr: np.ndarray) -> list[np.ndarray]:
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
    levels = []
    for _ in range(PYRAMID_LEVELS):
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
        levels.append(np.hypot(gx, gy))
        grey = cv2.resize(grey, (max(1, grey.shape[1] // 2), max(1, grey.shape[0] // 2)), interpolation=cv2.INTER_AREA)
    return levels


def gradient_pyramid_distance(a_bgr: np.ndarray, b_bgr: np.ndarray) -> np.ndarray:
    """(N,) stand-in distances between two batches of uint8 BGR images (N, H, W, 3)."""
    return np.array([np.mean([np.mean(np.abs(x - y)) for x, y in zip(_gradients(a), _gradients(b))])
                     for a, b in zip(a_bgr, b_bgr)], np.float64)


def perceptual_distance(a_bgr: np.ndarray, b_bgr: np.ndarray) -> tuple[np.ndarray, DistanceMetric]:
    """(N,) distances and which metric gave them: LPIPS when available, else the named stand-in."""
    reason = "streamd.evaluation.perceptual is not installed"
    try:
        from streamd.evaluation.perceptual.scores import lpips_distance, lpips_status
    except ImportError:
        lpips_distance = None
    if lpips_distance is not None:
        distances = lpips_distance(a_bgr, b_bgr, channel_order="bgr")
        if distances is not None:
            return distances, DistanceMetric("LPIPS (v0.1, AlexNet)", True, "lpips package with its AlexNet weights")
        reason = lpips_status().reason
    if reason not in _REPORTED_REASONS:
        _REPORTED_REASONS.add(reason)
        logger.info("LPIPS unavailable (%s); using the %s", reason, STAND_IN_NAME)
    return gradient_pyramid_distance(a_bgr, b_bgr), DistanceMetric(STAND_IN_NAME, False, f"LPIPS unavailable: {reason}")
