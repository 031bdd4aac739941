"""Focus passes: a second look, every frame, around the small faces the tracker holds.

A small face found once by a tile may not be found again until its tile comes round; looking around
where the tracker holds it, on a square enlarged so the face is about input_px / FOCUS_CONTEXT
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
# The square is scaled to this input size per profile, so the face is about input / FOCUS_CONTEXT wide:
# 40 px for `balanced`, 48 px for `thorough`. On the tune benchmark `balanced` missed 18 faces at 160,
# 25 at 192 (1.4 times the pixels), 26 at 128 and 29 at 176; `thorough` 6 at 160 and 5 at 192, so it
# keeps 192 (`fast` runs no focus passes). The held-out benchmark was not looked at to choose them.
FOCUS_INPUT_PX = {"fast": 160, "balanced": 160, "thorough": 192}
# Focus passes per frame and profile, batched in one run.
FOCUS_PASSES_PER_FRAME = {"fast": 0, "balanced": 3, "thorough": 8}


def focus_passes(boxes_xyxy: np.ndarray, frame_wh: tuple[int, int], budget: int, turn: int,
                 input_px: int) -> list[DetectionPass]:
    """Passes around the small boxes among `boxes_xyxy`, at most `budget`, taken in turn by `turn`, each
    square scaled to `input_px`."""
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
        scale = input_px / max(region[2] - region[0], region[3] - region[1])
        passes.append(DetectionPass("track", region, scale))
    return passes
