"""Dark-frame normalisation before detection: a gamma curve that lifts a dark input to mid-grey.

Only the detector's input is changed; the frame that is anonymized and published is not. The curve
is chosen from the input's mean brightness, so a normally lit input passes unchanged.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Inputs darker than this mean grey level (0-255) are brightened.
DARK_MEAN_LEVEL = 80.0
# A brightened input's mean grey level.
TARGET_MEAN_LEVEL = 115.0
# Brightness is measured on an input shrunk to about this many pixels across.
PROBE_WIDTH_PX = 64


def mean_brightness(bgr: np.ndarray) -> float:
    """Mean grey level of an image, measured on a small copy."""
    height, width = bgr.shape[:2]
    factor = max(1, width // PROBE_WIDTH_PX)
    return float(cv2.cvtColor(bgr[::factor, ::factor], cv2.COLOR_BGR2GRAY).mean())


def gamma_for(mean_level: float) -> float | None:
    """The gamma that takes `mean_level` to the target, or None when the image is not dark."""
    if mean_level >= DARK_MEAN_LEVEL:
        return None
    mean_level = max(mean_level, 2.0)
    return math.log(TARGET_MEAN_LEVEL / 255.0) / math.log(mean_level / 255.0)


def _gamma_table(gamma: float) -> np.ndarray:
    levels = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(np.round(255.0 * levels**gamma), 0, 255).astype(np.uint8)


def normalise_dark(bgr: np.ndarray) -> np.ndarray:
    """`bgr` brightened when it is dark (a new array), else `bgr` itself.

    The gain that lifts a dark image also lifts its sensor noise; a 3x3 Gaussian takes the edge off it
    so the detector sees faces rather than speckle.
    """
    gamma = gamma_for(mean_brightness(bgr))
    if gamma is None:
        return bgr
    brightened = cv2.LUT(bgr, _gamma_table(gamma))
    return cv2.GaussianBlur(brightened, (3, 3), 0)
