"""How one face moved in the image between two frames, and whether the image still shows that face.

Motion is measured on a grey crop around the face (a `Patch`), scaled down by an integer factor so the
face is about `work_size` pixels (never scaled up). Corners inside the central part of the face box
(`cv2.goodFeaturesToTrack`) are followed into the next frame's crop of the same region with pyramidal
Lucas-Kanade optical flow, and back again; a point counts when both passes found it and it came back
within `max_fb_error` working pixels of where it started. With at least `min_points` such points the
face moved by their median displacement and scaled by the ratio of their spreads about their median
(clipped to a small range per frame).

Optical flow alone follows whatever is inside the box, including the background a face left behind,
so the moved box is also compared with the face as last detected: the normalized cross-correlation
of small grey patches of the box's central part (`Patch.appearance`, `ncc`).

A crop is reused as the next frame's reference while the box stays well inside it, so a face costs
one grey crop, one corner search and two optical flow passes per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# The crop around a face reaches this share of the face's size beyond each side of its box.
SEARCH_MARGIN = 0.35
# Points and appearance come from the box less this share of its size on each side (less background).
INNER_MARGIN = 0.15
# Side of the grey patch compared by normalized cross-correlation.
APPEARANCE_SIZE = 24
# Per-frame scale change accepted from the point spreads.
MIN_SCALE_STEP, MAX_SCALE_STEP = 0.85, 1.18
MAX_CORNERS = 30
_LK_PARAMS = dict(
    winSize=(11, 11),
    maxLevel=2,
    criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03),
)


def _inner_box(xyxy: np.ndarray) -> np.ndarray:
    w, h = xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]
    return np.array([xyxy[0] + INNER_MARGIN * w, xyxy[1] + INNER_MARGIN * h,
                     xyxy[2] - INNER_MARGIN * w, xyxy[3] - INNER_MARGIN * h])


def _factor(xyxy: np.ndarray, work_size: int) -> int:
    return max(1, round(max(xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]) / work_size))


@dataclass(frozen=True)
class Patch:
    """A grey crop of one frame, shrunk by an integer factor."""

    grey: np.ndarray  # (h, w) uint8
    region: tuple[int, int, int, int]  # x0, y0, x1, y1 of the frame it covers
    factor: int  # frame pixels per working pixel
    frame_wh: tuple[int, int]

    def to_patch(self, xyxy: np.ndarray) -> np.ndarray:
        """Frame box coordinates as working coordinates of this crop."""
        x0, y0 = self.region[0], self.region[1]
        return (np.asarray(xyxy, np.float64) - np.array([x0, y0, x0, y0])) / self.factor

    def same_region(self, bgr: np.ndarray) -> Patch | None:
        """The crop of the same region of another frame (None when the frame size changed)."""
        if (int(bgr.shape[1]), int(bgr.shape[0])) != self.frame_wh:
            return None
        return Patch(_grey_crop(bgr, self.region, self.factor), self.region, self.factor, self.frame_wh)

    def holds(self, xyxy: np.ndarray, work_size: int) -> bool:
        """Whether face box `xyxy` still sits well inside this crop, at the right scale."""
        if _factor(xyxy, work_size) != self.factor:
            return False
        w, h = xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]
        reach = 0.5 * SEARCH_MARGIN * np.array([-w, -h, w, h])
        needed = np.clip(np.asarray(xyxy, np.float64) + reach, 0, [*self.frame_wh, *self.frame_wh])
        x0, y0, x1, y1 = self.region
        return bool(needed[0] >= x0 and needed[1] >= y0 and needed[2] <= x1 and needed[3] <= y1)

    def appearance(self, xyxy: np.ndarray) -> np.ndarray | None:
        """The central part of face box `xyxy` as a zero-mean, unit-norm vector; None outside the crop."""
        inner = self.to_patch(_inner_box(np.asarray(xyxy, np.float64)))
        height, width = self.grey.shape
        ix0, iy0 = max(0, int(round(inner[0]))), max(0, int(round(inner[1])))
        ix1, iy1 = min(width, int(round(inner[2]))), min(height, int(round(inner[3])))
        if ix1 - ix0 < 3 or iy1 - iy0 < 3:
            return None
        grey = cv2.resize(self.grey[iy0:iy1, ix0:ix1], (APPEARANCE_SIZE, APPEARANCE_SIZE),
                          interpolation=cv2.INTER_LINEAR)
        vector = grey.astype(np.float32).ravel()
        vector -= vector.mean()
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 1e-3 else np.zeros_like(vector)


@dataclass(frozen=True)
class Motion:
    """A similarity motion of frame points: p -> to_centre + scale * (p - from_centre)."""

    from_centre: np.ndarray  # (2,) frame pixels
    to_centre: np.ndarray  # (2,) frame pixels
    scale: float
    points: int

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Moved copies of (N, 2) frame points."""
        return self.to_centre + self.scale * (np.asarray(xy, np.float64).reshape(-1, 2) - self.from_centre)


def _median(values: np.ndarray) -> np.ndarray:
    """Median along the first axis (np.median costs more than the optical flow on a few dozen points)."""
    ordered = np.sort(values, axis=0)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _grey_crop(bgr: np.ndarray, region: tuple[int, int, int, int], factor: int) -> np.ndarray:
    x0, y0, x1, y1 = region
    grey = cv2.cvtColor(bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    if factor > 1:
        grey = cv2.resize(grey, ((x1 - x0) // factor, (y1 - y0) // factor), interpolation=cv2.INTER_AREA)
    return grey


def take_patch(bgr: np.ndarray, xyxy: np.ndarray, work_size: int) -> Patch | None:
    """The grey crop around face box `xyxy` (frame pixels); None when the box is off the frame."""
    box = np.asarray(xyxy, np.float64).reshape(4)
    frame_wh = (int(bgr.shape[1]), int(bgr.shape[0]))
    w, h = box[2] - box[0], box[3] - box[1]
    if not (w >= 2 and h >= 2):
        return None
    factor = _factor(box, work_size)
    reach = SEARCH_MARGIN * np.array([-w, -h, w, h])
    x0, y0 = (max(0, int(np.floor(v))) for v in (box + reach)[:2])
    x1, y1 = (min(limit, int(np.ceil(v))) for v, limit in zip((box + reach)[2:], frame_wh))
    x1 = x0 + (x1 - x0) // factor * factor
    y1 = y0 + (y1 - y0) // factor * factor
    if (x1 - x0) // factor < 8 or (y1 - y0) // factor < 8:
        return None
    region = (x0, y0, x1, y1)
    return Patch(_grey_crop(bgr, region, factor), region, factor, frame_wh)


def estimate_motion(
    previous: Patch, current: Patch, xyxy: np.ndarray, min_points: int, max_fb_error: float
) -> Motion | None:
    """How face box `xyxy` of `previous` moved into `current` (same region); None without support."""
    height, width = previous.grey.shape
    inner = previous.to_patch(_inner_box(np.asarray(xyxy, np.float64)))
    ix0, iy0 = max(0, int(inner[0])), max(0, int(inner[1]))
    ix1, iy1 = min(width, int(np.ceil(inner[2]))), min(height, int(np.ceil(inner[3])))
    if ix1 - ix0 < 5 or iy1 - iy0 < 5:
        return None
    min_distance = max(2.0, 0.07 * max(ix1 - ix0, iy1 - iy0))
    corners = cv2.goodFeaturesToTrack(previous.grey[iy0:iy1, ix0:ix1], MAX_CORNERS, 0.01, min_distance, blockSize=5)
    if corners is None or len(corners) < min_points:
        return None
    start = (corners + np.array([ix0, iy0], np.float32)).astype(np.float32)
    forward, found_forward, _ = cv2.calcOpticalFlowPyrLK(previous.grey, current.grey, start, None, **_LK_PARAMS)
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(current.grey, previous.grey, forward, None, **_LK_PARAMS)
    fb_error = np.linalg.norm((start - back).reshape(-1, 2), axis=1)
    good = (found_forward.ravel() == 1) & (found_back.ravel() == 1) & (fb_error <= max_fb_error)
    if int(good.sum()) < min_points:
        return None
    p0 = start.reshape(-1, 2)[good].astype(np.float64)
    p1 = forward.reshape(-1, 2)[good].astype(np.float64)
    centre0, centre1 = _median(p0), _median(p1)
    spread0 = float(_median(np.linalg.norm(p0 - centre0, axis=1)))
    spread1 = float(_median(np.linalg.norm(p1 - centre1, axis=1)))
    scale = float(np.clip(spread1 / spread0, MIN_SCALE_STEP, MAX_SCALE_STEP)) if spread0 > 1.0 else 1.0
    offset = np.array(previous.region[:2], np.float64)
    return Motion(
        from_centre=centre0 * previous.factor + offset,
        to_centre=centre1 * previous.factor + offset,
        scale=scale,
        points=int(good.sum()),
    )


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalized cross-correlation of two `Patch.appearance` vectors, in [-1, 1] (0 for a flat patch)."""
    return float(np.dot(a, b))
