"""Tracks carried by image motion: a face the detector misses stays masked while the image shows it."""

from __future__ import annotations


import numpy as np
import pytest

from streamd.anonymize import build_anonymizer
from streamd.config import AnonymizerConfig, CameraConfig, TrackerConfig
from streamd.pipeline import StreamPipeline
from streamd.tracking import FaceTracker
from streamd.tracking.motion import estimate_motion, ncc, take_patch
from streamd.types import AnonymizedFrame, Detections

from memory_source import MemoryFrameSource
from moving_face_scene import MovingFace, ScriptedDetector, covered_share, detections_of, textured_background

FRAMES = 80
SEEN_FIRST = 15
MISSED = 50  # frames 15..64 the detector finds nothing


def test_face_missed_by_the_detector_for_50_frames_stays_masked() -> None:
    scene = MovingFace()
    frames = [scene.frame(index) for index in range(FRAMES)]
    seen = set(range(SEEN_FIRST)) | set(range(SEEN_FIRST + MISSED, FRAMES))
    detector = ScriptedDetector(scene, seen)
    camera = CameraConfig(
        id="moving-face",
        source={"type": "file", "path": "unused.mp4"},
        anonymizer=AnonymizerConfig(method="blur", margin=0.0),
    )
    output: list[AnonymizedFrame] = []
    pipeline = StreamPipeline(camera, MemoryFrameSource(frames), detector, build_anonymizer(camera.anonymizer), [],
                              on_frame=output.append)
    pipeline.run()

    assert [item.frame.index for item in output] == list(range(FRAMES))
    for item in output:
        index = item.frame.index
        truth = scene.face_xyxy(index)
        assert [face.track_id for face in item.faces] == [1], f"frame {index}"
        face = item.faces[0]
        assert face.detected == (index in seen)
        assert covered_share(truth, face.xyxy) >= 0.95, f"frame {index}: {face.xyxy} vs {truth}"
        # Not a runaway box either: the mask stays near the face.
        assert (face.xyxy[2] - face.xyxy[0]) < 1.6 * (truth[2] - truth[0]), f"frame {index}"
        # And the pixels of the face really were blurred.
        x0, y0, x1, y1 = truth.astype(int)
        original = frames[index][y0:y1, x0:x1].astype(np.float32)
        changed = np.abs(item.bgr[y0:y1, x0:x1].astype(np.float32) - original).mean()
        assert changed > 8.0, f"frame {index}: face pixels barely changed ({changed:.1f})"


def test_without_the_frame_the_missed_face_is_lost_after_max_missed_frames() -> None:
    """The same scene with the tracker given no frame: the old constant-velocity behaviour."""
    scene = MovingFace()
    config = TrackerConfig()
    tracker = FaceTracker(config)
    for index in range(SEEN_FIRST):
        tracker.update(detections_of(scene.face_xyxy(index)), frame_wh=(scene.width, scene.height))
    for offset in range(MISSED):
        update = tracker.update(Detections.empty(), frame_wh=(scene.width, scene.height))
        if update.ended:
            break
    assert update.ended == [1] and offset == config.max_missed_frames


@pytest.mark.parametrize("gone_at", [25, 40])
def test_track_ends_soon_after_the_face_disappears(gone_at: int) -> None:
    scene = MovingFace()
    config = TrackerConfig(max_missed_frames=6)
    tracker = FaceTracker(config)
    ended_at = None
    for index in range(FRAMES):
        bgr = scene.frame(index, present=index < gone_at)
        detections = detections_of(scene.face_xyxy(index)) if index < SEEN_FIRST else Detections.empty()
        update = tracker.update(detections, bgr=bgr)
        if index < gone_at:
            assert [face.track_id for face in update.faces] == [1], f"frame {index}"
        if update.ended:
            ended_at = index
            break
    assert ended_at is not None, "the track outlived the face"
    # The image stops supporting the track at once; it is then predicted for max_missed_frames.
    assert gone_at + config.max_missed_frames <= ended_at <= gone_at + config.max_missed_frames + 2


def test_track_ends_at_the_unseen_cap_while_the_image_still_shows_the_face() -> None:
    scene = MovingFace(velocity_xy=(2.0, 0.5))
    config = TrackerConfig(max_unseen_frames=30)
    tracker = FaceTracker(config)
    ended_at = None
    for index in range(FRAMES):
        detections = detections_of(scene.face_xyxy(index)) if index < SEEN_FIRST else Detections.empty()
        update = tracker.update(detections, bgr=scene.frame(index))
        if update.ended:
            ended_at = index
            break
    assert ended_at == SEEN_FIRST - 1 + config.max_unseen_frames + 1


def test_motion_measures_a_known_shift_and_rejects_a_different_patch() -> None:
    scene = MovingFace(velocity_xy=(5.0, -3.0), start_xy=(100.0, 100.0))
    first, second = scene.frame(0), scene.frame(1)
    box = scene.face_xyxy(0)
    previous = take_patch(first, box, work_size=64)
    current = previous.same_region(second)
    motion = estimate_motion(previous, current, box, min_points=6, max_fb_error=1.0)
    assert motion is not None and motion.points >= 6
    moved = motion.apply(box.reshape(2, 2)).reshape(4)
    np.testing.assert_allclose(moved, scene.face_xyxy(1), atol=1.5)
    assert motion.scale == pytest.approx(1.0, abs=0.03)
    template = previous.appearance(box)
    assert ncc(current.appearance(moved), template) > 0.9
    # Where the face was, only background is left.
    background = previous.same_region(textured_background(scene.width, scene.height))
    assert ncc(background.appearance(box), template) < 0.5


def test_motion_follows_a_face_that_grows() -> None:
    import cv2

    from moving_face_scene import CROP_XYXY, FACE_XYXY_IN_CROP
    from streamd.sample_faces import astronaut_bgr

    crop = astronaut_bgr()[CROP_XYXY[1] : CROP_XYXY[3], CROP_XYXY[0] : CROP_XYXY[2]]
    background = textured_background(640, 360)

    def frame(scale: float) -> tuple[np.ndarray, np.ndarray]:
        resized = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        canvas = background.copy()
        canvas[50 : 50 + resized.shape[0], 200 : 200 + resized.shape[1]] = resized
        return canvas, FACE_XYXY_IN_CROP * scale + np.array([200, 50, 200, 50])

    first, box0 = frame(1.0)
    second, box1 = frame(1.06)
    previous = take_patch(first, box0, work_size=64)
    motion = estimate_motion(previous, previous.same_region(second), box0, min_points=6, max_fb_error=1.0)
    assert motion is not None
    assert motion.scale == pytest.approx(1.06, abs=0.025)
    np.testing.assert_allclose(motion.apply(box0.reshape(2, 2)).reshape(4), box1, atol=3.0)


def test_two_faces_missed_together_keep_their_own_tracks() -> None:
    right = MovingFace(start_xy=(20.0, 20.0), velocity_xy=(3.0, 0.5))
    left = MovingFace(start_xy=(470.0, 150.0), velocity_xy=(-2.5, 0.0))
    tracker = FaceTracker(TrackerConfig())
    for index in range(60):
        bgr = left.frame(index, canvas=right.frame(index))
        truths = {1: right.face_xyxy(index), 2: left.face_xyxy(index)}
        seen = index < 10 or index >= 50
        update = tracker.update(detections_of(*truths.values()) if seen else Detections.empty(), bgr=bgr)
        by_id = {face.track_id: face for face in update.faces}
        assert sorted(by_id) == [1, 2] and update.ended == [], f"frame {index}"
        for track_id, truth in truths.items():
            assert by_id[track_id].detected == seen
            assert covered_share(truth, by_id[track_id].xyxy) >= 0.95, f"frame {index}, track {track_id}"


def test_frames_without_pixels_between_frames_with_pixels() -> None:
    """Callers may pass the frame on some updates only; motion resumes where it can."""
    scene = MovingFace(velocity_xy=(3.0, 0.0))
    tracker = FaceTracker(TrackerConfig())
    tracker.update(detections_of(scene.face_xyxy(0)), bgr=scene.frame(0))
    for index in range(1, 30):
        bgr = scene.frame(index) if index % 3 else None
        update = tracker.update(None, frame_wh=(scene.width, scene.height), bgr=bgr)
        assert [face.track_id for face in update.faces] == [1]
        assert covered_share(scene.face_xyxy(index), update.faces[0].xyxy) >= 0.95, f"frame {index}"
    # A frame of another size: no motion across it, and no failure.
    update = tracker.update(None, bgr=np.zeros((200, 300, 3), np.uint8))
    assert [face.track_id for face in update.faces] == [1]
