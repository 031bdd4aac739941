"""`method: sdn` through the daemon pipeline and `streamd restore --mode neural|sealed`.

A tiny SDN with fixed random weights is exported to ONNX in a temporary models folder, so these tests
exercise the plumbing (alignment, batching, per-track passwords, manifest checks, recording, both
restore modes) independently of how well the committed model is trained; the model's quality is
measured by `streamd eval` and reported in its model card.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.export_onnx import export_sdn, update_manifest  # noqa: E402
from streamd.anonymize import build_anonymizer  # noqa: E402
from streamd.anonymize.sdn import SdnAnonymizer  # noqa: E402
from streamd.config import AnonymizerConfig, SdnMethodConfig  # noqa: E402
from streamd.errors import ConfigError, ModelError  # noqa: E402
from streamd.nets.sdn import SdnGenerators, save_generators, sdn_config  # noqa: E402
from streamd.types import TrackedFace  # noqa: E402

from restore_helpers import anonymize_reversibly, make_keypair, psnr  # noqa: E402

MODEL = "sdn-tiny"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(7)
    generators = SdnGenerators(sdn_config("tiny")).eval()
    save_generators(generators, folder / f"{MODEL}.pt")
    export_sdn(generators, folder, MODEL)
    update_manifest(folder, MODEL, generators, {})
    return folder


def sdn_config_for(models_dir: Path, allow_unprotective: bool = True, **attributes: float) -> AnonymizerConfig:
    """The random test network protects nobody, so it runs only with the explicit testing flag."""
    return AnonymizerConfig(method="sdn", sdn=SdnMethodConfig(
        model=MODEL, models_dir=models_dir, attributes=attributes, allow_unprotective_model=allow_unprotective))


def face_at(track_id: int, x: float, y: float, size: float = 90.0) -> TrackedFace:
    unit = np.array([[0.34, 0.46], [0.66, 0.46], [0.5, 0.64], [0.37, 0.82], [0.63, 0.82]], np.float32)
    kps5 = unit * size + np.array([x, y], np.float32)
    return TrackedFace(track_id, np.array([x, y, x + size, y + size], np.float32), kps5, 0.9, True, 1)


def test_same_track_same_surrogate_other_track_other_surrogate(models_dir: Path, demo_clip) -> None:
    anonymizer = build_anonymizer(sdn_config_for(models_dir))
    assert isinstance(anonymizer, SdnAnonymizer)
    from conftest import decode_all

    frame = decode_all(demo_clip.path)[0][1]
    box = demo_clip.truth_xyxy[0][0]
    x, y = float(box[0]), float(box[1])
    first = anonymizer.apply(frame, [face_at(1, x, y)])
    again = anonymizer.apply(frame, [face_at(1, x, y)])
    other = anonymizer.apply(frame, [face_at(2, x, y)])
    region = anonymizer.region_of(face_at(1, x, y), (frame.shape[1], frame.shape[0]))
    x0, y0, x1, y1 = region
    assert np.array_equal(first, again), "one track must keep one surrogate"
    # An untrained network changes little, but another key must change something.
    assert not np.array_equal(first[y0:y1, x0:x1], other[y0:y1, x0:x1])
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(first[outside], frame[outside]), "sdn must only touch its crop footprint"
    anonymizer.end_track(1)
    renewed = anonymizer.apply(frame, [face_at(1, x, y)])
    assert not np.array_equal(renewed, first), "a new track with a reused id gets a new key"
    anonymizer.close()


def test_missing_or_tampered_model_is_an_error(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        build_anonymizer(sdn_config_for(tmp_path))
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in models_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    encoder = copy / f"{MODEL}-encoder.onnx"
    encoder.write_bytes(encoder.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="sha256"):
        build_anonymizer(sdn_config_for(copy))


def test_a_model_not_shown_to_protect_is_refused_unless_allowed(models_dir: Path, tmp_path: Path) -> None:
    import json

    with pytest.raises(ModelError, match="no measured protection rate.*allow_unprotective_model"):
        build_anonymizer(sdn_config_for(models_dir, allow_unprotective=False))
    copy = tmp_path / "measured"
    copy.mkdir()
    for path in models_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    manifest_path = copy / "manifest.json"
    for spr, accepted in ((0.5, False), (0.97, True)):
        manifest = json.loads(manifest_path.read_text())
        manifest["models"][MODEL]["protection"] = {"spr": spr, "faces": 40}
        manifest_path.write_text(json.dumps(manifest))
        config = sdn_config_for(copy, allow_unprotective=False)
        if accepted:
            build_anonymizer(config).close()
        else:
            with pytest.raises(ModelError, match="protects only 50% of held-out faces"):
                build_anonymizer(config)


def test_unknown_attribute_is_a_config_error(models_dir: Path) -> None:
    with pytest.raises(ConfigError, match="no attribute Wings"):
        build_anonymizer(sdn_config_for(models_dir, Wings=1.0))


def test_recording_restores_by_sealed_payloads_and_by_the_decoder(models_dir, demo_clip, tmp_path, monkeypatch,
                                                                  capsys) -> None:
    from streamd.cli import main
    from streamd.reversible.recording.recording_format import decode_video_frames, read_recording

    monkeypatch.setenv("STREAMD_MODELS_DIR", str(models_dir))
    private_key, public_key = make_keypair(tmp_path / "keys")
    recording_path = anonymize_reversibly(demo_clip.path, tmp_path / "rec.mkv", [public_key],
                                          anonymizer=sdn_config_for(models_dir))
    recording = read_recording(recording_path)
    details = recording.records[0].document["method_details"]
    assert details["model"] == MODEL and details["crop_size"] == 64
    assert all(d["kind"] == "sealed_face_packet" for r in recording.records for d in r.payload_descriptors)

    original = [bgr for _, _, bgr in decode_video_frames(demo_clip.path)]
    anonymized = [bgr for _, _, bgr in decode_video_frames(recording_path)]
    face = recording.records[0].document["faces"][0]
    track_id = face["track_id"]
    x0, y0, x1, y1 = (int(round(v)) for v in face["xyxy"])
    before = psnr(original[0][y0:y1, x0:x1], anonymized[0][y0:y1, x0:x1])
    results = {}
    for mode in ("sealed", "neural"):
        output = tmp_path / f"restored-{mode}.mkv"
        code = main(["restore", str(recording_path), "--key", str(private_key), "-o", str(output),
                     "--tracks", str(track_id), "--mode", mode, "--audit-log", str(tmp_path / "audit.jsonl"), "--reason", "test"])
        err = capsys.readouterr().err
        assert code == 0, err
        restored = [bgr for _, _, bgr in decode_video_frames(output)]
        assert len(restored) == len(anonymized)
        results[mode] = psnr(original[0][y0:y1, x0:x1], restored[0][y0:y1, x0:x1])
    assert results["sealed"] > 38 > before, results
    # The decoder of an untrained network gives no face back, but it runs on the recorded crop and
    # changes it: the plumbing is exercised; the trained model's fidelity is in its model card.
    neural = [bgr for _, _, bgr in decode_video_frames(tmp_path / "restored-neural.mkv")]
    assert not np.array_equal(neural[0][y0:y1, x0:x1], anonymized[0][y0:y1, x0:x1])


def test_cameras_running_the_same_model_share_one_loaded_copy(models_dir: Path, tmp_path: Path) -> None:
    import shutil

    from streamd.anonymize.neural_models import shared_model_key
    from streamd.runtime.shared import SHARED_MODELS

    models_dir = Path(shutil.copytree(models_dir, tmp_path / "models"))  # a model no other test holds
    config = sdn_config_for(models_dir)
    key = shared_model_key("sdn", config.sdn)
    first, second = build_anonymizer(config), build_anonymizer(config)
    assert isinstance(first, SdnAnonymizer) and isinstance(second, SdnAnonymizer)
    assert first.codec is second.codec and SHARED_MODELS.users(key) == 2
    with pytest.raises(ModelError):
        build_anonymizer(sdn_config_for(models_dir, allow_unprotective=False))  # sharing skips no check
    first.close()
    crops = np.zeros((1, 64, 64, 3), np.uint8)
    bits = np.zeros((1, second.codec.spec.password_bits), np.float32)
    attributes = np.zeros((1, len(second.codec.spec.attribute_names)), np.float32)
    assert second.codec.anonymize(crops, bits, attributes).shape == crops.shape, "still open for the other camera"
    second.close()
    assert SHARED_MODELS.users(key) == 0
    third = build_anonymizer(config)
    assert isinstance(third, SdnAnonymizer) and third.codec is not second.codec
    third.close()
