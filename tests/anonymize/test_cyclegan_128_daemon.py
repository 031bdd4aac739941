"""`method: cyclegan` with the committed 128-pixel model, run as a user runs it: the CLI in a subprocess
on a real H.264 clip, configured from YAML, then restored with F."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from restore_helpers import make_keypair, psnr
from streamd.reversible.recording.recording_format import decode_video_frames, read_recording
from streamd.errors import ModelError
from streamd.runtime.manifest import bundled_models_dir, load_manifest

MODEL = "cyclegan-128"
TIMEOUT_S = 300


def needs_testing_flag() -> bool:
    """Whether the daemon's gate refuses the committed model (its recorded attacks recover most faces)."""
    try:
        load_manifest(bundled_models_dir()).model(MODEL).check_protects(allow_unprotective=False)
    except ModelError:
        return True
    return False


def write_config(path: Path, crop_size: int, allow: bool, models_dir: Path | None = None) -> Path:
    path.write_text(
        "cameras:\n  - id: c\n    source: {type: file, path: unused.mp4}\n"
        "    anonymizer:\n      method: cyclegan\n      cyclegan:\n"
        f"        model: {MODEL}\n        crop_size: {crop_size}\n        blocks_per_side: 6\n"
        f"        allow_unprotective_model: {'true' if allow else 'false'}\n"
        + (f"        models_dir: {models_dir}\n" if models_dir is not None else ""))
    return path


def streamd(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamd", *argv], capture_output=True, text=True, timeout=TIMEOUT_S)


def test_cli_pixelates_faces_at_128_pixels_and_f_restores_them(demo_clip, tmp_path) -> None:
    private_key, public_key = make_keypair(tmp_path / "keys")
    config = write_config(tmp_path / "cyclegan.yaml", 128, allow=needs_testing_flag())
    recording_path = tmp_path / "rec.mkv"
    result = streamd("anonymize", str(demo_clip.path), "-o", str(recording_path), "--config", str(config),
                     "--recipient", str(public_key), "--profile", "fast")
    assert result.returncode == 0, result.stderr
    recording = read_recording(recording_path)
    document = recording.records[0].document
    assert document["method"] == "cyclegan"
    assert document["method_details"]["model"] == MODEL
    assert document["method_details"]["crop_size"] == 128 and document["method_details"]["blocks_per_side"] == 6

    original = [bgr for _, _, bgr in decode_video_frames(demo_clip.path)]
    anonymized = [bgr for _, _, bgr in decode_video_frames(recording_path)]
    face = document["faces"][0]
    x0, y0, x1, y1 = (int(round(v)) for v in face["xyxy"])
    anonymized_psnr = psnr(original[0][y0:y1, x0:x1], anonymized[0][y0:y1, x0:x1])
    assert anonymized_psnr < 30, "G changed the face"

    restored_path = tmp_path / "restored.mkv"
    result = streamd("restore", str(recording_path), "--key", str(private_key), "-o", str(restored_path),
                     "--tracks", str(face["track_id"]), "--mode", "cyclegan",
                     "--audit-log", str(tmp_path / "audit.jsonl"), "--reason", "test")
    assert result.returncode == 0, result.stderr
    restored = [bgr for _, _, bgr in decode_video_frames(restored_path)]
    assert len(restored) == len(anonymized)
    restored_psnr = psnr(original[0][y0:y1, x0:x1], restored[0][y0:y1, x0:x1])
    # F of this CPU-trained model restores little (about 2 dB on this face, models/cyclegan-128.md), but
    # it must bring the face closer to the original than the pixelation.
    assert restored_psnr > anonymized_psnr + 0.5, (restored_psnr, anonymized_psnr)


def test_a_crop_size_the_model_was_not_trained_on_is_one_clear_error(demo_clip, tmp_path) -> None:
    config = write_config(tmp_path / "wrong.yaml", 64, allow=True)
    result = streamd("anonymize", str(demo_clip.path), "-o", str(tmp_path / "out.mp4"), "--config", str(config))
    assert result.returncode != 0 and not (tmp_path / "out.mp4").exists()
    lines = [line for line in result.stderr.splitlines() if line.strip() and "WARNING" not in line]
    assert "Traceback" not in result.stderr
    assert any("128x128 crops" in line and "crop_size 64" in line for line in lines), result.stderr


def test_the_daemon_refuses_the_model_when_its_recorded_rate_is_under_the_gate(demo_clip, tmp_path) -> None:
    """The committed files with a manifest whose protection record is lowered: refused without the flag."""
    models = tmp_path / "models"
    models.mkdir()
    manifest = json.loads((bundled_models_dir() / "manifest.json").read_text())
    entry = manifest["models"][MODEL]
    for file in entry["files"].values():
        shutil.copyfile(bundled_models_dir() / file["path"], models / file["path"])
    entry["protection"] = {**entry["protection"], "spr": 0.5}
    (models / "manifest.json").write_text(json.dumps({"format_version": 1, "models": {MODEL: entry}}))
    config = write_config(tmp_path / "gate.yaml", 128, allow=False, models_dir=models)
    result = streamd("anonymize", str(demo_clip.path), "-o", str(tmp_path / "out.mp4"), "--config", str(config))
    assert result.returncode != 0 and not (tmp_path / "out.mp4").exists()
    assert "protects only 50%" in result.stderr and "allow_unprotective_model" in result.stderr
    assert "Traceback" not in result.stderr
