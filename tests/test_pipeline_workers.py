"""Frames detected side by side (`detector.detect_workers`): the same detections as one frame after the
other, really on two threads at once, and a failed detection still fails only its own frame closed."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from streamd.anonymize import build_anonymizer
from streamd.config import AnonymizerConfig, CameraConfig, CenterFaceConfig, FileSourceConfig
from streamd.detect import build_detector
from streamd.detect.base import FrameDetections, FrameDetector
from streamd.pipeline import StreamPipeline
from streamd.types import AnonymizedFrame, Detections

from conftest import decode_all
from memory_source import MemoryFrameSource

FRAMES = 16
WAIT_S = 20.0


def _camera(workers: int) -> CameraConfig:
    return CameraConfig(id="workers", source=FileSourceConfig(path="unused.mp4"),
                        detector=CenterFaceConfig(detect_workers=workers),
                        anonymizer=AnonymizerConfig(method="solid"))


def _run(frames: list[np.ndarray], camera: CameraConfig, detector) -> list[AnonymizedFrame]:
    written: list[AnonymizedFrame] = []
    pipeline = StreamPipeline(camera, MemoryFrameSource(frames), detector, build_anonymizer(camera.anonymizer), [],
                              on_frame=written.append)
    pipeline.run()
    return written


def _faces(written: list[AnonymizedFrame]) -> list[list[tuple[int, tuple[float, ...], bool]]]:
    return [[(face.track_id, tuple(np.round(face.xyxy, 3)), face.detected) for face in item.faces] for item in written]


class _Recorder(FrameDetector):
    """The real scheduled detector, recording what each frame was asked to look at again, how many
    frames were detected at once, and optionally failing one frame or holding one until another starts."""

    def __init__(self, inner: FrameDetector, fail_frame: int | None = None,
                 hold: tuple[int, int] | None = None) -> None:
        self.inner = inner
        self.fail_frame = fail_frame
        self.hold = hold
        self.started = {number: threading.Event() for number in range(FRAMES)}
        self.held_until_other_started: bool | None = None
        self.focus_seen: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._running = 0
        self.most_at_once = 0

    def detect(self, bgr: np.ndarray) -> Detections:
        raise AssertionError("the side-by-side pipeline calls detect_frame")

    def detect_frame(self, bgr: np.ndarray, frame_number: int, focus: Callable[[], np.ndarray]) -> FrameDetections:
        with self._lock:
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        self.started[frame_number].set()
        try:
            if self.hold is not None and frame_number == self.hold[0]:
                self.held_until_other_started = self.started[self.hold[1]].wait(WAIT_S)
            if frame_number == self.fail_frame:
                raise RuntimeError("simulated model failure")

            def recorded_focus() -> np.ndarray:
                boxes = focus()
                self.focus_seen[frame_number] = np.array(boxes, copy=True)
                return boxes

            return self.inner.detect_frame(bgr, frame_number, recorded_focus)
        finally:
            with self._lock:
                self._running -= 1


def test_side_by_side_detection_tracks_exactly_as_one_frame_after_the_other(demo_clip) -> None:
    frames = [bgr for _, bgr in decode_all(demo_clip.path)][:FRAMES]
    in_turn_camera, side_camera = _camera(1), _camera(2)
    in_turn = _run(frames, in_turn_camera, build_detector(in_turn_camera.detector))
    recorder = _Recorder(build_detector(side_camera.detector))
    side_by_side = _run(frames, side_camera, recorder)
    assert len(side_by_side) == len(in_turn) == FRAMES
    assert sum(len(faces) for faces in _faces(in_turn)) >= FRAMES * 3, "the demo frames hold several faces"
    assert _faces(side_by_side) == _faces(in_turn)
    # each frame looked again where the tracker held faces after the frame before it
    for number in range(1, FRAMES):
        before = np.array([face.xyxy for face in side_by_side[number - 1].faces], np.float32).reshape(-1, 4)
        assert recorder.focus_seen[number].shape == before.shape


def test_two_frames_are_detected_at_once(demo_clip) -> None:
    frames = [bgr for _, bgr in decode_all(demo_clip.path)][:FRAMES]
    camera = _camera(2)
    recorder = _Recorder(build_detector(camera.detector), hold=(3, 4))
    _run(frames, camera, recorder)
    assert recorder.held_until_other_started is True, "frame 4's detection must start while frame 3's runs"
    assert recorder.most_at_once == 2


def test_a_failed_detection_fails_only_its_frame_closed(demo_clip) -> None:
    frames = [bgr for _, bgr in decode_all(demo_clip.path)][:FRAMES]
    camera = _camera(2)
    recorder = _Recorder(build_detector(camera.detector), fail_frame=5)
    written: list[AnonymizedFrame] = []
    pipeline = StreamPipeline(camera, MemoryFrameSource(frames), recorder, build_anonymizer(camera.anonymizer), [],
                              on_frame=written.append)
    pipeline.run()
    assert pipeline.stats.errors == {"detector": 1}
    assert [item.frame.index for item in written] == list(range(FRAMES))
    assert written[5].status != "ok" and written[5].bgr.max() == 0, "the failed frame carries no picture"
    assert all(item.status == "ok" for number, item in enumerate(written) if number != 5)
