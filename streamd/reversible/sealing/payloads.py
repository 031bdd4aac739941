"""Sealed payloads: an original face crop, PNG-encoded and encrypted with ChaCha20-Poly1305.

A sealed payload is bound to where it belongs: camera, stream epoch, frame index, pts, track id and
the crop geometry (affine matrix, crop size, face box). The binding is the AEAD's associated data, so
a payload moved to another frame or track, or opened with other geometry, fails to open.

Blob layout (all integers big-endian), version 1:

    offset  size  field
    0       4     magic b"SDSL"
    4       1     version (1)
    5       8     frame index the payload was sealed for (uint64)
    13      8     track id the payload was sealed for (uint64)
    21      16    first 16 bytes of SHA-256 over the canonical binding JSON
    37      12    ChaCha20-Poly1305 nonce (random)
    49      ...   ciphertext of the PNG bytes, followed by the 16-byte tag

The associated data is the 49-byte header followed by the canonical binding JSON. The clear frame
index, track id and binding digest only let `open_sealed` say precisely why a payload does not
belong where it is opened; they reveal nothing that the frame's clear metadata does not already carry.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from streamd.reversible.canonical import checked_canonical_json_bytes
from streamd.errors import StreamdError

logger = logging.getLogger(__name__)

SEAL_MAGIC = b"SDSL"
SEAL_VERSION = 1
#: Blob version of a sealed face-stream packet (raw codec bytes instead of PNG).
SEAL_PACKET_VERSION = 2
BINDING_VERSION = 1
#: Binding version of a face-stream packet: version 1 fields plus `face_stream`.
PACKET_BINDING_VERSION = 2
BINDING_DIGEST_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
PAYLOAD_KEY_BYTES = 32
_HEADER = struct.Struct(">4sBQQ16s12s")
SEAL_HEADER_BYTES = _HEADER.size
SEAL_OVERHEAD_BYTES = SEAL_HEADER_BYTES + TAG_BYTES
_UINT64_MAX = 2**64 - 1

# Geometry is quantized to integers before it is authenticated, so that seal and open agree
# bit for bit: the affine matrix in units of 1e-4, the box in units of 1/100 pixel.
AFFINE_SCALE = 10_000
BOX_SCALE = 100
PNG_COMPRESSION_LEVEL = 3


class SealError(StreamdError):
    """A sealed payload cannot be opened: malformed, tampered, wrong key, or bound elsewhere."""


@dataclass(frozen=True)
class SealBinding:
    """Where a sealed payload belongs. Geometry is stored quantized (see AFFINE_SCALE, BOX_SCALE).

    Build one with `from_geometry` from arrays, or with `from_dict` from the metadata written beside
    the payload; `to_dict` gives that metadata (JSON-safe, exact).
    """

    camera: str
    stream_epoch: str
    frame_index: int
    pts: int | None
    track_id: int
    affine_e4: tuple[int, int, int, int, int, int]
    crop_wh: tuple[int, int]
    box_e2: tuple[int, int, int, int]
    #: For a face-stream packet: (part, packet number in the part, canvas width, canvas height, key frame 0/1);
    #: None for a PNG crop.
    face_stream: tuple[int, int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.camera, str) or not self.camera:
            raise ValueError(f"SealBinding.camera must be a non-empty str, got {self.camera!r}")
        if not isinstance(self.stream_epoch, str) or not self.stream_epoch:
            raise ValueError(f"SealBinding.stream_epoch must be a non-empty str, got {self.stream_epoch!r}")
        for name in ("frame_index", "track_id"):
            value = getattr(self, name)
            if not _is_int(value) or not 0 <= value <= _UINT64_MAX:
                raise ValueError(f"SealBinding.{name} must be an int in 0..2**64-1, got {value!r}")
        if self.pts is not None and not _is_int(self.pts):
            raise ValueError(f"SealBinding.pts must be an int or None, got {self.pts!r}")
        _check_int_tuple(self.affine_e4, 6, "affine_e4")
        _check_int_tuple(self.box_e2, 4, "box_e2")
        _check_int_tuple(self.crop_wh, 2, "crop_wh")
        if min(self.crop_wh) <= 0:
            raise ValueError(f"SealBinding.crop_wh must be positive, got {self.crop_wh}")
        if self.face_stream is not None:
            _check_int_tuple(self.face_stream, 5, "face_stream")

    @classmethod
    def from_geometry(
        cls,
        *,
        camera: str,
        stream_epoch: str | int,
        frame_index: int,
        pts: int | None,
        track_id: int,
        affine: np.ndarray | Sequence[Sequence[float]],
        crop_wh: tuple[int, int],
        box_xyxy: np.ndarray | Sequence[float],
        face_stream: tuple[int, int, int, int, int] | None = None,
    ) -> "SealBinding":
        """Quantize a 2x3 affine matrix (frame to crop) and an xyxy box in pixels into a binding."""
        affine_matrix = np.asarray(affine, dtype=np.float64)
        if affine_matrix.shape != (2, 3):
            raise ValueError(f"affine must be a 2x3 matrix, got shape {affine_matrix.shape}")
        box = np.asarray(box_xyxy, dtype=np.float64)
        if box.shape != (4,):
            raise ValueError(f"box_xyxy must have shape (4,), got {box.shape}")
        if not (np.isfinite(affine_matrix).all() and np.isfinite(box).all()):
            raise ValueError("affine and box_xyxy must be finite")
        return cls(
            camera=camera,
            stream_epoch=_epoch_text(stream_epoch),
            frame_index=int(frame_index),
            pts=None if pts is None else int(pts),
            track_id=int(track_id),
            affine_e4=_quantize(affine_matrix.reshape(-1), AFFINE_SCALE),  # type: ignore[arg-type]
            crop_wh=(int(crop_wh[0]), int(crop_wh[1])),
            box_e2=_quantize(box, BOX_SCALE),  # type: ignore[arg-type]
            face_stream=face_stream,
        )

    def to_dict(self) -> dict[str, object]:
        """The canonical, JSON-safe form; its canonical JSON is the associated data."""
        document: dict[str, object] = {
            "v": BINDING_VERSION if self.face_stream is None else PACKET_BINDING_VERSION,
            "camera": self.camera,
            "stream_epoch": self.stream_epoch,
            "frame_index": self.frame_index,
            "pts": self.pts,
            "track_id": self.track_id,
            "affine_e4": list(self.affine_e4),
            "crop_wh": list(self.crop_wh),
            "box_e2": list(self.box_e2),
        }
        if self.face_stream is not None:
            document["face_stream"] = list(self.face_stream)
        return document

    @classmethod
    def from_dict(cls, binding_dict: Mapping[str, object]) -> "SealBinding":
        """Rebuild a binding from `to_dict` output; raises SealError naming a missing or bad field."""
        version = binding_dict.get("v")
        if version not in (BINDING_VERSION, PACKET_BINDING_VERSION):
            raise SealError(f"seal binding has version {version!r}; this build reads versions "
                            f"{BINDING_VERSION} and {PACKET_BINDING_VERSION}")
        expected = ("camera", "stream_epoch", "frame_index", "pts", "track_id", "affine_e4", "crop_wh", "box_e2")
        if version == PACKET_BINDING_VERSION:
            expected = (*expected, "face_stream")
        missing = [name for name in expected if name not in binding_dict]
        if missing:
            raise SealError(f"seal binding is missing field(s): {', '.join(missing)}")
        try:
            return cls(
                camera=binding_dict["camera"],  # type: ignore[arg-type]
                stream_epoch=binding_dict["stream_epoch"],  # type: ignore[arg-type]
                frame_index=binding_dict["frame_index"],  # type: ignore[arg-type]
                pts=binding_dict["pts"],  # type: ignore[arg-type]
                track_id=binding_dict["track_id"],  # type: ignore[arg-type]
                affine_e4=tuple(binding_dict["affine_e4"]),  # type: ignore[arg-type]
                crop_wh=tuple(binding_dict["crop_wh"]),  # type: ignore[arg-type]
                box_e2=tuple(binding_dict["box_e2"]),  # type: ignore[arg-type]
                face_stream=tuple(binding_dict["face_stream"]) if version == PACKET_BINDING_VERSION else None,  # type: ignore[arg-type]
            )
        except (TypeError, ValueError) as exc:
            raise SealError(f"malformed seal binding: {exc}") from exc

    @functools.cached_property
    def _canonical(self) -> bytes:
        # a frozen binding's bytes never change; sealing and opening each need them twice. __post_init__
        # has checked every field is an int, a str or None, so there is no float to look for.
        return checked_canonical_json_bytes(self.to_dict())

    def canonical_bytes(self) -> bytes:
        return self._canonical

    def digest(self) -> bytes:
        return hashlib.sha256(self._canonical).digest()[:BINDING_DIGEST_BYTES]


def _quantize(values: np.ndarray, scale: int) -> tuple[int, ...]:
    return tuple(int(round(float(value) * scale)) for value in values)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int_tuple(value: object, length: int, name: str) -> None:
    # exact ints only (no bool, no numpy scalar): the test is written out for speed, a binding is checked per face
    if not isinstance(value, tuple) or len(value) != length or not all(type(item) is int for item in value):
        raise ValueError(f"SealBinding.{name} must be a tuple of {length} ints, got {value!r}")


def _epoch_text(stream_epoch: str | int) -> str:
    if isinstance(stream_epoch, bool) or not isinstance(stream_epoch, (str, int)):
        raise ValueError(f"stream_epoch must be a str or int, got {stream_epoch!r}")
    return str(stream_epoch)


def _check_payload_key(payload_key: bytes) -> None:
    if not isinstance(payload_key, (bytes, bytearray)) or len(payload_key) != PAYLOAD_KEY_BYTES:
        raise ValueError(f"a payload key is {PAYLOAD_KEY_BYTES} bytes (see streamd.reversible.keys.restore_keys.derive_payload_key)")


def seal_crop(crop_bgr: np.ndarray, payload_key: bytes, binding: SealBinding) -> bytes:
    """Encode `crop_bgr` (HxWx3 uint8, W,H == binding.crop_wh) as PNG and encrypt it, bound to `binding`."""
    _check_payload_key(payload_key)
    if not isinstance(crop_bgr, np.ndarray):
        raise ValueError(f"crop_bgr must be a numpy array, got {type(crop_bgr).__name__}")
    if crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3 or crop_bgr.dtype != np.uint8:
        raise ValueError(f"crop_bgr must be an HxWx3 uint8 array, got {crop_bgr.shape} {crop_bgr.dtype}")
    crop_wh = (int(crop_bgr.shape[1]), int(crop_bgr.shape[0]))
    if crop_wh != binding.crop_wh:
        raise ValueError(
            f"crop is {crop_wh[0]}x{crop_wh[1]} but the binding says {binding.crop_wh[0]}x{binding.crop_wh[1]}"
        )
    encoded_ok, png_buffer = cv2.imencode(
        ".png", np.ascontiguousarray(crop_bgr), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION_LEVEL]
    )
    if not encoded_ok:
        raise SealError(f"PNG encoding of a {crop_wh[0]}x{crop_wh[1]} crop failed")
    return _encrypt(png_buffer.tobytes(), payload_key, binding, SEAL_VERSION)


def _encrypt(plaintext: bytes, payload_key: bytes, binding: SealBinding, version: int) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    header = _HEADER.pack(SEAL_MAGIC, version, binding.frame_index, binding.track_id, binding.digest(), nonce)
    associated_data = header + binding.canonical_bytes()
    ciphertext = ChaCha20Poly1305(bytes(payload_key)).encrypt(nonce, plaintext, associated_data)
    return header + ciphertext


def seal_packet(packet: bytes, payload_key: bytes, binding: SealBinding) -> bytes:
    """Encrypt one face-stream codec packet, bound to `binding` (which must name its face stream)."""
    _check_payload_key(payload_key)
    if binding.face_stream is None:
        raise ValueError("a face-stream packet's binding must carry face_stream")
    return _encrypt(bytes(packet), payload_key, binding, SEAL_PACKET_VERSION)


def open_packet(blob: bytes, payload_key: bytes, binding: SealBinding) -> bytes:
    """Decrypt one sealed face-stream packet; raises SealError saying why it cannot be opened."""
    return _decrypt(blob, payload_key, binding, SEAL_PACKET_VERSION)


def _decrypt(blob: bytes, payload_key: bytes, binding: SealBinding, expected_version: int) -> bytes:
    _check_payload_key(payload_key)
    if len(blob) < SEAL_OVERHEAD_BYTES:
        raise SealError(f"sealed payload is truncated: {len(blob)} bytes, at least {SEAL_OVERHEAD_BYTES} expected")
    magic, version, sealed_frame_index, sealed_track_id, sealed_digest, nonce = _HEADER.unpack_from(blob)
    if magic != SEAL_MAGIC:
        raise SealError(f"not a sealed payload: starts with {magic!r}, expected {SEAL_MAGIC!r}")
    if version != expected_version:
        raise SealError(f"sealed payload has version {version}; expected version {expected_version} here "
                        f"({SEAL_VERSION}: PNG crop, {SEAL_PACKET_VERSION}: face-stream packet)")
    if (sealed_frame_index, sealed_track_id) != (binding.frame_index, binding.track_id):
        raise SealError(
            f"sealed payload was sealed for frame {sealed_frame_index}, track {sealed_track_id} but is opened for "
            f"frame {binding.frame_index}, track {binding.track_id}: payload moved or swapped, or its header altered"
        )
    if sealed_digest != binding.digest():
        raise SealError(
            f"sealed payload for frame {binding.frame_index}, track {binding.track_id} is bound to a different "
            "camera, stream epoch, pts or crop geometry than it is opened with, or its header was altered"
        )
    header = bytes(blob[:SEAL_HEADER_BYTES])
    try:
        return ChaCha20Poly1305(bytes(payload_key)).decrypt(
            nonce, bytes(blob[SEAL_HEADER_BYTES:]), header + binding.canonical_bytes()
        )
    except InvalidTag as exc:
        raise SealError(
            f"sealed payload for frame {binding.frame_index}, track {binding.track_id}: authentication failed: "
            "wrong key, tampered data, or payload bound to another frame/track"
        ) from exc


def open_sealed(blob: bytes, payload_key: bytes, binding: SealBinding) -> np.ndarray:
    """Decrypt and decode a sealed crop; raises SealError saying why it cannot be opened."""
    png_bytes = _decrypt(blob, payload_key, binding, SEAL_VERSION)
    crop_bgr = cv2.imdecode(np.frombuffer(png_bytes, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if crop_bgr is None or crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3 or crop_bgr.dtype != np.uint8:
        raise SealError(
            f"sealed payload for frame {binding.frame_index}, track {binding.track_id} authenticated but does not "
            "hold a 3-channel 8-bit PNG"
        )
    if (int(crop_bgr.shape[1]), int(crop_bgr.shape[0])) != binding.crop_wh:
        raise SealError(
            f"sealed payload for frame {binding.frame_index}, track {binding.track_id} holds a "
            f"{crop_bgr.shape[1]}x{crop_bgr.shape[0]} crop but the binding says "
            f"{binding.crop_wh[0]}x{binding.crop_wh[1]}"
        )
    return crop_bgr
