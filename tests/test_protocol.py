"""Frame and event messages: round trips, schema checks and version rules."""

from __future__ import annotations

import copy
import json
from fractions import Fraction

import numpy as np
import pytest

from streamd.protocol import (
    ProtocolError,
    build_event,
    decode_event,
    decode_frame_message,
    encode_event,
    encode_frame_message,
    event_schema,
    frame_header_schema,
    new_stream_epoch,
    validate_event,
    validate_frame_header,
)
from streamd.types import AnonymizedFrame, TrackedFace, VideoFrame


def make_anonymized(index: int = 7, faces: int = 2, status: str = "ok") -> AnonymizedFrame:
    rows, cols = np.mgrid[0:36, 0:52]
    bgr = np.stack([cols * 4, rows * 6, (rows + cols + index) % 200], axis=-1).astype(np.uint8)
    frame = VideoFrame(bgr=bgr, index=index, pts=index * 3600, time_base=Fraction(1, 90000), wallclock=1700000000.25)
    tracked = [
        TrackedFace(
            track_id=track_id,
            xyxy=np.array([1.5 + track_id, 2.25, 20.125, 30.0], np.float32),
            kps5=np.arange(10, dtype=np.float32).reshape(5, 2) + track_id,
            score=0.87,
            detected=track_id % 2 == 0,
            age_frames=3,
        )
        for track_id in range(faces)
    ]
    return AnonymizedFrame(frame=frame, bgr=bgr, faces=tracked, method="blur", status=status)


def header_of(parts: list[bytes]) -> dict:
    return json.loads(parts[1])


def with_header(parts: list[bytes], header: dict) -> list[bytes]:
    return [parts[0], json.dumps(header).encode(), *parts[2:]]


def test_schemas_are_valid_draft_2020_12() -> None:
    assert frame_header_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert event_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_raw_round_trip_is_exact_and_header_documented() -> None:
    anonymized = make_anonymized()
    epoch = new_stream_epoch()
    parts = encode_frame_message(anonymized, "cam-1", epoch, image_format="raw")
    assert parts[0] == b"frame.cam-1"
    assert len(parts) == 3
    header, bgr, extras = decode_frame_message(parts)
    assert np.array_equal(bgr, anonymized.bgr)
    assert extras == []
    assert header["schema"] == "streamd.frame" and header["version"] == "1.2"
    assert header["camera"] == "cam-1" and header["stream_epoch"] == epoch
    assert (header["frame_index"], header["pts"], header["time_base"]) == (7, 7 * 3600, "1/90000")
    assert header["wallclock"] == 1700000000.25
    assert (header["width"], header["height"]) == (52, 36)
    assert header["image"] == {"format": "raw", "shape": [36, 52, 3], "dtype": "uint8"}
    assert header["method"] == "blur" and header["status"] == "ok"
    assert header["payloads"] == []
    assert header["faces"][1] == {
        "track_id": 1,
        "xyxy": [2.5, 2.25, 20.125, 30.0],
        "kps5": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]],
        "detected": False,
        "score": 0.87,
    }


def test_jpeg_round_trip_and_extra_parts() -> None:
    anonymized = make_anonymized(faces=0, status="masked")
    sealed = [({"kind": "sealed_face", "track_id": 4}, b"\x00\x01ciphertext"), ({"kind": "blob"}, b"")]
    parts = encode_frame_message(anonymized, "cam1", "00ff00ff00ff00ff", "jpeg", 95, payloads=sealed)
    assert len(parts) == 5
    header, bgr, extras = decode_frame_message(parts)
    assert header["image"] == {"format": "jpeg", "shape": [36, 52, 3], "dtype": "uint8", "quality": 95}
    assert header["status"] == "masked" and header["faces"] == []
    assert header["payloads"] == [{"kind": "sealed_face", "track_id": 4, "size": 12}, {"kind": "blob", "size": 0}]
    assert extras == [b"\x00\x01ciphertext", b""]
    assert bgr.shape == (36, 52, 3)
    assert np.abs(bgr.astype(int) - anonymized.bgr).mean() < 3


def test_frame_without_pts() -> None:
    anonymized = make_anonymized()
    frame = VideoFrame(bgr=anonymized.bgr, index=0, pts=None, time_base=None, wallclock=5.0)
    parts = encode_frame_message(AnonymizedFrame(frame=frame, bgr=frame.bgr, faces=[], method="solid"), "c", "abcdef01", "raw")
    header, _, _ = decode_frame_message(parts)
    assert header["pts"] is None and header["time_base"] is None


@pytest.mark.parametrize("field", ["camera", "frame_index", "pts", "faces", "payloads", "image", "status"])
def test_schema_rejects_missing_fields(field: str) -> None:
    parts = encode_frame_message(make_anonymized(), "cam1", "0123456789abcdef", "raw")
    header = header_of(parts)
    del header[field]
    with pytest.raises(ProtocolError, match=f"'{field}' is a required property"):
        decode_frame_message(with_header(parts, header))


def test_schema_rejects_bad_values() -> None:
    parts = encode_frame_message(make_anonymized(), "cam1", "0123456789abcdef", "raw")
    bad_face = header_of(parts)
    bad_face["faces"][0]["xyxy"] = [1, 2, 3]
    with pytest.raises(ProtocolError, match="faces/0/xyxy"):
        decode_frame_message(with_header(parts, bad_face))
    bad_status = header_of(parts)
    bad_status["status"] = "raw-original"
    with pytest.raises(ProtocolError, match="status"):
        decode_frame_message(with_header(parts, bad_status))


def test_unknown_major_version_rejected_minor_accepted() -> None:
    parts = encode_frame_message(make_anonymized(), "cam1", "0123456789abcdef", "raw")
    newer_minor = header_of(parts)
    newer_minor["version"] = "1.7"
    newer_minor["added_in_1_7"] = {"anything": True}
    header, _, _ = decode_frame_message(with_header(parts, newer_minor))
    assert header["version"] == "1.7"
    next_major = header_of(parts)
    next_major["version"] = "2.0"
    with pytest.raises(ProtocolError, match="unsupported major version 2.0"):
        decode_frame_message(with_header(parts, next_major))


def test_message_structure_errors() -> None:
    parts = encode_frame_message(make_anonymized(), "cam1", "0123456789abcdef", "raw")
    with pytest.raises(ProtocolError, match="at least 3 parts"):
        decode_frame_message(parts[:2])
    with pytest.raises(ProtocolError, match="does not match header camera"):
        decode_frame_message([b"frame.cam2", *parts[1:]])
    with pytest.raises(ProtocolError, match="extra parts"):
        decode_frame_message([*parts, b"unannounced"])
    with pytest.raises(ProtocolError, match="raw image has"):
        decode_frame_message([*parts[:2], parts[2][:-1]])
    with pytest.raises(ProtocolError, match="not UTF-8 JSON"):
        decode_frame_message([parts[0], b"{not json", parts[2]])


def test_events_round_trip_and_rules() -> None:
    epoch = new_stream_epoch()
    start = build_event("track_start", "cam1", epoch, track_id=3, frame_index=10, pts=36000, time_base=Fraction(1, 90000))
    start["wrapped_keys"] = [{"key_id": "k1", "wrapped": "base64"}]
    parts = encode_event(start)
    assert parts[0] == b"event.cam1"
    assert decode_event(parts) == start
    up = build_event("stream_up", "cam1", epoch, details={"width": 1280, "height": 720, "average_rate": "25/1"})
    assert decode_event(encode_event(up))["details"]["width"] == 1280
    with pytest.raises(ProtocolError, match="track_id"):
        encode_event(build_event("track_end", "cam1", epoch, frame_index=3))
    with pytest.raises(ProtocolError, match="message"):
        encode_event(build_event("error", "cam1", epoch))
    with pytest.raises(ProtocolError, match="unknown event type"):
        build_event("party", "cam1", epoch)
    future = copy.deepcopy(up)
    future["type"] = "key_rotation"
    future["version"] = "1.2"
    assert decode_event(encode_event(future))["type"] == "key_rotation"
    future["version"] = "3.1"
    with pytest.raises(ProtocolError, match="unsupported major version 3.1"):
        validate_event(future)
    with pytest.raises(ProtocolError, match="2 parts"):
        decode_event(parts + [b"x"])


def test_validate_frame_header_names_wrong_schema() -> None:
    with pytest.raises(ProtocolError, match="expected a 'streamd.frame' document"):
        validate_frame_header({"schema": "streamd.event", "version": "1.0"})
