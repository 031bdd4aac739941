"""`method: cyclegan` through the daemon pipeline and `streamd restore --mode cyclegan`.

A tiny CycleGAN with fixed random weights is exported to ONNX in a temporary models folder, so these
tests exercise the plumbing (alignment, batching, manifest checks, recording, restore with F)
independently of how well the committed model is trained; its quality is in models/cyclegan-tiny.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.export_cyclegan import export_cyclegan, update_cyclegan_manifest  # noqa: E402
from streamd.anonymize import build_anonymizer  # noqa: E402
from streamd.anonymize.cyclegan import CycleganAnonymizer  # noqa: E402
from streamd.config import AnonymizerConfig, CycleganMethodConfig  # noqa: E402
from streamd.errors import ModelError  # noqa: E402
from streamd.nets.cyclegan import CycleGanGenerators, cyclegan_config, save_cyclegan_generators  # noqa: E402

from restore_helpers import anonymize_reversibly, make_keypair, psnr  # noqa: E402
from test_sdn_method import face_at  # noqa: E402

MODEL = "cyclegan-tiny"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(3)
    # Without the global skip a random generator replaces the crop outright, so restore visibly runs F.
    generators = CycleGanGenerators(cyclegan_config("tiny", global_skip=False)).eval()
    save_cyclegan_generators(generators, folder / f"{MODEL}.pt")
    export_cyclegan(generators, folder, MODEL)
    update_cyclegan_manifest(folder, MODEL, generators, {})
    return folder


def cyclegan_config_for(models_dir: Path) -> AnonymizerConfig:
    """The test network protects nobody, so it runs only with the explicit testing flag."""
    return AnonymizerConfig(method="cyclegan", cyclegan=CycleganMethodConfig(
        model=MODEL, models_dir=models_dir, allow_unprotective_model=True))


def test_faces_are_replaced_inside_their_crop_footprint_in_one_batch(models_dir: Path, demo_clip) -> None:
    from conftest import decode_all

    anonymizer = build_anonymizer(cyclegan_config_for(models_dir))
    assert isinstance(anonymizer, CycleganAnonymizer) and not anonymizer.keyed
    # The test model's manifest entry records no pixelation rule.
    assert anonymizer.method_details() == {"model": MODEL, "crop_size": 64, "blocks_per_side": None, "feather": 0.15}
    frame = decode_all(demo_clip.path)[0][1]
    faces = [face_at(1, 40.0, 40.0), face_at(2, 200.0, 60.0, size=120.0)]
    both = anonymizer.apply(frame, faces)
    alone = anonymizer.apply(frame, faces[:1])
    assert np.array_equal(anonymizer.apply(frame, faces), both), "no key: the same face gives the same output"
    outside = np.ones(frame.shape[:2], bool)
    for face in faces:
        x0, y0, x1, y1 = anonymizer.region_of(face, (frame.shape[1], frame.shape[0]))
        assert not np.array_equal(both[y0:y1, x0:x1], frame[y0:y1, x0:x1])
        outside[y0:y1, x0:x1] = False
    assert np.array_equal(both[outside], frame[outside]), "cyclegan must only touch its crop footprints"
    x0, y0, x1, y1 = anonymizer.region_of(faces[0], (frame.shape[1], frame.shape[0]))
    assert np.array_equal(both[y0:y1, x0:x1], alone[y0:y1, x0:x1]), "batching must not change a face"
    assert np.array_equal(anonymizer.apply(frame, []), frame)
    anonymizer.close()


def test_missing_or_tampered_model_is_an_error(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        build_anonymizer(cyclegan_config_for(tmp_path))
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in models_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    deid = copy / f"{MODEL}-deid.onnx"
    deid.write_bytes(deid.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="sha256"):
        build_anonymizer(cyclegan_config_for(copy))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["models"][MODEL]["kind"] = "sdn"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="not a CycleGAN"):
        build_anonymizer(cyclegan_config_for(copy))


def test_recording_restores_with_f_and_other_modes_are_checked(models_dir, demo_clip, tmp_path, monkeypatch,
                                                               capsys) -> None:
    from streamd.cli import main
    from streamd.reversible.recording.recording_format import decode_video_frames, read_recording

    monkeypatch.setenv("STREAMD_MODELS_DIR", str(models_dir))
    private_key, public_key = make_keypair(tmp_path / "keys")
    recording_path = anonymize_reversibly(demo_clip.path, tmp_path / "rec.mkv", [public_key],
                                          anonymizer=cyclegan_config_for(models_dir))
    recording = read_recording(recording_path)
    assert recording.records[0].document["method"] == "cyclegan"
    assert recording.records[0].document["method_details"] == {
        "model": MODEL, "crop_size": 64, "blocks_per_side": None, "feather": 0.15}

    original = [bgr for _, _, bgr in decode_video_frames(demo_clip.path)]
    anonymized = [bgr for _, _, bgr in decode_video_frames(recording_path)]
    face = recording.records[0].document["faces"][0]
    track_id = face["track_id"]
    x0, y0, x1, y1 = (int(round(v)) for v in face["xyxy"])
    assert psnr(original[0][y0:y1, x0:x1], anonymized[0][y0:y1, x0:x1]) < 30
    audit = tmp_path / "audit.jsonl"
    restored_frames = {}
    for mode in ("cyclegan", "neural", "sealed"):
        output = tmp_path / f"restored-{mode}.mkv"
        code = main(["restore", str(recording_path), "--key", str(private_key), "-o", str(output),
                     "--tracks", str(track_id), "--mode", mode, "--audit-log", str(audit), "--reason", "test"])
        err = capsys.readouterr().err
        assert code == 0, err
        restored_frames[mode] = [bgr for _, _, bgr in decode_video_frames(output)]
        assert len(restored_frames[mode]) == len(anonymized)
    # F of a random network gives no face back, but it runs on the recorded crop and changes it.
    cyclegan_face = restored_frames["cyclegan"][0][y0:y1, x0:x1]
    assert not np.array_equal(cyclegan_face, anonymized[0][y0:y1, x0:x1])
    assert psnr(cyclegan_face, restored_frames["neural"][0][y0:y1, x0:x1]) > 45, "neural runs F as well"
    assert psnr(original[0][y0:y1, x0:x1], restored_frames["sealed"][0][y0:y1, x0:x1]) > 38
    assert len(audit.read_text().splitlines()) == 6  # a started and a finished entry per run

    # Restore still requires the private key that unwraps the recording's track keys.
    wrong_key, _ = make_keypair(tmp_path / "other-keys")
    code = main(["restore", str(recording_path), "--key", str(wrong_key), "-o", str(tmp_path / "x.mkv"),
                 "--mode", "cyclegan", "--audit-log", str(audit), "--reason", "test"])
    assert code != 0 and not (tmp_path / "x.mkv").exists()
    capsys.readouterr()


def test_cyclegan_mode_refuses_other_methods(demo_clip, tmp_path, capsys) -> None:
    from streamd.cli import main

    private_key, public_key = make_keypair(tmp_path / "keys")
    recording_path = anonymize_reversibly(demo_clip.path, tmp_path / "rec.mkv", [public_key], method="solid")
    code = main(["restore", str(recording_path), "--key", str(private_key), "-o", str(tmp_path / "out.mkv"),
                 "--mode", "cyclegan", "--audit-log", str(tmp_path / "audit.jsonl"), "--reason", "test"])
    assert code != 0
    assert "--mode cyclegan restores recordings made with method cyclegan" in capsys.readouterr().err
