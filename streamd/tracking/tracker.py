"""Multi-face tracker: stable track ids, smoothed boxes and landmarks, faces followed through the image.

Each track holds a state of 14 numbers (box xyxy and the five landmarks) and a per-frame velocity.

Prediction. Every frame each track's state moves on before detections are matched. When the frame is
given (`update(..., bgr=frame)`) and `motion` is on, the track follows the image: the face's corners
are followed from the previous frame with optical flow, checked forward-backward, and the moved box
must still look like the face as last detected (normalized cross-correlation of a small grey patch;
see `streamd.tracking.motion`). When the image supports the motion, box and landmarks move by it and
the velocity learns from it; otherwise (too few points, a different patch: face turned away, occluded,
gone, or a frame without `bgr`) the state moves on by its velocity (constant-velocity prediction).

Matching and scores. Detections are matched to the predicted boxes greedily by IoU (`iou_match`);
a track and a detection that IoU left unmatched are then paired when their centres lie within
`match_distance` track widths at a similar size (a small, fast face moves more than its own width
between two detections, and its velocity is learnt from that pair). Any
detection the detector reports (score at least `detector.threshold`) may continue a track, but a new
track starts only from a detection scoring at least `start_score` (hysteresis: a recall-first detector
threshold keeps faces masked through low-confidence frames without masking every weak blob). An
unmatched detection below `start_score` is not reported, so it is not masked. With `start_score` at
or below the detector threshold every detection may start a track, as without hysteresis.

Correction. A matched track's state becomes `smoothing * predicted + (1 - smoothing) * detected`, and
its velocity is smoothed the same way from the displacement between consecutive detections, so
`smoothing: 0` reports the detections as they are.

Lost faces. A track whose face the detector missed keeps being reported (`detected=False`). It ends
when, on a frame the detector ran, the face has gone `max_missed_frames` frames supported by neither
the detector nor the image (constant-velocity frames in a row), or `max_unseen_frames` frames without
a matching detection whatever the image says. So a face the detector loses for seconds stays masked
while the image shows it, and a face that left or was hidden ends after `max_missed_frames`.
Frames where the detector was not run (`update(None)`) or searched only part of the frame
(`search_complete=False`) never end a track, except one whose box has left the frame.

Reported box. It is never smaller than the face: on a detected frame it is the union of the smoothed
and the detected box. An unseen face's box grows about its centre by `lost_box_growth` of its size per
constant-velocity frame and `motion_box_growth` per motion-supported frame since the last detection,
at most `max_box_growth` in all. Boxes are clipped to the frame when its size is known.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from streamd.config import TrackerConfig
from streamd.detect.base import pairwise_iou
from streamd.tracking.matching import greedy_iou_matches, greedy_nearby_matches
from streamd.tracking.motion import Patch, estimate_motion, ncc, take_patch
from streamd.types import Detections, TrackedFace, TrackUpdate

logger = logging.getLogger(__name__)

STATE_SIZE = 14  # x0, y0, x1, y1, then (x, y) of the five landmarks

__all__ = ["STATE_SIZE", "FaceTracker", "greedy_iou_matches"]


@dataclass
class _Track:
    track_id: int
    state: np.ndarray  # (14,) float64: xyxy then kps5 flattened
    velocity: np.ndarray  # (14,) float64, pixels per frame
    last_measured: np.ndarray  # (14,) float64: the last matched detection
    score: float
    age_frames: int = 0
    missed_frames: int = 0  # frames since the last matching detection
    predicted_frames: int = 0  # of those, frames moved by constant velocity
    followed_frames: int = 0  # of those, frames moved by supported image motion
    unsupported_run: int = 0  # constant-velocity frames in a row
    hits: int = 1
    patch: Patch | None = None  # grey crop of the previous frame around the box, for the motion
    current_patch: Patch | None = None  # the same region of this frame
    template: np.ndarray | None = None  # appearance of the face as last detected

    @property
    def xyxy(self) -> np.ndarray:
        return self.state[:4]

    @property
    def kps5(self) -> np.ndarray:
        return self.state[4:].reshape(5, 2)


def _state_vector(xyxy: np.ndarray, kps5: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(xyxy, np.float64).reshape(4), np.asarray(kps5, np.float64).reshape(10)])


def _grown_box(xyxy: np.ndarray, share: float) -> np.ndarray:
    """The box grown by `share` of its width and height, about its centre."""
    cx, cy = (xyxy[0] + xyxy[2]) / 2, (xyxy[1] + xyxy[3]) / 2
    half_w = (xyxy[2] - xyxy[0]) * (1 + share) / 2
    half_h = (xyxy[3] - xyxy[1]) * (1 + share) / 2
    return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])


def _union_box(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])


def _visible_box(xyxy: np.ndarray, frame_wh: tuple[int, int] | None) -> np.ndarray:
    """The box clipped to the frame (unchanged when the frame size is unknown)."""
    if frame_wh is None:
        return xyxy.copy()
    frame_w, frame_h = frame_wh
    return np.clip(xyxy, 0, [frame_w, frame_h, frame_w, frame_h])


class FaceTracker:
    """Turns per-frame detections into tracks with stable integer ids starting at 1."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def live_track_ids(self) -> list[int]:
        return [track.track_id for track in self._tracks]

    def update(
        self,
        detections: Detections | None,
        frame_wh: tuple[int, int] | None = None,
        bgr: np.ndarray | None = None,
        search_complete: bool = True,
    ) -> TrackUpdate:
        """Advance one frame.

        `detections` None means the detector was not run on this frame: tracks are predicted only.
        `search_complete` False means the detector searched only part of the frame (one tile of a
        scheduled profile): its detections continue and start tracks, but a track it did not find is
        not counted towards ending.
        `frame_wh` (width, height), when given, clips reported boxes to the frame and ends tracks whose
        box lies wholly outside it. `bgr`, the frame itself (HxWx3 uint8), lets tracks follow the image
        motion; without it tracks move by constant velocity.
        """
        use_motion = self.config.motion and bgr is not None
        if bgr is not None and frame_wh is None:
            frame_wh = (int(bgr.shape[1]), int(bgr.shape[0]))
        for track in self._tracks:
            track.age_frames += 1
            if not (use_motion and self._follow(track, bgr)):
                track.state = track.state + track.velocity
                track.predicted_frames += 1
                track.unsupported_run += 1
            track.missed_frames += 1

        matched_ids: set[int] = set()
        started: list[int] = []
        if detections is not None:
            predicted_xyxy = np.array([track.xyxy for track in self._tracks]).reshape(-1, 4)
            iou = pairwise_iou(predicted_xyxy, detections.xyxy)
            matched_detections: set[int] = set()
            matches = greedy_iou_matches(iou, self.config.iou_match)
            matches += greedy_nearby_matches(
                predicted_xyxy, detections.xyxy, self.config.match_distance,
                skip_rows={row for row, _ in matches}, skip_cols={col for _, col in matches},
            )
            for track_index, detection_index in matches:
                track = self._tracks[track_index]
                self._correct(track, detections, detection_index)
                matched_ids.add(track.track_id)
                matched_detections.add(detection_index)
            for detection_index in range(len(detections)):
                if detection_index in matched_detections:
                    continue
                if float(detections.scores[detection_index]) < self.config.start_score:
                    continue  # hysteresis: a weak detection only continues a track
                track = self._start(detections, detection_index)
                matched_ids.add(track.track_id)
                started.append(track.track_id)

        ended: list[int] = []
        faces: list[TrackedFace] = []
        surviving: list[_Track] = []
        for track in self._tracks:
            detected = track.track_id in matched_ids
            if detected:
                # Smoothing steadies the box; the mask still covers all of the face as detected now.
                reported = _union_box(track.xyxy, track.last_measured[:4])
            else:
                # An unseen face's box grows: the less we know where it is, the more we cover.
                reported = _grown_box(track.xyxy, self._growth(track))
            xyxy = _visible_box(reported, frame_wh)
            left_frame = not detected and (xyxy[2] <= xyxy[0] or xyxy[3] <= xyxy[1])
            lost = detections is not None and search_complete and not detected and (
                track.unsupported_run > self.config.max_missed_frames
                or track.missed_frames > self.config.max_unseen_frames
            )
            if left_frame or lost:
                ended.append(track.track_id)
                logger.debug(
                    "track %d ended after %d frames (%s, %d unseen, %d unsupported)",
                    track.track_id, track.age_frames, "left the frame" if left_frame else "lost",
                    track.missed_frames, track.unsupported_run,
                )
                continue
            surviving.append(track)
            faces.append(
                TrackedFace(
                    track_id=track.track_id,
                    xyxy=xyxy.astype(np.float32),
                    kps5=track.kps5.astype(np.float32),
                    score=track.score,
                    detected=detected,
                    age_frames=track.age_frames,
                )
            )
        self._tracks = surviving
        for track in self._tracks:
            track.patch = self._next_patch(track, bgr, track.track_id in matched_ids) if use_motion else None
            track.current_patch = None
        return TrackUpdate(faces=faces, started=started, ended=ended)

    def face_boxes(self) -> np.ndarray:
        """(N, 4) xyxy of every live track's face as last estimated, without the growth that covers an
        unseen face's uncertainty: where a detector should look for it again."""
        return np.array([track.xyxy for track in self._tracks], np.float32).reshape(-1, 4)

    def flush(self) -> list[int]:
        """End every live track (end of stream); returns their ids."""
        ended = self.live_track_ids
        self._tracks = []
        return ended

    def _growth(self, track: _Track) -> float:
        growth = (
            self.config.lost_box_growth * track.predicted_frames
            + self.config.motion_box_growth * track.followed_frames
        )
        return min(growth, self.config.max_box_growth)

    def _next_patch(self, track: _Track, bgr: np.ndarray, detected: bool) -> Patch | None:
        """The crop this frame leaves for the next one's motion; refreshes the face's template."""
        work_size = self.config.motion_work_size
        patch = track.current_patch
        if patch is None or not patch.holds(track.xyxy, work_size):
            patch = take_patch(bgr, track.xyxy, work_size)
        if patch is not None and (detected or track.template is None):
            # The face as detected now (or, for a track begun without frames, as tracked now).
            track.template = patch.appearance(track.last_measured[:4] if detected else track.xyxy)
        return patch

    def _follow(self, track: _Track, bgr: np.ndarray) -> bool:
        """Move the track with the image; False (state untouched) when the image does not support it."""
        if track.patch is None:
            return False
        current = track.current_patch = track.patch.same_region(bgr)
        if current is None or track.template is None:
            return False
        motion = estimate_motion(
            track.patch, current, track.xyxy, self.config.motion_min_points, self.config.motion_max_fb_error
        )
        if motion is None:
            return False
        moved = track.state.copy()
        moved[:4] = motion.apply(track.state[:4].reshape(2, 2)).reshape(4)
        moved[4:] = motion.apply(track.state[4:].reshape(5, 2)).reshape(10)
        seen = current.appearance(moved[:4])
        if seen is None or ncc(seen, track.template) < self.config.motion_min_ncc:
            return False
        smoothing = self.config.smoothing
        track.velocity = smoothing * track.velocity + (1.0 - smoothing) * (moved - track.state)
        track.state = moved
        track.followed_frames += 1
        track.unsupported_run = 0
        return True

    def _start(self, detections: Detections, detection_index: int) -> _Track:
        track = _Track(
            track_id=self._next_id,
            state=_state_vector(detections.xyxy[detection_index], detections.kps5[detection_index]),
            velocity=np.zeros(STATE_SIZE),
            last_measured=_state_vector(detections.xyxy[detection_index], detections.kps5[detection_index]),
            score=float(detections.scores[detection_index]),
        )
        self._next_id += 1
        self._tracks.append(track)
        logger.debug("track %d started", track.track_id)
        return track

    def _correct(self, track: _Track, detections: Detections, detection_index: int) -> None:
        measured = _state_vector(detections.xyxy[detection_index], detections.kps5[detection_index])
        # Detection-to-detection velocity, spread over the frames since the face was last seen.
        observed_velocity = (measured - track.last_measured) / track.missed_frames
        smoothing = self.config.smoothing
        if track.hits == 1:
            track.velocity = observed_velocity
        else:
            track.velocity = smoothing * track.velocity + (1.0 - smoothing) * observed_velocity
        track.state = smoothing * track.state + (1.0 - smoothing) * measured
        track.last_measured = measured
        track.score = float(detections.scores[detection_index])
        track.missed_frames = 0
        track.predicted_frames = 0
        track.followed_frames = 0
        track.unsupported_run = 0
        track.hits += 1
