"""Latent manipulation (LSMM) on the committed sdn-tiny model through onnxruntime: the directions file,
its effect on held-out faces, configuration, the daemon's header record and the shift-aware restore."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # export/ is a script folder, not part of the installed package

from export.face_measures import CropLandmarker, measure_attributes  # noqa: E402
from export.sdn_data import build_offline_faces  # noqa: E402
from streamd.anonymize import build_anonymizer  # noqa: E402
from streamd.config import AnonymizerConfig, SdnMethodConfig, parse_config  # noqa: E402
from streamd.errors import ConfigError, ModelError  # noqa: E402
from streamd.reversible.restore.restore_neural import SdnNeuralRestorer  # noqa: E402
from streamd.runtime.lsmm import DIRECTIONS_ROLE, load_directions  # noqa: E402
from streamd.runtime.sdn import SdnCodec  # noqa: E402

from restore_helpers import anonymize_reversibly, make_keypair, psnr  # noqa: E402

MODELS_DIR = REPO_ROOT / "models"
MODEL = "sdn-tiny"


@pytest.fixture(scope="module")
def codec() -> SdnCodec:
    return SdnCodec.from_manifest(MODELS_DIR, MODEL, intra_op_threads=1)


@pytest.fixture(scope="module")
def held_out(codec) -> np.ndarray:
    """Offline faces never used to fit the directions (they fit on the training half)."""
    _, records = build_offline_faces(codec.spec.resolution, len(codec.spec.attribute_names))
    return np.stack([record.bgr for record in records])


def _inputs(codec: SdnCodec, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    bits = np.random.default_rng(seed).integers(0, 2, (n, codec.spec.password_bits)).astype(np.float32)
    return bits, np.zeros((n, len(codec.spec.attribute_names)), np.float32)


def test_directions_file_is_listed_checked_and_tied_to_the_weights(codec, tmp_path):
    directions = load_directions(MODELS_DIR, MODEL)
    assert set(directions.names) == {"smiling", "mouth_open"}
    assert directions.latent_shape == codec.spec.latent_shape
    assert not np.any(directions.shift({}))
    copy = tmp_path / "models"
    shutil.copytree(MODELS_DIR, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    path = copy / manifest["models"][MODEL]["files"][DIRECTIONS_ROLE]["path"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the manifest"):
        load_directions(copy, MODEL)
    shutil.copyfile(MODELS_DIR / path.name, path)
    manifest["models"][MODEL]["files"]["torch_weights"]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="fitted for weights"):
        load_directions(copy, MODEL)


def test_mouth_open_direction_opens_the_mouth_of_held_out_surrogates(codec, held_out):
    """Measured on this model (models/sdn-tiny.md): +2 against -2 along `mouth_open` raises the
    mouth-opening ratio on average (0.106 to 0.143 over the held-out faces)."""
    directions = load_directions(MODELS_DIR, MODEL)
    bits, attributes = _inputs(codec, len(held_out))
    landmarker = CropLandmarker(codec.spec.resolution)
    try:
        less = measure_attributes(landmarker, codec.anonymize(held_out, bits, attributes, directions.shift({"mouth_open": -2})))
        more = measure_attributes(landmarker, codec.anonymize(held_out, bits, attributes, directions.shift({"mouth_open": 2})))
    finally:
        landmarker.close()
    change = more["mouth_open"] - less["mouth_open"]
    change = change[np.isfinite(change)]
    assert len(change) >= 15
    assert change.mean() > 0.015 and np.mean(change > 0) > 0.6, change


def test_manipulation_settings_are_validated(tmp_path):
    for degree in (".nan", ".inf"):
        text = f"cameras:\n  - id: a\n    source: {{type: file, path: x.mp4}}\n" \
               f"    anonymizer:\n      method: sdn\n      sdn: {{manipulations: {{smiling: {degree}}}}}\n"
        with pytest.raises(ConfigError, match="finite"):
            parse_config(text, "camera.yaml")
    config = AnonymizerConfig(method="sdn", sdn=SdnMethodConfig(
        models_dir=MODELS_DIR, allow_unprotective_model=True, manipulations={"wings": 1.0}))
    with pytest.raises(ConfigError, match="no manipulation direction wings.*smiling"):
        build_anonymizer(config)
    assert SdnMethodConfig().manipulations == {}


def test_daemon_records_the_manipulation_and_restore_uses_it(demo_clip, tmp_path, monkeypatch, capsys):
    from streamd.cli import main
    from streamd.reversible.recording.recording_format import decode_video_frames, read_recording

    monkeypatch.setenv("STREAMD_MODELS_DIR", str(MODELS_DIR))
    manipulations = {"smiling": 1.5, "mouth_open": -0.5}
    anonymizer = AnonymizerConfig(method="sdn", sdn=SdnMethodConfig(
        model=MODEL, allow_unprotective_model=True, manipulations=manipulations))
    private_key, public_key = make_keypair(tmp_path / "keys")
    recording_path = anonymize_reversibly(demo_clip.path, tmp_path / "rec.mkv", [public_key], anonymizer=anonymizer)
    recording = read_recording(recording_path)
    details = recording.records[0].document["method_details"]
    assert details["manipulation"] == {"degrees": manipulations,
                                       "directions_sha256": load_directions(MODELS_DIR, MODEL).sha256}
    track_id = recording.records[0].document["faces"][0]["track_id"]
    output = tmp_path / "restored.mkv"
    code = main(["restore", str(recording_path), "--key", str(private_key), "-o", str(output), "--tracks",
                 str(track_id), "--mode", "neural", "--audit-log", str(tmp_path / "audit.jsonl"), "--reason", "test"])
    assert code == 0, capsys.readouterr().err
    assert len([1 for _ in decode_video_frames(output)]) == len(recording.records)


def test_restore_with_the_recorded_shift_beats_ignoring_it(codec, held_out, monkeypatch):
    """Measured (models/sdn-tiny.md): about 28.4 dB inverting the encoder with the recorded shift, 25.4 dB
    inverting it without the shift."""
    monkeypatch.setenv("STREAMD_MODELS_DIR", str(MODELS_DIR))
    directions = load_directions(MODELS_DIR, MODEL)
    degrees = {"mouth_open": 2.0}
    bits, attributes = _inputs(codec, len(held_out), seed=3)
    surrogates = codec.anonymize(held_out, bits, attributes, directions.shift(degrees))
    plain = {"model": MODEL, "crop_size": codec.spec.resolution,
             "attributes": {name: 0.0 for name in codec.spec.attribute_names}}
    recorded = dict(plain, manipulation={"degrees": degrees, "directions_sha256": directions.sha256})
    keys = {0: b"k" * 32}
    scores = {}
    for label, details in (("ignoring", plain), ("recorded", recorded)):
        restorer = SdnNeuralRestorer(details, keys, codec=codec)
        restorer._bits = {index: bits[index] for index in range(len(held_out))}
        scores[label] = np.mean([psnr(face, restorer.restore_crop(surrogate, index))
                                 for index, (face, surrogate) in enumerate(zip(held_out, surrogates))])
    assert scores["recorded"] > scores["ignoring"] + 1.5, scores
    stale = dict(recorded, manipulation={"degrees": degrees, "directions_sha256": "0" * 64})
    with pytest.raises(Exception, match="directions file sha256"):
        SdnNeuralRestorer(stale, keys, codec=codec)
