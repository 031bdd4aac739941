"""Detector profiles: which passes each frame gets, and what the scheduled detector finds."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamd import sample_faces
from streamd.config import CenterFaceConfig
from streamd.detect import build_detector
from streamd.detect.lowlight import gamma_for, mean_brightness, normalise_dark
from streamd.detect.schedule import build_schedule


def test_fast_runs_one_pass_per_frame():
    schedule = build_schedule("fast", (1280, 720), (640, 360))
    assert [[p.kind for p in slot] for slot in schedule.slots] == [["global"]]


def test_balanced_alternates_the_whole_frame_with_tiles_and_tilted_passes():
    schedule = build_schedule("balanced", (1280, 720), (640, 360))
    kinds = [[p.kind for p in slot] for slot in schedule.slots]
    assert kinds[0::2] == [["global"]] * (len(kinds) // 2)
    extras = [slot[0] for slot in schedule.slots[1::2]]
    full_resolution = {p for p in extras if p.kind == "tile" and p.scale == 1.0}
    enlarged = {p for p in extras if p.kind == "tile" and p.scale == 2.0}
    tilted = {p for p in extras if p.kind == "tilted"}
    assert len(full_resolution) == 4 and len(enlarged) == 16 and len(tilted) == 2
    # Every pass of the cycle, and about one inference-size pass of pixels per frame.
    assert set(extras) == full_resolution | enlarged | tilted
    assert schedule.mean_pixels_per_frame < 1.3 * 640 * 360


def test_enlarged_tiles_cover_the_frame_at_twice_the_size():
    from streamd.detect.schedule import enlarged_tiles

    tiles = enlarged_tiles((1280, 720))
    covered = np.zeros((720, 1280), bool)
    for detection_pass in tiles:
        x0, y0, x1, y1 = detection_pass.region_xyxy
        covered[y0:y1, x0:x1] = True
        assert detection_pass.input_wh == (704, 416)
    assert covered.all()


def test_thorough_runs_everything_every_frame():
    schedule = build_schedule("thorough", (1280, 720), (640, 360))
    for slot in schedule.slots:
        kinds = [p.kind for p in slot]
        assert kinds.count("global") == 1 and kinds.count("tilted") == 2
        assert sum(1 for p in slot if p.kind == "tile" and p.scale == 1.0) == 4
    enlarged = [p for slot in schedule.slots for p in slot if p.scale == 2.0]
    assert len(enlarged) == len(set(enlarged)) == 16


def test_small_frames_get_no_full_resolution_tiles_but_enlarged_ones():
    schedule = build_schedule("thorough", (640, 360), (640, 360))
    tiles = [p for slot in schedule.slots for p in slot if p.kind == "tile"]
    assert tiles and all(p.scale == 2.0 for p in tiles)


def test_robust_weights_add_a_coarse_pass_beside_every_whole_frame_pass():
    for profile in ("fast", "balanced", "thorough"):
        schedule = build_schedule(profile, (1280, 720), (640, 360), coarse=True)
        for slot in schedule.slots:
            kinds = [p.kind for p in slot]
            assert kinds.count("coarse") == kinds.count("global")
            for coarse in (p for p in slot if p.kind == "coarse"):
                assert coarse.region_xyxy == (0, 0, 1280, 720) and coarse.input_wh == (320, 180)


def test_a_face_filling_the_frame_is_found_with_the_robust_weights():
    # A face as tall as the frame: about 360 px on the inference-size input, where the fine-tuned
    # weights score it about 0.46; the coarse pass sees it at half that size.
    face = cv2.resize(sample_faces.astronaut_bgr()[50:170, 165:285], (720, 720))
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[:, 280:1000] = face
    found = build_detector(CenterFaceConfig(profile="fast")).detect(frame)
    confident = found.scores >= 0.7
    assert confident.any()
    assert (found.xyxy[confident, 2] - found.xyxy[confident, 0]).max() > 400


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError):
        build_schedule("reckless", (1280, 720), (640, 360))


def small_face_frame() -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A 1280x720 frame with the astronaut's face drawn about 16 px wide, and its box."""
    photo = sample_faces.astronaut_bgr()
    face = photo[30:250, 120:320]  # the head with some context
    face_small = cv2.resize(face, (30, 33), interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280, 3), 120, np.uint8)
    frame[300:333, 200:230] = face_small
    return frame, (200, 300, 230, 333)


def covers(detections, box) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in detections.xyxy)


def test_a_face_too_small_for_the_whole_frame_pass_is_found_by_a_tile():
    frame, box = small_face_frame()
    fast = build_detector(CenterFaceConfig(profile="fast"))
    thorough = build_detector(CenterFaceConfig(profile="thorough"))
    assert not covers(fast.detect(frame), box)
    assert covers(thorough.detect(frame), box)


def test_a_tilted_face_is_found_by_the_tilted_pass():
    photo = sample_faces.astronaut_bgr()
    frame = np.full((720, 1280, 3), 90, np.uint8)
    head = cv2.resize(photo[0:300, 80:380], (240, 240))
    matrix = cv2.getRotationMatrix2D((120, 120), 55, 1.0)
    frame[200:440, 500:740] = cv2.warpAffine(head, matrix, (240, 240), borderMode=cv2.BORDER_REPLICATE)
    box = (560, 260, 680, 380)
    thorough = build_detector(CenterFaceConfig(profile="thorough"))
    assert covers(thorough.detect(frame), box)


def test_dark_inputs_are_brightened_and_bright_ones_left_alone():
    frame, _ = small_face_frame()
    assert normalise_dark(frame) is frame
    dark = (frame.astype(np.float32) * 0.15).astype(np.uint8)
    assert gamma_for(mean_brightness(dark)) is not None
    lifted = normalise_dark(dark)
    assert mean_brightness(lifted) > 90
    assert mean_brightness(dark) < 30


def test_focus_passes_look_again_around_small_tracked_faces_in_turn():
    from streamd.detect.focus import FOCUS_INPUT_PX, focus_passes

    boxes = np.array([[100, 100, 120, 122], [300, 300, 500, 520], [1270, 700, 1280, 720],
                      [600, 50, 630, 84], [900, 400, 940, 444]], np.float32)
    first = focus_passes(boxes, (1280, 720), budget=2, turn=0, input_px=FOCUS_INPUT_PX["balanced"])
    second = focus_passes(boxes, (1280, 720), budget=2, turn=1, input_px=FOCUS_INPUT_PX["balanced"])
    assert all(p.kind == "track" and p.input_wh == (FOCUS_INPUT_PX["balanced"],) * 2 for p in first + second)
    centres = lambda passes: {((p.region_xyxy[0] + p.region_xyxy[2]) // 2, (p.region_xyxy[1] + p.region_xyxy[3]) // 2)
                              for p in passes}
    # The big face gets no focus pass; the small ones share the budget in turn.
    assert len(first) == len(second) == 2 and centres(first) != centres(second)
    # A square at the frame corner is moved inside the frame, not cut.
    corner = focus_passes(boxes[2:3], (1280, 720), budget=1, turn=0, input_px=160)[0]
    assert corner.region_xyxy[2] == 1280 and corner.region_xyxy[3] == 720
    assert focus_passes(boxes, (1280, 720), budget=0, turn=0, input_px=160) == []


def test_a_small_face_is_found_again_around_its_track_on_frames_between_tiles():
    frame, box = small_face_frame()
    balanced = build_detector(CenterFaceConfig(profile="balanced"))
    assert covers(balanced.detect(frame), box)  # the first frame runs every pass
    balanced.detect(frame)
    missing_without_focus = balanced.detect(frame)  # a whole-frame slot: too small for it
    assert not covers(missing_without_focus, box)
    balanced.detect(frame)
    balanced.focus_on(np.array([box], np.float32))
    assert covers(balanced.detect(frame), box)


def test_passes_are_split_into_shares_of_about_equal_pixels_in_their_order():
    from streamd.detect.passes import DetectionPass
    from streamd.detect.schedule import split_by_pixels

    passes = (
        DetectionPass("global", (0, 0, 1280, 720), 0.5),  # 640x360
        DetectionPass("tile", (0, 0, 704, 416), 1.0),
        DetectionPass("tile", (576, 0, 1280, 416), 1.0),
        DetectionPass("coarse", (0, 0, 1280, 720), 0.25),  # 320x180
    )
    shares = split_by_pixels(passes, 2)
    assert sorted(p for share in shares for p in share) == [0, 1, 2, 3]
    assert all(share == sorted(share) for share in shares)
    loads = [sum(passes[p].pixels for p in share) for share in shares]
    assert max(loads) - min(loads) <= 704 * 416  # no share holds more than one big pass too many
    assert len(shares) == 2
    assert split_by_pixels(passes, 1) == [[0, 1, 2, 3]]
    assert split_by_pixels(passes[:1], 4) == [[0]]
    assert split_by_pixels((), 2) == []


def test_the_first_frame_finds_the_same_faces_on_two_threads_as_on_one():
    frame, box = small_face_frame()
    one = build_detector(CenterFaceConfig(detect_workers=1)).detect(frame)
    two = build_detector(CenterFaceConfig(detect_workers=2)).detect(frame)
    assert covers(two, box)
    order = np.lexsort(one.xyxy.T[::-1])
    order_two = np.lexsort(two.xyxy.T[::-1])
    np.testing.assert_allclose(two.xyxy[order_two], one.xyxy[order], atol=1e-3)
    np.testing.assert_allclose(two.scores[order_two], one.scores[order], atol=1e-4)
