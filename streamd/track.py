"""Multi-face tracker: stable track ids, smoothed boxes and landmarks, hysteresis on lost faces.

Each track holds a state of 14 numbers (box xyxy and the five landmarks) and a per-frame velocity.
Every frame the state moves on by its velocity (constant-velocity prediction). Detections are matched
to the predicted boxes greedily by IoU. A matched track's state becomes
`smoothing * predicted + (1 - smoothing) * detected`, and its velocity is smoothed the same way from
the displacement between consecutive detections, so `smoothing: 0` reports the detections as they are.
A track whose face the detector missed keeps being reported on its predicted box (`detected=False`)
for `max_missed_frames` frames, so a face never slips through for a frame or two; after that it ends.
The reported box is never smaller than the face: on a detected frame it is the union of the smoothed
and the detected box, and a predicted box grows by `lost_box_growth` of its size per unseen frame.
Frames where the detector was not run (`update(None)`) are predicted only and never end a track,
except one whose predicted box has left the frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from streamd.config import TrackerConfig
from streamd.detect.base import pairwise_iou
from streamd.types import Detections, TrackedFace, TrackUpdate

logger = logging.getLogger(__name__)

STATE_SIZE = 14  # x0, y0, x1, y1, then (x, y) of the five landmarks


@dataclass
class _Track:
    track_id: int
    state: np.ndarray  # (14,) float64: xyxy then kps5 flattened
    velocity: np.ndarray  # (14,) float64, pixels per frame
    last_measured: np.ndarray  # (14,) float64: the last matched detection
    score: float
    age_frames: int = 0
    missed_frames: int = 0
    hits: int = 1

    @property
    def xyxy(self) -> np.ndarray:
        return self.state[:4]

    @property
    def kps5(self) -> np.ndarray:
        return self.state[4:].reshape(5, 2)


def _state_vector(xyxy: np.ndarray, kps5: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(xyxy, np.float64).reshape(4), np.asarray(kps5, np.float64).reshape(10)])


def greedy_iou_matches(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(row, column) pairs, highest IoU first, each row and column used once, IoU at least `min_iou`."""
    if iou.size == 0:
        return []
    rows, cols = np.nonzero(iou >= min_iou)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    matches: list[tuple[int, int]] = []
    for index in order:
        row, col = int(rows[index]), int(cols[index])
        if row in used_rows or col in used_cols:
            continue
        used_rows.add(row)
        used_cols.add(col)
        matches.append((row, col))
    return matches


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

    def update(self, detections: Detections | None, frame_wh: tuple[int, int] | None = None) -> TrackUpdate:
        """Advance one frame.

        `detections` None means the detector was not run on this frame: tracks are predicted only.
        `frame_wh` (width, height), when given, clips reported boxes to the frame and ends tracks whose
        predicted box lies wholly outside it.
        """
        for track in self._tracks:
            track.state = track.state + track.velocity
            track.age_frames += 1

        matched_ids: set[int] = set()
        started: list[int] = []
        if detections is not None:
            predicted_xyxy = np.array([track.xyxy for track in self._tracks]).reshape(-1, 4)
            iou = pairwise_iou(predicted_xyxy, detections.xyxy)
            matched_detections: set[int] = set()
            for track_index, detection_index in greedy_iou_matches(iou, self.config.iou_match):
                track = self._tracks[track_index]
                self._correct(track, detections, detection_index)
                matched_ids.add(track.track_id)
                matched_detections.add(detection_index)
            for track in self._tracks:
                if track.track_id not in matched_ids:
                    track.missed_frames += 1
            for detection_index in range(len(detections)):
                if detection_index not in matched_detections:
                    track = self._start(detections, detection_index)
                    matched_ids.add(track.track_id)
                    started.append(track.track_id)
        else:
            for track in self._tracks:
                track.missed_frames += 1

        ended: list[int] = []
        faces: list[TrackedFace] = []
        surviving: list[_Track] = []
        for track in self._tracks:
            detected = track.track_id in matched_ids
            if detected:
                # Smoothing steadies the box; the mask still covers all of the face as detected now.
                reported = _union_box(track.xyxy, track.last_measured[:4])
            else:
                # A predicted box grows with every frame the face is unseen: the less we know where it
                # is, the more we cover.
                reported = _grown_box(track.xyxy, self.config.lost_box_growth * track.missed_frames)
            xyxy = _visible_box(reported, frame_wh)
            left_frame = not detected and (xyxy[2] <= xyxy[0] or xyxy[3] <= xyxy[1])
            lost = detections is not None and track.missed_frames > self.config.max_missed_frames
            if left_frame or lost:
                ended.append(track.track_id)
                logger.debug("track %d ended after %d frames", track.track_id, track.age_frames)
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
        return TrackUpdate(faces=faces, started=started, ended=ended)

    def flush(self) -> list[int]:
        """End every live track (end of stream); returns their ids."""
        ended = self.live_track_ids
        self._tracks = []
        return ended

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
        observed_velocity = (measured - track.last_measured) / (track.missed_frames + 1)
        smoothing = self.config.smoothing
        if track.hits == 1:
            track.velocity = observed_velocity
        else:
            track.velocity = smoothing * track.velocity + (1.0 - smoothing) * observed_velocity
        track.state = smoothing * track.state + (1.0 - smoothing) * measured
        track.last_measured = measured
        track.score = float(detections.scores[detection_index])
        track.missed_frames = 0
        track.hits += 1
