"""Pass geometry, tile coverage and merging of detections from several passes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamd.detect.passes import (
    DetectionPass,
    drop_cut_faces,
    map_to_frame,
    merge_detections,
    render_pass,
    render_passes,
    tile_regions,
)
from streamd.types import Detections


def detections(*boxes: tuple[float, float, float, float], scores: list[float] | None = None) -> Detections:
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    centres = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], 1)
    kps5 = np.repeat(centres[:, None, :], 5, axis=1).astype(np.float32)
    score_array = np.array(scores if scores is not None else [0.9] * len(xyxy), np.float32)
    return Detections(xyxy=xyxy, kps5=kps5, scores=score_array)


def test_tiles_cover_the_frame_and_overlap_by_a_small_face():
    regions = tile_regions((1280, 720), (704, 416), 64)
    assert len(regions) == 4
    covered = np.zeros((720, 1280), bool)
    for x0, y0, x1, y1 in regions:
        assert (x1 - x0, y1 - y0) == (704, 416)
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    # Any 64 px square lies wholly inside some tile.
    for x in range(0, 1280 - 64, 37):
        for y in range(0, 720 - 64, 29):
            assert any(x0 <= x and y0 <= y and x + 64 <= x1 and y + 64 <= y1 for x0, y0, x1, y1 in regions), (x, y)


def test_a_frame_smaller_than_a_tile_is_one_tile():
    assert tile_regions((320, 240), (704, 384), 64) == [(0, 0, 320, 240)]


def test_scaled_pass_maps_boxes_back_to_frame_pixels():
    detection_pass = DetectionPass("global", (0, 0, 1280, 720), 0.5)
    assert detection_pass.input_wh == (640, 360)
    mapped = map_to_frame(detections((10, 20, 30, 50)), detection_pass, (1280, 720))
    np.testing.assert_allclose(mapped.xyxy, [[20, 40, 60, 100]], atol=1e-4)
    np.testing.assert_allclose(mapped.kps5[0, 0], [40, 70], atol=1e-4)


def test_tile_pass_offsets_boxes_by_its_corner():
    detection_pass = DetectionPass("tile", (576, 336, 1280, 720), 1.0)
    mapped = map_to_frame(detections((10, 20, 30, 50)), detection_pass, (1280, 720))
    np.testing.assert_allclose(mapped.xyxy, [[586, 356, 606, 386]], atol=1e-4)


def test_tilted_pass_finds_the_box_around_the_turned_face():
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[90:110, 140:160] = 255  # a bright square centred on (150, 100)
    detection_pass = DetectionPass("tilted", (0, 0, 300, 200), 1.0, 30.0)
    turned = render_pass(frame, detection_pass)
    ys, xs = np.nonzero(turned[:, :, 0] > 128)
    box_on_input = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    mapped = map_to_frame(detections(box_on_input), detection_pass, (300, 200))
    x0, y0, x1, y1 = mapped.xyxy[0]
    # The axis-aligned box around the turned-back box holds the square whole, and not much more.
    assert x0 <= 141 and y0 <= 91 and x1 >= 159 and y1 >= 109
    assert x1 - x0 < 40 and y1 - y0 < 40


def test_faces_cut_by_an_inner_tile_edge_are_dropped_but_frame_edges_are_kept():
    detection_pass = DetectionPass("tile", (576, 0, 1280, 384), 1.0)
    found = detections((577, 100, 620, 150), (700, 100, 740, 150), (1240, 0, 1280, 40), (900, 350, 950, 384))
    kept = drop_cut_faces(found, detection_pass, (1280, 720), margin_px=2.0)
    np.testing.assert_allclose(kept.xyxy, [[700, 100, 740, 150], [1240, 0, 1280, 40]])


def test_merge_keeps_one_box_per_face_across_passes():
    from_global = detections((100, 100, 150, 160), scores=[0.6])
    from_tile = detections((102, 98, 151, 158), (400, 300, 420, 324), scores=[0.8, 0.5])
    merged = merge_detections([from_global, Detections.empty(), from_tile], nms_iou=0.3)
    assert len(merged) == 2
    np.testing.assert_allclose(sorted(merged.scores.tolist()), [0.5, 0.8])


def test_merge_of_nothing_is_empty():
    assert len(merge_detections([Detections.empty()], 0.3)) == 0


def test_empty_region_is_refused():
    with pytest.raises(ValueError):
        DetectionPass("tile", (10, 10, 10, 50), 1.0)


def test_a_coarse_pass_is_shrunk_from_the_inference_size_input_as_from_the_frame():
    rng = np.random.default_rng(3)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (0, 0), 2.0)
    whole = DetectionPass("global", (0, 0, 1280, 720), 0.5)
    coarse = DetectionPass("coarse", (0, 0, 1280, 720), 0.25)
    tile = DetectionPass("tile", (0, 0, 704, 416), 1.0)
    rendered = render_passes(frame, [tile, coarse, whole])
    assert [image.shape[:2] for image in rendered] == [(416, 704), (180, 320), (360, 640)]
    assert np.array_equal(rendered[0], render_pass(frame, tile))
    assert np.array_equal(rendered[2], render_pass(frame, whole))
    direct = render_pass(frame, coarse).astype(np.int16)
    assert np.abs(rendered[1].astype(np.int16) - direct).max() <= 1
    # alone, or beside a turned pass, the coarse pass is drawn from the frame
    turned = DetectionPass("tilted", (0, 0, 1280, 720), 0.5, 30.0)
    assert np.array_equal(render_passes(frame, [turned, coarse])[1], render_pass(frame, coarse))
