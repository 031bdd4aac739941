"""Detection passes: which part of a frame the network looks at, at what scale and tilt.

A pass maps a region of the frame (xyxy frame pixels) onto a network input by one affine transform:
scale, then optionally a rotation about the region's centre (for tilted heads). Detections found on
the network input are mapped back to frame pixels by the inverse transform; a face found on a turned
input comes back as the axis-aligned box around its turned-back box, so it is never smaller than the
face (recall first: a tilted face's mask takes in a little background at the corners).
Pure functions; the schedule of passes lives in `streamd.detect.schedule`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from streamd.detect.base import non_max_suppression
from streamd.types import Detections

PassKind = Literal["global", "tile", "tilted", "track", "coarse"]
# Network inputs are padded to multiples of this by the backend; passes are sized to match.
SIZE_MULTIPLE = 32
# A tile detection within this share of its own size of an inner tile edge is taken as cut by it.
CUT_MARGIN_SHARE = 0.1


@dataclass(frozen=True)
class DetectionPass:
    """One network run: `region_xyxy` of the frame scaled by `scale` and turned by `angle_deg`."""

    kind: PassKind
    region_xyxy: tuple[int, int, int, int]
    scale: float
    angle_deg: float = 0.0

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = self.region_xyxy
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty pass region {self.region_xyxy}")
        if not 0 < self.scale <= 4:
            raise ValueError(f"pass scale must be in (0, 4], got {self.scale}")

    @property
    def input_wh(self) -> tuple[int, int]:
        """Size of the network input this pass renders."""
        x0, y0, x1, y1 = self.region_xyxy
        return max(1, round((x1 - x0) * self.scale)), max(1, round((y1 - y0) * self.scale))

    @property
    def pixels(self) -> int:
        width, height = self.input_wh
        return width * height


def _axis_positions(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` pixels covering `length`, overlapping by at least `overlap`."""
    if tile >= length:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    last = length - tile
    return [round(last * index / (count - 1)) for index in range(count)]


def tile_regions(frame_wh: tuple[int, int], tile_wh: tuple[int, int], overlap_px: int) -> list[tuple[int, int, int, int]]:
    """Regions of `tile_wh` frame pixels covering the whole frame, neighbours overlapping by `overlap_px`.

    A face narrower than the overlap lies wholly inside at least one tile.
    """
    frame_w, frame_h = frame_wh
    tile_w, tile_h = min(tile_wh[0], frame_w), min(tile_wh[1], frame_h)
    if overlap_px >= min(tile_w, tile_h) and (tile_w < frame_w or tile_h < frame_h):
        raise ValueError(f"tile overlap {overlap_px} px must be smaller than the tile {tile_w}x{tile_h}")
    xs = _axis_positions(frame_w, tile_w, overlap_px)
    ys = _axis_positions(frame_h, tile_h, overlap_px)
    return [(x, y, x + tile_w, y + tile_h) for y in ys for x in xs]


def pass_transform(detection_pass: DetectionPass) -> np.ndarray:
    """The 2x3 affine matrix taking frame pixels to this pass's network input pixels."""
    x0, y0, x1, y1 = detection_pass.region_xyxy
    width, height = detection_pass.input_wh
    scale = detection_pass.scale
    # Scale about the region's top-left corner, then rotate about the input's centre.
    to_input = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale], [0.0, 0.0, 1.0]])
    if detection_pass.angle_deg:
        rotation = cv2.getRotationMatrix2D((width / 2, height / 2), detection_pass.angle_deg, 1.0)
        to_input = np.vstack([rotation, [0.0, 0.0, 1.0]]) @ to_input
    return to_input[:2]


def render_pass(bgr: np.ndarray, detection_pass: DetectionPass) -> np.ndarray:
    """The network input of one pass: the region scaled (and turned; corners outside the frame grey)."""
    width, height = detection_pass.input_wh
    x0, y0, x1, y1 = detection_pass.region_xyxy
    if not detection_pass.angle_deg:
        region = bgr[y0:y1, x0:x1]
        if detection_pass.scale == 1.0:
            return np.ascontiguousarray(region)
        interpolation = cv2.INTER_AREA if detection_pass.scale < 1 else cv2.INTER_LINEAR
        return cv2.resize(region, (width, height), interpolation=interpolation)
    # Outside the frame is flat grey: a reflected border would show mirrored copies of edge faces.
    return cv2.warpAffine(bgr, pass_transform(detection_pass), (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))


def render_passes(bgr: np.ndarray, passes: Sequence[DetectionPass]) -> list[np.ndarray]:
    """`render_pass` of each pass; an unturned whole-frame pass at a whole fraction of another's scale
    (the coarse pass beside the inference-size pass) is shrunk from that pass's input rather than
    from the frame, which costs a sixteenth as much."""
    rendered: dict[DetectionPass, np.ndarray] = {}
    for detection_pass in sorted(passes, key=lambda p: -p.scale):
        source = next((other for other in rendered if _shrinks_from(detection_pass, other)), None)
        if source is None:
            rendered[detection_pass] = render_pass(bgr, detection_pass)
        else:
            rendered[detection_pass] = cv2.resize(rendered[source], detection_pass.input_wh,
                                                  interpolation=cv2.INTER_AREA)
    return [rendered[detection_pass] for detection_pass in passes]


def _shrinks_from(detection_pass: DetectionPass, larger: DetectionPass) -> bool:
    if detection_pass.angle_deg or larger.angle_deg or detection_pass.region_xyxy != larger.region_xyxy:
        return False
    ratio = larger.scale / detection_pass.scale
    return ratio >= 2 and abs(ratio - round(ratio)) < 1e-9


def map_to_frame(detections: Detections, detection_pass: DetectionPass, frame_wh: tuple[int, int]) -> Detections:
    """Detections on a pass's network input, in frame pixels (boxes clipped to the frame); detections
    centred outside the frame are dropped."""
    if len(detections) == 0:
        return detections
    forward = np.vstack([pass_transform(detection_pass), [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(forward)[:2]
    x0, y0, x1, y1 = (detections.xyxy[:, i].astype(np.float64) for i in range(4))
    centres = np.stack([(x0 + x1) / 2, (y0 + y1) / 2], 1) @ inverse[:, :2].T + inverse[:, 2]
    corners = np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1), np.stack([x0, y1], 1)], 1)
    corners_frame = corners @ inverse[:, :2].T + inverse[:, 2]
    xyxy = np.concatenate([corners_frame.min(axis=1), corners_frame.max(axis=1)], axis=1)
    frame_w, frame_h = frame_wh
    inside = (centres[:, 0] >= 0) & (centres[:, 0] < frame_w) & (centres[:, 1] >= 0) & (centres[:, 1] < frame_h)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, frame_w)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, frame_h)
    kps5 = detections.kps5.astype(np.float64) @ inverse[:, :2].T + inverse[:, 2]
    mapped = Detections(xyxy=xyxy.astype(np.float32), kps5=kps5.astype(np.float32), scores=detections.scores.copy())
    # A turned input shows corners beyond the frame; nothing found there is in the picture.
    return mapped if inside.all() else select(mapped, inside)


def drop_cut_faces(detections: Detections, detection_pass: DetectionPass, frame_wh: tuple[int, int],
                   margin_px: float) -> Detections:
    """Tile detections that touch an inner edge of the tile: a neighbouring tile or the global pass
    sees that face whole. Edges on the frame border are kept."""
    if len(detections) == 0:
        return detections
    x0, y0, x1, y1 = detection_pass.region_xyxy
    frame_w, frame_h = frame_wh
    boxes = detections.xyxy
    # The network rarely draws a cut face's box right to the edge: allow a share of the box too.
    margin_x = np.maximum(margin_px, CUT_MARGIN_SHARE * (boxes[:, 2] - boxes[:, 0]))
    margin_y = np.maximum(margin_px, CUT_MARGIN_SHARE * (boxes[:, 3] - boxes[:, 1]))
    cut = np.zeros(len(detections), bool)
    if x0 > 0:
        cut |= boxes[:, 0] <= x0 + margin_x
    if y0 > 0:
        cut |= boxes[:, 1] <= y0 + margin_y
    if x1 < frame_w:
        cut |= boxes[:, 2] >= x1 - margin_x
    if y1 < frame_h:
        cut |= boxes[:, 3] >= y1 - margin_y
    return select(detections, ~cut)


def keep_narrower(detections: Detections, max_width_px: float) -> Detections:
    """Detections narrower than `max_width_px` (frame pixels)."""
    if len(detections) == 0:
        return detections
    return select(detections, (detections.xyxy[:, 2] - detections.xyxy[:, 0]) < max_width_px)


def eye_line_deg(detections: Detections) -> np.ndarray:
    """Angle of the line from the left to the right eye, in degrees (0: level), per detection."""
    delta = detections.kps5[:, 1] - detections.kps5[:, 0]
    return np.degrees(np.arctan2(delta[:, 1], delta[:, 0]))


def keep_level_faces(detections: Detections, max_roll_deg: float) -> Detections:
    """Detections on a turned input whose eyes are about level there: the faces the turn set upright.

    A face that the turn tilted instead is upright in the frame, where the untilted pass sees it with
    a tighter box."""
    if len(detections) == 0:
        return detections
    return select(detections, np.abs(eye_line_deg(detections)) <= max_roll_deg)


def square_around(xyxy: np.ndarray, side: float, frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square of `side` pixels centred on a box, moved (not cut) to lie inside the frame where it fits."""
    frame_w, frame_h = frame_wh
    side_w, side_h = min(round(side), frame_w), min(round(side), frame_h)
    cx, cy = (xyxy[0] + xyxy[2]) / 2, (xyxy[1] + xyxy[3]) / 2
    x0 = int(np.clip(round(cx - side_w / 2), 0, frame_w - side_w))
    y0 = int(np.clip(round(cy - side_h / 2), 0, frame_h - side_h))
    return x0, y0, x0 + side_w, y0 + side_h


def select(detections: Detections, keep: np.ndarray) -> Detections:
    """The detections at `keep` (a boolean mask or index array)."""
    return Detections(xyxy=detections.xyxy[keep], kps5=detections.kps5[keep], scores=detections.scores[keep])


def merge_detections(parts: list[Detections], nms_iou: float) -> Detections:
    """Detections of several passes over one frame as one set: overlapping boxes merged by NMS."""
    parts = [part for part in parts if len(part)]
    if not parts:
        return Detections.empty()
    if len(parts) == 1:
        return parts[0]
    merged = Detections(
        xyxy=np.concatenate([part.xyxy for part in parts]),
        kps5=np.concatenate([part.kps5 for part in parts]),
        scores=np.concatenate([part.scores for part in parts]),
    )
    return select(merged, non_max_suppression(merged.xyxy, merged.scores, nms_iou))
