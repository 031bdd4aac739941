"""Focus passes: a second look, every frame, around the small faces the tracker holds.

A small face found once by a tile may not be found again until its tile comes round; looking around
where the tracker holds it, on a square enlarged so the face is about FOCUS_INPUT_PX / FOCUS_CONTEXT
wide, finds it again where it went (also when it moved more than its own width).
"""

from __future__ import annotations

import numpy as np

from streamd.detect.passes import DetectionPass, square_around

# Faces narrower than this (frame pixels) get focus passes.
FOCUS_MAX_FACE_PX = 64.0
# A focus pass sees a square this many face widths across, at least FOCUS_MIN_SIDE_PX.
FOCUS_CONTEXT = 4.0
FOCUS_MIN_SIDE_PX = 96.0
# The square is scaled to this input size, so the face is about FOCUS_INPUT_PX / FOCUS_CONTEXT wide
# (40 px). On the tune benchmark 160 missed 18 faces, 192 (a face of 48 px, at 1.4 times the pixels)
# 25, 128 26 and 176 29; the held-out benchmark was not looked at to choose it.
FOCUS_INPUT_PX = 160
# Focus passes per frame and profile, batched in one run.
FOCUS_PASSES_PER_FRAME = {"fast": 0, "balanced": 3, "thorough": 8}


def focus_passes(boxes_xyxy: np.ndarray, frame_wh: tuple[int, int], budget: int, turn: int) -> list[DetectionPass]:
    """Passes around the small boxes among `boxes_xyxy`, at most `budget`, taken in turn by `turn`."""
    if budget <= 0 or len(boxes_xyxy) == 0:
        return []
    widths = boxes_xyxy[:, 2] - boxes_xyxy[:, 0]
    small = np.flatnonzero((widths > 0) & (widths < FOCUS_MAX_FACE_PX))
    if small.size == 0:
        return []
    if small.size > budget:
        start = (turn * budget) % small.size
        small = np.roll(small, -start)[:budget]
    passes = []
    for index in small:
        side = max(FOCUS_CONTEXT * float(widths[index]), FOCUS_MIN_SIDE_PX)
        region = square_around(boxes_xyxy[index], side, frame_wh)
        scale = FOCUS_INPUT_PX / max(region[2] - region[0], region[3] - region[1])
        passes.append(DetectionPass("track", region, scale))
    return passes
