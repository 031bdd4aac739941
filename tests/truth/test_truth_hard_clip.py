"""Generated hard clips: ground-truth boxes hold real faces, tags and visibility follow the drawing,
the phone clip is stored sideways with display metadata, and the miss criterion separates an untouched
re-encode from masked faces on a real clip."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamd.config import CenterFaceConfig
from streamd.detect import build_detector
from streamd.detect.base import pairwise_iou
from streamd.sources.orientation import first_frame_orientation
from streamd.truth.faces import load_split_faces, split_photos
from streamd.truth.hard_clip import build_benchmark, render_scene
from streamd.truth.mot import read_conditions, read_gt
from streamd.truth.runner import RunResult, RunSpec, find_clips, score_outputs, upright_frames
from streamd.truth.scenes import build_scene
from streamd.sinks.video_out import VideoFileWriter

SECONDS = 0.4  # 10 frames per clip


@pytest.fixture(scope="module")
def tune_faces():
    return load_split_faces("tune")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, tune_faces) -> Path:
    folder = tmp_path_factory.mktemp("bench")
    build_benchmark(folder, "tune", seconds=SECONDS, scenes=["sizes", "occlusion", "crowd", "phone"], faces=tune_faces)
    return folder


def test_splits_use_different_photos() -> None:
    tune = {name for name, *_ in split_photos("tune")}
    heldout = {name for name, *_ in split_photos("heldout")}
    assert tune == {"t1", "astronaut"}
    assert not tune & heldout
    assert {"tom_hanks", "messi5", "face_swapped"} <= heldout and any(name.startswith("lfw") for name in heldout)


def test_tune_split_has_all_seven_faces(tune_faces) -> None:
    assert len(tune_faces) == 7


def test_rendering_is_deterministic(tune_faces) -> None:
    scene = build_scene("sizes", tune_faces)
    first = [frame.bgr for frame in render_scene(scene, 3)]
    second = [frame.bgr for frame in render_scene(scene, 3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], first[2])  # faces move


def test_ground_truth_boxes_hold_faces_centerface_finds(bench: Path) -> None:
    detector = build_detector(CenterFaceConfig(profile="fast", input_width=1280, input_height=1280, threshold=0.4))
    checked = found = 0
    try:
        for clip in find_clips(bench, bench):
            truth = read_gt(clip.gt)
            for index, frame in enumerate(upright_frames(clip.video)):
                if index % 5:
                    continue
                boxes = [b for b in truth if b.frame == index + 1 and b.width >= 48 and b.visibility >= 0.9]
                if not boxes:
                    continue
                detections = detector.detect(frame).xyxy
                iou = pairwise_iou(np.array([b.xyxy for b in boxes]), detections)
                checked += len(boxes)
                found += int(np.count_nonzero(iou.max(axis=1) >= 0.4)) if detections.size else 0
    finally:
        detector.close()
    print(f"{found} of {checked} ground-truth faces found")
    assert checked >= 15
    assert found / checked >= 0.8


def test_tags_and_visibility_follow_the_scene(bench: Path) -> None:
    crowd = read_gt(bench / "tune-crowd" / "gt" / "gt.txt")
    assert 8 <= len({b.id for b in crowd}) <= 15
    crowd_tags = read_conditions(bench / "tune-crowd" / "gt" / "conditions.csv")
    assert all("crowd" in crowd_tags[(b.frame, b.id)] for b in crowd)
    occlusion = read_gt(bench / "tune-occlusion" / "gt" / "gt.txt")
    occlusion_tags = read_conditions(bench / "tune-occlusion" / "gt" / "conditions.csv")
    assert set((b.frame, b.id) for b in occlusion) == set(occlusion_tags)
    for box in occlusion:
        assert ("occluded" in occlusion_tags[(box.frame, box.id)]) == (box.visibility < 0.95)
    sizes = read_gt(bench / "tune-sizes" / "gt" / "gt.txt")
    widths = [b.width for b in sizes]
    assert min(widths) < 24 and max(widths) >= 96


def test_phone_clip_is_stored_sideways_with_upright_truth(bench: Path) -> None:
    video = bench / "tune-phone.mp4"
    orientation = first_frame_orientation(video)
    assert orientation is not None and orientation.clockwise == 90
    frame = next(upright_frames(video))
    assert frame.shape[:2] == (1280, 720)
    truth = read_gt(bench / "tune-phone" / "gt" / "gt.txt")
    assert all(b.left >= 0 and b.left + b.width <= 720 and b.top + b.height <= 1280 for b in truth)
    tags = read_conditions(bench / "tune-phone" / "gt" / "conditions.csv")
    assert all("rotated-video" in value for value in tags.values())


def test_reencode_counts_every_face_missed_and_masking_counts_none(bench: Path, tmp_path: Path) -> None:
    clip = next(c for c in find_clips(bench, bench) if c.name == "tune-sizes")
    frames = list(upright_frames(clip.video))
    truth = read_gt(clip.gt)
    untouched, masked = RunSpec("untouched", "none"), RunSpec("masked", "blur")
    paths = {untouched: tmp_path / "untouched.mp4", masked: tmp_path / "masked.mp4"}
    writers = {spec: VideoFileWriter(path, (1280, 720), Fraction(1, 25), Fraction(25)) for spec, path in paths.items()}
    for index, frame in enumerate(frames):
        writers[untouched].write(frame, index)
        blurred = frame.copy()
        for box in (b for b in truth if b.frame == index + 1):
            x0, y0, x1, y1 = (int(round(v)) for v in box.xyxy)
            blurred[y0:y1, x0:x1] = cv2.GaussianBlur(frame[y0:y1, x0:x1], (0, 0), max(2.0, box.width / 6))
        writers[masked].write(blurred, index)
    for writer in writers.values():
        writer.close()
    results = {spec: RunResult(spec) for spec in paths}
    score_outputs(clip, paths, results, frame_step=2, min_visibility=0.5)
    assert len(results[untouched].instances) >= 30
    assert all(record.missed for record in results[untouched].instances)
    assert not any(record.missed for record in results[masked].instances)
    assert max(results[untouched].false_mask_shares) < 0.001
