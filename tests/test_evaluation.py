"""The evaluation harness: the dlib judge, the report files, `streamd eval` and its bad-input errors."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from streamd import sample_faces
from streamd.cli import main
from streamd.evaluation.dataset import evaluation_detector

pytest.importorskip("dlib", reason="the identity judge needs dlib (pip install dlib-bin, the 'eval' extra)")
pytest.importorskip("matplotlib", reason="the report plots need matplotlib (the 'eval' extra)")

GOOD_KEY = "11" * 32


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def judge():
    from streamd.evaluation.identity import DlibIdentityJudge

    return DlibIdentityJudge()


@pytest.fixture(scope="module")
def group_photo_faces():
    detector = evaluation_detector()
    try:
        photo = sample_faces.group_photo_bgr()
        return photo, detector.detect(photo)
    finally:
        detector.close()


def test_judge_same_photo_distance_is_zero(judge, group_photo_faces) -> None:
    photo, faces = group_photo_faces
    first = judge.embed(photo, faces.xyxy[0])
    assert first.shape == (128,)
    assert np.linalg.norm(first - judge.embed(photo.copy(), faces.xyxy[0])) < 1e-6


def test_judge_two_people_of_the_group_photo_are_apart(judge, group_photo_faces) -> None:
    photo, faces = group_photo_faces
    assert len(faces) == 6
    embeddings = [judge.embed(photo, box) for box in faces.xyxy[:2]]
    assert np.linalg.norm(embeddings[0] - embeddings[1]) >= judge.threshold == 0.6


def test_judge_describes_its_model(judge) -> None:
    description = judge.describe()
    assert description["threshold"] == 0.6
    assert len(description["recognition_model_sha256"]) == 64


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One face photo plus one file that is not an image."""
    folder = tmp_path_factory.mktemp("eval-photos")
    shutil.copy(sample_faces.sample_path("astronaut"), folder / "astronaut.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.fixture(scope="module")
def report_dir(photo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval-report")
    code = main(["eval", str(photo_folder), "--method", "mosaic", "--method", "blur+sealed", "--keys", "2",
                 "-o", str(out)])
    assert code == 0
    return out


def test_report_files_and_fields(report_dir: Path) -> None:
    report = json.loads((report_dir / "report.json").read_text())
    assert {"versions", "data", "identity_judge", "definitions", "perceptual_metrics", "methods", "partial"} <= set(report)
    assert report["versions"]["streamd"] and report["versions"]["dlib-bin"]
    assert report["data"]["faces"] == 1 and report["data"]["images_failed"] == 1
    assert report["partial"] is True and "broken.jpg" in report["data"]["failed_inputs"]
    assert set(report["perceptual_metrics"]) == {"lpips", "fid", "pieapp"}
    mosaic = report["methods"]["mosaic"]
    face = mosaic["faces"][0]
    assert {"identity_distance", "protected", "cosine_similarity", "detector_retained",
            "anonymization_accuracy", "restore", "diversity_mean_distance"} <= set(face)
    assert face["restore"] is None
    assert mosaic["aggregate"]["restore"].startswith("not applicable")
    assert mosaic["aggregate"]["background_changed_share_max"] == 0.0
    assert 0.0 <= mosaic["aggregate"]["anonymization_accuracy_mean"] <= 1.0
    sealed = report["methods"]["blur+sealed"]["aggregate"]
    assert sealed["restore"]["psnr_exact_faces"] == 1 and sealed["restore"]["ssim_mean"] == pytest.approx(1.0)
    assert sealed["restore"]["identity_distance_mean"] == pytest.approx(0.0, abs=1e-6)
    assert sealed["restore"]["wrong_key_spr"] == 1.0 and sealed["restore"]["wrong_key_refused"] == 1
    for name in ("report.md", "contact-sheet-mosaic.png", "contact-sheet-blur-sealed.png", "identity-distance.png",
                 "restore-psnr.png", "restore-identity-distance.png"):
        assert (report_dir / name).stat().st_size > 0, name
    markdown = (report_dir / "report.md").read_text()
    assert "| mosaic | 1 |" in markdown and "Partial results" in markdown and "broken.jpg" in markdown


def test_folder_without_faces(tmp_path: Path, capsys) -> None:
    import cv2

    folder = tmp_path / "no-faces"
    folder.mkdir()
    cv2.imwrite(str(folder / "grey.png"), np.full((64, 64, 3), 128, np.uint8))
    code, _, err = run_cli(capsys, "eval", str(folder), "--method", "blur", "-o", str(tmp_path / "out"))
    assert code != 0
    assert err.strip().splitlines()[-1].startswith("streamd: error: ") and "no face found" in err
    assert not (tmp_path / "out" / "report.json").exists()


def test_folder_of_unreadable_images(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG broken")
    code, _, err = run_cli(capsys, "eval", str(folder), "--method", "blur", "-o", str(tmp_path / "out"))
    assert code != 0 and "1 unreadable" in err and "nothing to measure" in err


def test_empty_folder(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "eval", str(tmp_path), "--method", "blur", "-o", str(tmp_path / "out"))
    assert code != 0 and "no image files" in err


def test_clip_without_a_video_stream(tmp_path: Path, capsys) -> None:
    import av

    path = tmp_path / "sound.wav"
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        frame.pts = 0
        frame.time_base = Fraction(1, 8000)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    code, _, err = run_cli(capsys, "eval", str(path), "--method", "blur", "-o", str(tmp_path / "out"))
    assert code != 0 and "streamd: error:" in err and "no video stream" in err


@pytest.mark.parametrize(
    ("key", "method", "message"),
    [("abc", "blur+sealed", "64 hex digits"), ("zz" * 32, "blur+sealed", "64 hex digits"),
     (GOOD_KEY, "blur", "does not match")],
)
def test_key_errors(tmp_path: Path, capsys, key: str, method: str, message: str) -> None:
    code, _, err = run_cli(capsys, "eval", "--method", method, "--key", key, "-o", str(tmp_path / "out"))
    assert code != 0 and message in err and err.startswith("streamd: error: --key")


def test_unknown_method_and_missing_model(tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, err = run_cli(capsys, "eval", "--method", "pixelate", "-o", str(tmp_path / "out"))
    assert code != 0 and "unknown method 'pixelate'" in err
    from streamd.evaluation.sdn_adapter import sdn_unavailable_reason

    monkeypatch.setenv("STREAMD_MODELS_DIR", str(tmp_path / "no-models"))

    if sdn_unavailable_reason() is not None:
        code, _, err = run_cli(capsys, "eval", "--method", "sdn", "-o", str(tmp_path / "out"))
        assert code != 0 and "streamd: error: method sdn:" in err


def test_given_key_restores_and_a_wrong_key_is_refused(photo_folder: Path, tmp_path: Path) -> None:
    from streamd.evaluation import run_evaluation

    outcome = run_evaluation(photo_folder, ["solid+sealed"], tmp_path / "out", key_hex=GOOD_KEY, diversity_keys=1)
    restore = outcome.report["methods"]["solid+sealed"]["faces"][0]["restore"]
    assert restore["recognized"] and restore["wrong_key"] == "refused" and restore["wrong_key_protected"]


def _toy_crop_method():
    """A toy crop method for the adapter tests: inverted colours in a key-chosen channel order."""
    from itertools import permutations

    from streamd.evaluation.methods import CropMethod

    channel_orders = list(permutations(range(3)))

    class ToyKeyedCrop(CropMethod):
        name = "toy"
        reversible = True
        keyed_surrogate = True

        def anonymize_crop(self, crop_bgr: np.ndarray, key: bytes) -> np.ndarray:
            return np.ascontiguousarray(255 - crop_bgr[:, :, list(channel_orders[key[0] % 6])])

        def restore_crop(self, crop_bgr: np.ndarray, key: bytes) -> np.ndarray:
            inverse = np.argsort(channel_orders[key[0] % 6])
            return np.ascontiguousarray(255 - crop_bgr[:, :, list(inverse)])

    return ToyKeyedCrop()


def test_crop_method_adapter_path(judge) -> None:
    from streamd.evaluation.dataset import load_sample_photos
    from streamd.evaluation.runner import EvalOptions, Evaluator, MethodResult, seed_key

    detector = evaluation_detector()
    try:
        dataset = load_sample_photos(detector)
        image = next(image for image in dataset.images if image.name == "astronaut")
        evaluator = Evaluator(judge, detector, EvalOptions(base_key=seed_key(0), key_given=False, diversity_keys=2))
        result = MethodResult(method=_toy_crop_method())
        evaluator.evaluate_image(result.method, image, result)
    finally:
        detector.close()
    row = result.rows[0]
    assert row["protected"]
    assert result.background[0]["changed_share"] == 0.0
    restore = row["restore"]
    # The warp there and back and the feathered edge blur a little; the right key brings the person back.
    assert restore["recognized"] and 0.0 < restore["ssim"] < 1.0
    assert restore["wrong_key"] == "restored" and restore["wrong_key_identity_distance"] is not None
    assert row["diversity_mean_distance"] is not None
    assert [label for label, _ in result.tiles[0]][2:] == ["restored", "wrong-key restore"]


def test_eval_on_a_clip(demo_clip, tmp_path: Path, capsys) -> None:
    code, out, _ = run_cli(capsys, "eval", str(demo_clip.path), "--method", "blur", "--max-frames", "1",
                           "-o", str(tmp_path / "out"))
    assert code == 0 and "| blur |" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["data"]["kind"] == "clip" and report["data"]["frames_sampled"] == 1
    assert report["data"]["faces"] == len(demo_clip.truth_xyxy[0])
    assert report["methods"]["blur"]["aggregate"]["spr"] == 1.0


def test_neural_methods_run_through_the_harness_on_the_committed_models(tmp_path) -> None:
    """The bundled sdn and cyclegan models evaluate end to end; their weakness is what gets reported."""
    pytest.importorskip("dlib")
    from streamd.evaluation import run_evaluation

    outcome = run_evaluation(None, ["sdn", "cyclegan"], tmp_path, diversity_keys=2)
    methods = outcome.report["methods"]
    for name in ("sdn", "cyclegan"):
        aggregate = methods[name]["aggregate"]
        assert aggregate["faces"] == 8 and 0.0 <= aggregate["spr"] <= 1.0
        assert aggregate["restore"]["faces"] == 8 and aggregate["restore"]["psnr_db_mean_finite"] > 10
    assert isinstance(methods["cyclegan"]["aggregate"]["anonymization_accuracy_mean"], float)
    assert isinstance(methods["sdn"]["aggregate"]["diversity_mean_distance"], float)
    assert (tmp_path / "report.json").exists()
