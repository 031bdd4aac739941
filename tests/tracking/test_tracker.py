"""FaceTracker: stable ids, prediction through missed detections, crossing faces, start and end."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.config import TrackerConfig
from streamd.tracking import FaceTracker
from streamd.types import Detections

FACE_SIZE = 80.0
# Landmark positions as shares of the face box (ArcFace-like layout).
KPS5_IN_BOX = np.array([[0.34, 0.46], [0.66, 0.46], [0.5, 0.64], [0.37, 0.82], [0.63, 0.82]], np.float32)


def face_xyxy(x: float, y: float, size: float = FACE_SIZE) -> np.ndarray:
    return np.array([x, y, x + size, y + size], np.float32)


def detections_of(*boxes: np.ndarray) -> Detections:
    if not boxes:
        return Detections.empty()
    xyxy = np.stack(boxes).astype(np.float32)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    kps5 = xyxy[:, None, :2] + KPS5_IN_BOX[None] * wh[:, None, :]
    return Detections(xyxy=xyxy, kps5=kps5.astype(np.float32), scores=np.full(len(xyxy), 0.9, np.float32))


def test_ids_stable_across_moving_boxes() -> None:
    tracker = FaceTracker(TrackerConfig(smoothing=0.5))
    first = tracker.update(detections_of(face_xyxy(100, 100), face_xyxy(600, 300)))
    assert first.started == [1, 2]
    assert [face.track_id for face in first.faces] == [1, 2]
    for frame in range(1, 40):
        moving_right = face_xyxy(100 + 6 * frame, 100 + 2 * frame)
        moving_left = face_xyxy(600 - 5 * frame, 300)
        update = tracker.update(detections_of(moving_right, moving_left))
        assert update.started == [] and update.ended == []
        assert sorted(face.track_id for face in update.faces) == [1, 2]
        assert all(face.detected for face in update.faces)
    by_id = {face.track_id: face for face in update.faces}
    # With constant velocity learnt, the smoothed box sits on the detection.
    np.testing.assert_allclose(by_id[1].xyxy, face_xyxy(100 + 6 * 39, 100 + 2 * 39), atol=1.0)
    np.testing.assert_allclose(by_id[2].xyxy, face_xyxy(600 - 5 * 39, 300), atol=1.0)
    assert by_id[1].age_frames == 39


def test_no_smoothing_reports_detections() -> None:
    tracker = FaceTracker(TrackerConfig(smoothing=0.0))
    tracker.update(detections_of(face_xyxy(10, 10)))
    update = tracker.update(detections_of(face_xyxy(30, 12)))
    np.testing.assert_allclose(update.faces[0].xyxy, face_xyxy(30, 12), atol=1e-4)


@pytest.mark.parametrize("missing_frames", [1, 3, 5])
def test_missed_face_is_predicted_then_ends(missing_frames: int) -> None:
    max_missed = 5
    tracker = FaceTracker(TrackerConfig(max_missed_frames=max_missed, smoothing=0.3, lost_box_growth=0.0))
    step = 4.0
    for frame in range(10):
        tracker.update(detections_of(face_xyxy(100 + step * frame, 200)))
    for frame in range(10, 10 + missing_frames):
        update = tracker.update(detections_of())
        assert len(update.faces) == 1 and update.ended == []
        face = update.faces[0]
        assert face.track_id == 1 and not face.detected
        # The predicted box keeps moving with the face.
        np.testing.assert_allclose(face.xyxy, face_xyxy(100 + step * frame, 200), atol=2.0)
        assert np.all(face.kps5[:, 0] > face.xyxy[0]) and np.all(face.kps5[:, 0] < face.xyxy[2])
    frame = 10 + missing_frames
    update = tracker.update(detections_of(face_xyxy(100 + step * frame, 200)))
    assert [face.track_id for face in update.faces] == [1]
    assert update.faces[0].detected and update.started == []


def test_track_ends_after_max_missed() -> None:
    max_missed = 3
    tracker = FaceTracker(TrackerConfig(max_missed_frames=max_missed))
    tracker.update(detections_of(face_xyxy(100, 100)))
    for _ in range(max_missed):
        update = tracker.update(detections_of())
        assert [face.track_id for face in update.faces] == [1]
    update = tracker.update(detections_of())
    assert update.faces == [] and update.ended == [1]
    assert tracker.live_track_ids == []
    # The same face coming back later is a new track.
    update = tracker.update(detections_of(face_xyxy(100, 100)))
    assert update.started == [2]


def test_zero_max_missed_ends_at_first_miss() -> None:
    tracker = FaceTracker(TrackerConfig(max_missed_frames=0))
    tracker.update(detections_of(face_xyxy(100, 100)))
    update = tracker.update(detections_of())
    assert update.faces == [] and update.ended == [1]


def test_detector_skipped_frames_predict_only() -> None:
    tracker = FaceTracker(TrackerConfig(max_missed_frames=2, detect_every=4))
    for frame in range(5):
        tracker.update(detections_of(face_xyxy(100 + 10 * frame, 100)))
    for _ in range(5):  # more skipped frames than max_missed: frames without detection never end a track
        update = tracker.update(None)
        assert [face.track_id for face in update.faces] == [1]
        assert not update.faces[0].detected and update.ended == []
    update = tracker.update(detections_of(face_xyxy(200, 100)))
    assert [face.track_id for face in update.faces] == [1] and update.faces[0].detected


def test_crossing_faces_keep_ids() -> None:
    tracker = FaceTracker(TrackerConfig(smoothing=0.5, iou_match=0.2))
    ids_left_to_right: list[tuple[int, int]] = []
    for frame in range(60):
        walker_right = face_xyxy(100 + 10 * frame, 300)
        walker_left = face_xyxy(700 - 10 * frame, 330)
        update = tracker.update(detections_of(walker_right, walker_left))
        assert update.started == ([1, 2] if frame == 0 else [])
        by_id = {face.track_id: face for face in update.faces}
        assert sorted(by_id) == [1, 2]
        # Track 1 is the face walking right, track 2 the one walking left.
        assert abs(by_id[1].xyxy[0] - walker_right[0]) <= abs(by_id[1].xyxy[0] - walker_left[0])
        ids_left_to_right.append(tuple(sorted(by_id, key=lambda track_id: by_id[track_id].xyxy[0])))
    assert ids_left_to_right[0] == (1, 2) and ids_left_to_right[-1] == (2, 1)


def test_started_and_ended_lists() -> None:
    tracker = FaceTracker(TrackerConfig(max_missed_frames=1))
    update = tracker.update(detections_of(face_xyxy(0, 0)))
    assert update.started == [1] and update.ended == []
    update = tracker.update(detections_of(face_xyxy(2, 0), face_xyxy(400, 400)))
    assert update.started == [2] and update.ended == []
    update = tracker.update(detections_of(face_xyxy(400, 400)))
    assert update.started == [] and update.ended == []
    assert {face.track_id: face.detected for face in update.faces} == {1: False, 2: True}
    update = tracker.update(detections_of(face_xyxy(400, 400)))
    assert update.ended == [1] and [face.track_id for face in update.faces] == [2]
    assert tracker.flush() == [2]
    assert tracker.flush() == []


def test_predicted_box_leaving_frame() -> None:
    frame_wh = (640, 360)
    tracker = FaceTracker(TrackerConfig(max_missed_frames=50, smoothing=0.0, lost_box_growth=0.0))
    tracker.update(detections_of(face_xyxy(500, 100)), frame_wh=frame_wh)
    tracker.update(detections_of(face_xyxy(540, 100)), frame_wh=frame_wh)
    update = tracker.update(detections_of(), frame_wh=frame_wh)
    face = update.faces[0]
    np.testing.assert_allclose(face.xyxy, [580, 100, 640, 180], atol=1e-3)  # clipped to the frame
    update = tracker.update(detections_of(), frame_wh=frame_wh)
    assert update.faces[0].xyxy[0] == pytest.approx(620)
    update = tracker.update(detections_of(), frame_wh=frame_wh)
    assert update.faces == [] and update.ended == [1]


def test_empty_detections_on_first_frame() -> None:
    tracker = FaceTracker(TrackerConfig())
    update = tracker.update(detections_of())
    assert update.faces == [] and update.started == [] and update.ended == []
    assert tracker.update(None).faces == []


def test_occluded_face_keeps_id_through_crossing() -> None:
    tracker = FaceTracker(TrackerConfig(smoothing=0.5, max_missed_frames=12, lost_box_growth=0.0))
    for frame in range(60):
        front = face_xyxy(100 + 10 * frame, 300)
        behind = face_xyxy(700 - 10 * frame, 320)
        occluded = 26 <= frame <= 34
        update = tracker.update(detections_of(front) if occluded else detections_of(front, behind))
        by_id = {face.track_id: face for face in update.faces}
        assert sorted(by_id) == [1, 2] and update.started == ([1, 2] if frame == 0 else [])
        assert by_id[2].detected == (not occluded)
        # The hidden face's predicted box stays on it.
        assert np.abs(by_id[2].xyxy - behind).max() < 10


def test_predicted_box_grows_while_the_face_is_unseen() -> None:
    tracker = FaceTracker(TrackerConfig(max_missed_frames=5, smoothing=0.0, lost_box_growth=0.2))
    tracker.update(detections_of(face_xyxy(100, 100)))
    widths = []
    for _ in range(3):
        face = tracker.update(detections_of()).faces[0]
        widths.append(float(face.xyxy[2] - face.xyxy[0]))
    base = FACE_SIZE
    assert widths == pytest.approx([base * 1.2, base * 1.4, base * 1.6], abs=1e-3)


def test_smoothed_box_still_covers_the_whole_detection() -> None:
    tracker = FaceTracker(TrackerConfig(smoothing=0.8))
    for frame in range(10):
        detected = face_xyxy(100 + 25 * frame, 100)
        face = tracker.update(detections_of(detected)).faces[0]
        assert face.xyxy[0] <= detected[0] + 1e-3 and face.xyxy[1] <= detected[1] + 1e-3
        assert face.xyxy[2] >= detected[2] - 1e-3 and face.xyxy[3] >= detected[3] - 1e-3


def test_a_partial_search_never_ends_a_track_but_a_whole_one_does() -> None:
    max_missed = 4
    tracker = FaceTracker(TrackerConfig(max_missed_frames=max_missed, motion=False))
    tracker.update(detections_of(face_xyxy(100, 100)))
    for _ in range(3 * max_missed):
        # One tile of a scheduled profile searched elsewhere: the face is simply not looked for.
        update = tracker.update(detections_of(), search_complete=False)
        assert update.ended == [] and [face.track_id for face in update.faces] == [1]
    update = tracker.update(detections_of(), search_complete=True)
    assert update.ended == [1]


def test_a_partial_search_still_starts_tracks() -> None:
    tracker = FaceTracker(TrackerConfig())
    update = tracker.update(detections_of(face_xyxy(300, 200, size=30)), search_complete=False)
    assert update.started == [1]


def test_a_small_fast_face_redetected_beyond_iou_range_keeps_its_track() -> None:
    tracker = FaceTracker(TrackerConfig(motion=False, match_distance=2.5))
    tracker.update(detections_of(face_xyxy(100, 100, size=24)))
    # Two frames unseen, then found 40 px on: no overlap with the old box, but within 2.5 widths.
    tracker.update(detections_of())
    update = tracker.update(detections_of(face_xyxy(140, 100, size=24)))
    assert update.started == [] and [face.track_id for face in update.faces] == [1]
    # The velocity learnt from that pair carries the box on.
    predicted = tracker.update(detections_of()).faces[0].xyxy
    assert (predicted[0] + predicted[2]) / 2 > 145


def test_a_detection_far_away_or_of_another_size_starts_its_own_track() -> None:
    tracker = FaceTracker(TrackerConfig(motion=False, match_distance=2.5))
    tracker.update(detections_of(face_xyxy(100, 100, size=24)))
    update = tracker.update(detections_of(face_xyxy(200, 100, size=24), face_xyxy(110, 100, size=80)))
    assert sorted(update.started) == [2, 3]
