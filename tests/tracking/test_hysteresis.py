"""Score hysteresis: only a confident detection starts a track; weaker ones keep it going."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.config import TrackerConfig
from streamd.tracking import FaceTracker
from streamd.types import Detections

KPS5_IN_BOX = np.array([[0.34, 0.46], [0.66, 0.46], [0.5, 0.64], [0.37, 0.82], [0.63, 0.82]], np.float32)


def detections(*faces: tuple[float, float, float]) -> Detections:
    """(x, y, score) of 80-pixel faces."""
    if not faces:
        return Detections.empty()
    xyxy = np.array([[x, y, x + 80, y + 80] for x, y, _ in faces], np.float32)
    kps5 = xyxy[:, None, :2] + KPS5_IN_BOX[None] * 80
    return Detections(xyxy=xyxy, kps5=kps5.astype(np.float32), scores=np.array([s for *_, s in faces], np.float32))


def test_a_weak_detection_does_not_start_a_track() -> None:
    tracker = FaceTracker(TrackerConfig(start_score=0.4))
    for frame in range(5):
        update = tracker.update(detections((100 + 3 * frame, 100, 0.3)))
        assert update.faces == [] and update.started == []
    assert tracker.live_track_ids == []
    update = tracker.update(detections((115, 100, 0.4)))  # at start_score: starts
    assert update.started == [1] and [face.track_id for face in update.faces] == [1]


def test_weak_detections_continue_a_started_track() -> None:
    tracker = FaceTracker(TrackerConfig(start_score=0.5, max_missed_frames=2))
    tracker.update(detections((100, 100, 0.8)))
    for frame in range(1, 20):  # far longer than max_missed_frames
        update = tracker.update(detections((100 + 4 * frame, 100, 0.25)))
        assert update.started == [] and update.ended == []
        assert [(face.track_id, face.detected) for face in update.faces] == [(1, True)]
        assert update.faces[0].score == pytest.approx(0.25)
        np.testing.assert_allclose(update.faces[0].xyxy[0], 100 + 4 * frame, atol=2.0)


def test_a_weak_detection_away_from_every_track_is_not_masked() -> None:
    tracker = FaceTracker(TrackerConfig(start_score=0.5))
    tracker.update(detections((100, 100, 0.9)))
    update = tracker.update(detections((102, 100, 0.3), (400, 300, 0.3)))
    assert [face.track_id for face in update.faces] == [1]
    assert update.faces[0].xyxy[0] < 200 and update.started == []


def test_start_score_at_the_detector_threshold_starts_every_detection() -> None:
    """With start_score no higher than any score the detector reports, there is no hysteresis."""
    with_hysteresis = FaceTracker(TrackerConfig(start_score=0.2))
    without = FaceTracker(TrackerConfig(start_score=0.0))
    sequence = [detections((100, 100, 0.2), (400, 200, 0.35)), detections((104, 100, 0.6)), detections()]
    for frame_detections in sequence:
        a, b = with_hysteresis.update(frame_detections), without.update(frame_detections)
        assert (a.started, a.ended) == (b.started, b.ended)
        assert [face.track_id for face in a.faces] == [face.track_id for face in b.faces]
        for face_a, face_b in zip(a.faces, b.faces):
            np.testing.assert_array_equal(face_a.xyxy, face_b.xyxy)
