"""The frame-level evaluation on one photo: frames built around its dlib face, the daemon's detector,
tracker and the bundled synthetic identity model, and dlib judging what was written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("dlib")

from streamd.config import AnonymizerConfig, CenterFaceConfig, SdnMethodConfig  # noqa: E402
from streamd.evaluation.errors import EvaluationError  # noqa: E402
from streamd.evaluation.frame_protection import run_daemon, score_frames, summarize  # noqa: E402
from streamd.evaluation.held_out_frames import FRAME_WH, load_photos, parse_face_ids, photo_frames  # noqa: E402
from streamd.runtime.manifest import bundled_models_dir  # noqa: E402

MODEL = "sdn-synth128"


def test_face_ids_parse_ranges_and_refuse_garbage():
    assert parse_face_ids(["t1.jpg:0-2", "a.png:*", "b.jpg:4"]) == {"t1.jpg:0", "t1.jpg:1", "t1.jpg:2", "a.png:*",
                                                                   "b.jpg:4"}
    with pytest.raises(EvaluationError, match="PHOTO:INDEX"):
        parse_face_ids(["t1.jpg"])
    with pytest.raises(EvaluationError, match="not an index"):
        parse_face_ids(["t1.jpg:x"])


@pytest.fixture()
def photo_path(tmp_path: Path) -> Path:
    from streamd import sample_faces

    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), sample_faces.astronaut_bgr())
    return path


def test_excluded_faces_are_not_evaluated(photo_path: Path):
    with pytest.raises(EvaluationError, match="no held-out face"):
        load_photos([photo_path], parse_face_ids(["astronaut.png:*"]))
    with pytest.raises(EvaluationError, match="cannot be read"):
        load_photos([photo_path.with_name("missing.png")], set())


def test_the_daemon_replaces_the_face_and_dlib_judges_the_written_frame(photo_path: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    from streamd.anonymize import synthetic
    from streamd.evaluation.identity import DlibIdentityJudge

    # Random keys pick the same one of the model's synthetic faces one time in 16; runs A and B here
    # use codes that pick different ones (their largest value among the first 16 decides).
    bank_entry = [0]

    def code_for_entry(secrets: object, track_id: int, dimensions: int) -> np.ndarray:
        code = np.zeros(dimensions, np.float32)
        code[bank_entry[0]] = 3.0
        return code

    monkeypatch.setattr(synthetic, "code_from_track_secrets", code_for_entry)

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    entry = json.loads((bundled_models_dir() / "manifest.json").read_text())["models"][MODEL]
    for record in entry["files"].values():
        shutil.copy(bundled_models_dir() / record["path"], models_dir / record["path"])
    (models_dir / "manifest.json").write_text(json.dumps({"format_version": 1, "models": {MODEL: entry}}))

    photos = load_photos([photo_path], set())
    assert [face.face_id for face in photos[0].faces] == ["astronaut.png:0"]
    frames = list(photo_frames(photos, 2, (90, 140), np.random.default_rng(0)))
    assert len(frames) == 2
    for frame in frames:
        assert frame.bgr.shape == (FRAME_WH[1], FRAME_WH[0], 3)
        assert [face.face_id for face in frame.faces] == ["astronaut.png:0"]
        assert 80 <= frame.faces[0].width <= 150
    anonymizer = AnonymizerConfig(method="sdn", sdn=SdnMethodConfig(
        model=MODEL, models_dir=models_dir, allow_unprotective_model=True, intra_op_threads=1))
    detector = CenterFaceConfig(profile="fast")
    written_a = run_daemon(frames, anonymizer, detector)
    bank_entry[0] = 5
    written_b = run_daemon(frames, anonymizer, detector)
    scores = score_frames(frames, written_a, written_b, DlibIdentityJudge(), detector)
    assert len(scores) == 2
    summary = summarize(scores, 0.6)
    assert summary["replaced"] == 1.0 and summary["faces"] == 2 and summary["identities"] == 1
    assert all(score.distance_a > 0.3 and score.distance_ab > 0.1 for score in scores)
