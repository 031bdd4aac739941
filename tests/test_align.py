"""Alignment and compositing helpers."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.align import (
    ARCFACE_TEMPLATE_112,
    canonical_kps5,
    expand_box,
    feathered_mask,
    paste_back,
    paste_order,
    similarity_transform,
    warp_to_crop,
)
from streamd.types import TrackedFace


def apply_matrix(matrix: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    return points_xy @ matrix[:, :2].T + matrix[:, 2]


def textured_frame(height: int = 360, width: int = 640) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack(
        [128 + 100 * np.sin(cols / 23.0), 128 + 100 * np.cos(rows / 17.0), (rows + cols) % 256], axis=-1
    )
    return frame.astype(np.uint8)


@pytest.mark.parametrize("crop_size", [112, 128, 256])
def test_template_maps_to_itself(crop_size: int) -> None:
    template = canonical_kps5(crop_size)
    np.testing.assert_allclose(template, ARCFACE_TEMPLATE_112 * crop_size / 112, rtol=1e-6)
    matrix = similarity_transform(template, crop_size)
    assert matrix.shape == (2, 3) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-4)


def test_similarity_recovers_rotation_scale_translation() -> None:
    crop_size = 112
    angle, scale, shift = np.deg2rad(20.0), 2.5, np.array([300.0, 150.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    frame_kps5 = (canonical_kps5(crop_size) @ rotation.T) * scale + shift  # crop -> frame
    matrix = similarity_transform(frame_kps5, crop_size)  # frame -> crop
    np.testing.assert_allclose(apply_matrix(matrix, frame_kps5), canonical_kps5(crop_size), atol=1e-3)
    linear = matrix[:, :2]
    assert np.linalg.det(linear) == pytest.approx(1 / scale**2, rel=1e-4)


def test_similarity_rejects_degenerate_landmarks() -> None:
    with pytest.raises(ValueError):
        similarity_transform(np.full((5, 2), 10.0), 112)
    with pytest.raises(ValueError):
        similarity_transform(np.full((5, 2), np.nan), 112)


def test_warp_then_paste_back_leaves_frame_nearly_unchanged() -> None:
    frame_bgr = textured_frame()
    crop_size = 256
    frame_kps5 = canonical_kps5(crop_size) * 0.6 + np.array([200.0, 80.0])  # a face magnified in the crop
    matrix = similarity_transform(frame_kps5, crop_size)
    crop_bgr = warp_to_crop(frame_bgr, matrix, crop_size)
    assert crop_bgr.shape == (crop_size, crop_size, 3) and crop_bgr.dtype == np.uint8
    pasted = paste_back(frame_bgr, crop_bgr, matrix, feathered_mask(crop_size, 0.1))
    assert pasted is not frame_bgr and pasted.shape == frame_bgr.shape
    difference = np.abs(pasted.astype(int) - frame_bgr.astype(int))
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 6


def test_paste_back_only_touches_the_warped_region() -> None:
    frame_bgr = textured_frame()
    original = frame_bgr.copy()
    crop_size = 112
    matrix = similarity_transform(canonical_kps5(crop_size) + np.array([300.0, 100.0]), crop_size)
    white_crop = np.full((crop_size, crop_size, 3), 255, np.uint8)
    pasted = paste_back(frame_bgr, white_crop, matrix, feathered_mask(crop_size, 0.0))
    np.testing.assert_array_equal(frame_bgr, original)  # input untouched
    changed_rows, changed_cols = np.nonzero(np.any(pasted != frame_bgr, axis=-1))
    assert changed_cols.min() >= 299 and changed_cols.max() <= 300 + crop_size
    assert changed_rows.min() >= 99 and changed_rows.max() <= 100 + crop_size
    assert np.all(pasted[140:180, 340:380] == 255)


def test_paste_back_into_out_and_outside_frame() -> None:
    frame_bgr = textured_frame()
    crop_size = 64
    out = frame_bgr.copy()
    black_crop = np.zeros((crop_size, crop_size, 3), np.uint8)
    mask = feathered_mask(crop_size, 0.0)
    partly_outside = similarity_transform(canonical_kps5(crop_size) + np.array([-30.0, -20.0]), crop_size)
    result = paste_back(frame_bgr, black_crop, partly_outside, mask, out=out)
    assert result is out
    assert np.all(out[:40, :30] == 0) and np.array_equal(out[100:, 100:], frame_bgr[100:, 100:])
    wholly_outside = similarity_transform(canonical_kps5(crop_size) + np.array([-500.0, 0.0]), crop_size)
    np.testing.assert_array_equal(paste_back(frame_bgr, black_crop, wholly_outside, mask), frame_bgr)


def test_feathered_mask() -> None:
    crop_size = 100
    mask = feathered_mask(crop_size, 0.2)
    assert mask.shape == (crop_size, crop_size) and mask.dtype == np.float32
    assert mask.min() >= 0 and mask.max() <= 1
    assert np.all(mask[25:75, 25:75] == 1.0)
    assert mask[0, 0] < 0.01 and mask[0, 50] < 0.05
    row = mask[50, :50]
    assert np.all(np.diff(row) >= 0) and row[0] < row[10] < row[19] <= 1.0
    np.testing.assert_array_equal(mask, mask.T)
    np.testing.assert_array_equal(mask, mask[::-1, ::-1])
    assert np.all(feathered_mask(crop_size, 0.0) == 1.0)
    with pytest.raises(ValueError):
        feathered_mask(crop_size, 0.7)


def tracked_face(track_id: int, xyxy: list[float]) -> TrackedFace:
    return TrackedFace(
        track_id=track_id,
        xyxy=np.array(xyxy, np.float32),
        kps5=np.zeros((5, 2), np.float32),
        score=0.9,
        detected=True,
        age_frames=0,
    )


def test_paste_order_smallest_first() -> None:
    faces = [tracked_face(1, [0, 0, 100, 100]), tracked_face(2, [0, 0, 20, 20]), tracked_face(3, [0, 0, 50, 60])]
    assert paste_order(faces) == [1, 2, 0]
    assert paste_order([]) == []


def test_expand_box() -> None:
    assert expand_box(np.array([100, 100, 200, 150]), 0.2, (640, 360)) == (80, 90, 220, 160)
    assert expand_box(np.array([10, 5, 60, 55]), 0.5, (640, 360)) == (0, 0, 85, 80)
    assert expand_box(np.array([600, 300, 640, 360]), 0.25, (640, 360)) == (590, 285, 640, 360)
    assert expand_box(np.array([10.4, 10.6, 20.2, 20.7]), 0.0, (640, 360)) == (10, 10, 21, 21)
    assert all(isinstance(value, int) for value in expand_box(np.array([1.5, 2, 3, 4]), 0.1, (10, 10)))
