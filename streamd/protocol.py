"""The ZeroMQ wire protocol: frame and event messages, their JSON headers and schemas.

Frame message, multipart:
    [b"frame." + camera, header JSON (UTF-8), image bytes, extra part, ...]
Event message, multipart:
    [b"event." + camera, event JSON (UTF-8)]

Headers carry `schema` and `version` ("major.minor"). Minor versions only add optional fields (and,
for events, new types); readers ignore what they do not know and reject any other major version with
a `ProtocolError`. The JSON Schemas live beside this module in `streamd/schema/`; `docs/protocol.md`
describes every field with examples.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np

from streamd.errors import StreamdError
from streamd.types import AnonymizedFrame

PROTOCOL_MAJOR = 1
PROTOCOL_VERSION = f"{PROTOCOL_MAJOR}.2"
FRAME_SCHEMA_NAME = "streamd.frame"
EVENT_SCHEMA_NAME = "streamd.event"
FRAME_TOPIC_PREFIX = b"frame."
EVENT_TOPIC_PREFIX = b"event."
EVENT_TYPES = ("track_start", "track_end", "track_keys", "stream_up", "stream_down", "error")
IMAGE_FORMATS = ("jpeg", "raw")
COORDINATE_DECIMALS = 3
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"


class ProtocolError(StreamdError):
    """A message does not follow the wire protocol (unknown major version, schema violation, bad parts)."""


@functools.cache
def _validator(schema_file: str) -> jsonschema.Draft202012Validator:
    text = (SCHEMA_DIR / schema_file).read_text(encoding="utf-8")
    schema = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def frame_header_schema() -> dict[str, Any]:
    """The JSON Schema of frame headers (version 1.x)."""
    return _validator("frame_header.v1.json").schema


def event_schema() -> dict[str, Any]:
    """The JSON Schema of events (version 1.x)."""
    return _validator("event.v1.json").schema


def new_stream_epoch() -> str:
    """A random id for one start of a stream (16 hex digits)."""
    return secrets.token_hex(8)


def frame_topic(camera_id: str) -> bytes:
    return FRAME_TOPIC_PREFIX + camera_id.encode("ascii")


def event_topic(camera_id: str) -> bytes:
    return EVENT_TOPIC_PREFIX + camera_id.encode("ascii")


def format_time_base(time_base: Fraction | None) -> str | None:
    if time_base is None:
        return None
    return f"{time_base.numerator}/{time_base.denominator}"


def parse_time_base(text: str | None) -> Fraction | None:
    if text is None:
        return None
    numerator, denominator = text.split("/")
    return Fraction(int(numerator), int(denominator))


# ---------------------------------------------------------------- validation
def _check_version(document: dict[str, Any], expected_schema: str) -> None:
    schema_name = document.get("schema")
    if schema_name != expected_schema:
        raise ProtocolError(f"expected a {expected_schema!r} document, got schema {schema_name!r}")
    version = document.get("version")
    if not isinstance(version, str):
        raise ProtocolError(f"{expected_schema}: version is missing or not a string")
    major_text, _, minor_text = version.partition(".")
    if not (major_text.isdigit() and minor_text.isdigit()):
        raise ProtocolError(f"{expected_schema}: version {version!r} is not major.minor")
    if int(major_text) != PROTOCOL_MAJOR:
        raise ProtocolError(
            f"{expected_schema}: unsupported major version {version} (this reader understands {PROTOCOL_MAJOR}.x)"
        )


def _validate(document: dict[str, Any], schema_file: str, what: str) -> None:
    error = jsonschema.exceptions.best_match(_validator(schema_file).iter_errors(document))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ProtocolError(f"{what} does not match the schema at {where}: {error.message}")


def validate_frame_header(header: dict[str, Any]) -> None:
    """Raise ProtocolError unless `header` is a valid 1.x frame header."""
    _check_version(header, FRAME_SCHEMA_NAME)
    _validate(header, "frame_header.v1.json", "frame header")


def validate_event(event: dict[str, Any]) -> None:
    """Raise ProtocolError unless `event` is a valid 1.x event."""
    _check_version(event, EVENT_SCHEMA_NAME)
    _validate(event, "event.v1.json", "event")


def _parse_json(part: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(bytes(part).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {type(document).__name__}")
    return document


def _dump_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


# ---------------------------------------------------------------- frames
def _face_entry(face: Any) -> dict[str, Any]:
    return {
        "track_id": int(face.track_id),
        "xyxy": [round(float(v), COORDINATE_DECIMALS) for v in face.xyxy],
        "kps5": [[round(float(x), COORDINATE_DECIMALS), round(float(y), COORDINATE_DECIMALS)] for x, y in face.kps5],
        "detected": bool(face.detected),
        "score": round(float(face.score), 4),
    }


def build_frame_header(
    anonymized: AnonymizedFrame,
    camera_id: str,
    stream_epoch: str,
    image: dict[str, Any],
    payloads: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The header dict of one frame message.

    `image` describes the image part ({"format", "shape", "dtype"} and "quality" for JPEG);
    `payloads` describes each extra part in order (each with at least "kind" and "size").
    Coordinates are rounded to 1/1000 pixel.
    """
    frame = anonymized.frame
    height, width = int(anonymized.bgr.shape[0]), int(anonymized.bgr.shape[1])
    return {
        "schema": FRAME_SCHEMA_NAME,
        "version": PROTOCOL_VERSION,
        "camera": camera_id,
        "stream_epoch": stream_epoch,
        "frame_index": int(frame.index),
        "pts": None if frame.pts is None else int(frame.pts),
        "time_base": format_time_base(frame.time_base),
        "wallclock": float(frame.wallclock),
        "width": width,
        "height": height,
        "image": image,
        "method": anonymized.method,
        "status": anonymized.status,
        "faces": [_face_entry(face) for face in anonymized.faces],
        "payloads": [dict(descriptor) for descriptor in payloads],
        **({"method_details": dict(anonymized.method_details)} if anonymized.method_details else {}),
    }


def encode_image(bgr: np.ndarray, image_format: str, jpeg_quality: int = 85) -> tuple[dict[str, Any], bytes]:
    """Encode an HxWx3 uint8 BGR image for the wire; returns (image descriptor, bytes)."""
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ProtocolError(f"image must be HxWx3 uint8, got {bgr.shape} {bgr.dtype}")
    descriptor: dict[str, Any] = {"format": image_format, "shape": [int(v) for v in bgr.shape], "dtype": "uint8"}
    if image_format == "jpeg":
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise ProtocolError("OpenCV could not encode the frame as JPEG")
        descriptor["quality"] = int(jpeg_quality)
        return descriptor, encoded.tobytes()
    if image_format == "raw":
        return descriptor, np.ascontiguousarray(bgr).tobytes()
    raise ProtocolError(f"unknown image format {image_format!r} (jpeg or raw)")


def decode_image(image: dict[str, Any], data: bytes) -> np.ndarray:
    """The BGR array an image part carries; ProtocolError when it does not match its descriptor."""
    height, width, channels = image["shape"]
    if image["format"] == "raw":
        expected = height * width * channels
        if len(data) != expected:
            raise ProtocolError(f"raw image has {len(data)} bytes, shape {image['shape']} needs {expected}")
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, channels).copy()
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ProtocolError("image part is not a decodable JPEG")
    if bgr.shape != (height, width, channels):
        raise ProtocolError(f"JPEG decodes to {bgr.shape}, header says {tuple(image['shape'])}")
    return bgr


def encode_frame_message(
    anonymized: AnonymizedFrame,
    camera_id: str,
    stream_epoch: str,
    image_format: str = "jpeg",
    jpeg_quality: int = 85,
    payloads: Sequence[tuple[dict[str, Any], bytes]] = (),
) -> list[bytes]:
    """The parts of one frame message.

    `payloads` are extra parts as (descriptor, bytes); each descriptor names its "kind" (and may add
    fields such as "track_id"); "size" is filled in here.
    """
    image, image_bytes = encode_image(anonymized.bgr, image_format, jpeg_quality)
    descriptors = [{**descriptor, "size": len(data)} for descriptor, data in payloads]
    header = build_frame_header(anonymized, camera_id, stream_epoch, image, descriptors)
    return [frame_topic(camera_id), _dump_json(header), image_bytes, *(bytes(data) for _, data in payloads)]


def decode_frame_header(parts: Sequence[bytes]) -> dict[str, Any]:
    """Check topic, version, schema and part count of a frame message; the image is not decoded."""
    if len(parts) < 3:
        raise ProtocolError(f"a frame message has at least 3 parts, got {len(parts)}")
    topic = bytes(parts[0])
    if not topic.startswith(FRAME_TOPIC_PREFIX):
        raise ProtocolError(f"not a frame topic: {topic[:80]!r}")
    header = _parse_json(parts[1], "frame header")
    validate_frame_header(header)
    if topic != frame_topic(header["camera"]):
        raise ProtocolError(f"topic {topic!r} does not match header camera {header['camera']!r}")
    if (header["height"], header["width"]) != tuple(header["image"]["shape"][:2]):
        raise ProtocolError(f"width/height {header['width']}x{header['height']} do not match image shape")
    extras = parts[3:]
    descriptors = header["payloads"]
    if len(extras) != len(descriptors):
        raise ProtocolError(f"header lists {len(descriptors)} payloads, message carries {len(extras)} extra parts")
    for position, (descriptor, data) in enumerate(zip(descriptors, extras)):
        if descriptor["size"] != len(data):
            raise ProtocolError(f"payload {position} is {len(data)} bytes, header says {descriptor['size']}")
    return header


def decode_frame_message(parts: Sequence[bytes]) -> tuple[dict[str, Any], np.ndarray, list[bytes]]:
    """Validate a frame message; returns (header, BGR image, extra parts)."""
    header = decode_frame_header(parts)
    bgr = decode_image(header["image"], bytes(parts[2]))
    return header, bgr, [bytes(part) for part in parts[3:]]


# ---------------------------------------------------------------- events
def build_event(
    event_type: str,
    camera_id: str,
    stream_epoch: str,
    *,
    track_id: int | None = None,
    frame_index: int | None = None,
    pts: int | None = None,
    time_base: Fraction | None = None,
    message: str | None = None,
    details: dict[str, Any] | None = None,
    wallclock: float | None = None,
    wrapped_keys: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An event dict; optional fields are left out when None.

    `wrapped_keys` (version 1.1) are a track key wrapped to each restore public key
    (`streamd.reversible.keys.restore_keys.WrappedKey.to_dict()` entries), on `track_start` and `track_keys` events.
    """
    if event_type not in EVENT_TYPES:
        raise ProtocolError(f"unknown event type {event_type!r}; one of {', '.join(EVENT_TYPES)}")
    event: dict[str, Any] = {
        "schema": EVENT_SCHEMA_NAME,
        "version": PROTOCOL_VERSION,
        "type": event_type,
        "camera": camera_id,
        "stream_epoch": stream_epoch,
        "wallclock": time.time() if wallclock is None else float(wallclock),
    }
    optional = {
        "track_id": track_id,
        "frame_index": frame_index,
        "pts": pts,
        "time_base": format_time_base(time_base),
        "message": message,
        "details": details,
        "wrapped_keys": wrapped_keys,
    }
    event.update({name: value for name, value in optional.items() if value is not None})
    return event


def encode_event(event: dict[str, Any]) -> list[bytes]:
    """The parts of an event message; the event is validated first."""
    validate_event(event)
    return [event_topic(event["camera"]), _dump_json(event)]


def decode_event(parts: Sequence[bytes]) -> dict[str, Any]:
    """Validate an event message; returns the event dict (types this reader does not know included)."""
    if len(parts) != 2:
        raise ProtocolError(f"an event message has 2 parts, got {len(parts)}")
    topic = bytes(parts[0])
    if not topic.startswith(EVENT_TOPIC_PREFIX):
        raise ProtocolError(f"not an event topic: {topic[:80]!r}")
    event = _parse_json(parts[1], "event")
    validate_event(event)
    if topic != event_topic(event["camera"]):
        raise ProtocolError(f"topic {topic!r} does not match event camera {event['camera']!r}")
    return event
