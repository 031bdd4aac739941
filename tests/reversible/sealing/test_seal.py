"""Sealed face crops: round trip, tampering, moved payloads, wrong key, nothing in the clear."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from streamd.reversible.keys.restore_keys import derive_payload_key, new_track_key
from streamd.reversible.sealing.payloads import SEAL_OVERHEAD_BYTES, SealBinding, SealError, open_sealed, seal_crop

AUTH_FAILED = "authentication failed: wrong key, tampered data, or payload bound to another frame/track"


def _crop(seed: int = 0, size: int = 64) -> np.ndarray:
    generator = np.random.default_rng(seed)
    return generator.integers(0, 256, size=(size, size + 8, 3), dtype=np.uint8)


def _binding(**changes) -> SealBinding:
    fields = dict(
        camera="cam1",
        stream_epoch="2024-05-01T10:00:00Z#1",
        frame_index=120,
        pts=48000,
        track_id=3,
        affine=np.array([[0.51234567, -0.01, 12.3456], [0.01, 0.51234567, -4.2]], dtype=np.float32),
        crop_wh=(72, 64),
        box_xyxy=np.array([100.123, 50.5, 180.0, 140.25], dtype=np.float32),
    )
    fields.update(changes)
    return SealBinding.from_geometry(**fields)


@pytest.fixture()
def payload_key() -> bytes:
    return derive_payload_key(new_track_key())


def test_round_trip_is_lossless(payload_key):
    crop = _crop()
    blob = seal_crop(crop, payload_key, _binding())
    np.testing.assert_array_equal(open_sealed(blob, payload_key, _binding()), crop)


def test_binding_dict_round_trip_opens(payload_key):
    crop = _crop()
    binding = _binding()
    blob = seal_crop(crop, payload_key, binding)
    rebuilt = SealBinding.from_dict(binding.to_dict())
    assert rebuilt == binding
    np.testing.assert_array_equal(open_sealed(blob, payload_key, rebuilt), crop)


def test_no_png_bytes_in_the_clear(payload_key):
    crop = _crop()
    blob = seal_crop(crop, payload_key, _binding())
    encoded_ok, png_buffer = cv2.imencode(".png", crop, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    assert encoded_ok
    png_bytes = png_buffer.tobytes()
    assert b"\x89PNG" not in blob
    assert b"IHDR" not in blob and b"IDAT" not in blob
    window = 16
    clear_windows = {png_bytes[start : start + window] for start in range(0, len(png_bytes) - window, window)}
    assert not any(part in blob for part in clear_windows)
    assert crop.tobytes()[:window] not in blob


def test_tampered_byte_anywhere_in_ciphertext(payload_key):
    blob = seal_crop(_crop(), payload_key, _binding())
    for position in (SEAL_OVERHEAD_BYTES - 16, len(blob) // 2, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[position] ^= 0x40
        with pytest.raises(SealError, match=AUTH_FAILED):
            open_sealed(bytes(tampered), payload_key, _binding())


def test_tampered_nonce(payload_key):
    blob = bytearray(seal_crop(_crop(), payload_key, _binding()))
    blob[40] ^= 0x01  # inside the nonce
    with pytest.raises(SealError, match=AUTH_FAILED):
        open_sealed(bytes(blob), payload_key, _binding())


def test_wrong_key(payload_key):
    blob = seal_crop(_crop(), payload_key, _binding())
    with pytest.raises(SealError, match=AUTH_FAILED):
        open_sealed(blob, derive_payload_key(new_track_key()), _binding())


def test_payload_moved_to_another_frame(payload_key):
    blob = seal_crop(_crop(), payload_key, _binding())
    with pytest.raises(SealError, match=r"sealed for frame 120, track 3 but is opened for frame 121, track 3"):
        open_sealed(blob, payload_key, _binding(frame_index=121))


def test_payload_moved_to_another_track(payload_key):
    blob = seal_crop(_crop(), payload_key, _binding())
    with pytest.raises(SealError, match=r"opened for frame 120, track 4"):
        open_sealed(blob, payload_key, _binding(track_id=4))


@pytest.mark.parametrize(
    "changes",
    [
        {"camera": "cam2"},
        {"stream_epoch": "2024-05-01T10:00:00Z#2"},
        {"pts": 48001},
        {"box_xyxy": np.array([100.2, 50.5, 180.0, 140.25])},
        {"affine": np.array([[0.5124, -0.01, 12.3456], [0.01, 0.51234567, -4.2]])},
    ],
)
def test_payload_with_other_binding_fields(payload_key, changes):
    blob = seal_crop(_crop(), payload_key, _binding())
    with pytest.raises(SealError, match="bound to a different camera, stream epoch, pts or crop geometry"):
        open_sealed(blob, payload_key, _binding(**changes))


def test_altered_header_to_match_other_frame_fails_authentication(payload_key):
    binding = _binding()
    blob = seal_crop(_crop(), payload_key, binding)
    moved = _binding(frame_index=121)
    forged_header = bytearray(blob)
    forged_header[5:13] = (121).to_bytes(8, "big")
    forged_header[21:37] = moved.digest()
    with pytest.raises(SealError, match=AUTH_FAILED):
        open_sealed(bytes(forged_header), payload_key, moved)


def test_truncated_and_foreign_blobs(payload_key):
    blob = seal_crop(_crop(), payload_key, _binding())
    with pytest.raises(SealError, match="truncated"):
        open_sealed(blob[:20], payload_key, _binding())
    with pytest.raises(SealError, match=AUTH_FAILED):
        open_sealed(blob[:-1], payload_key, _binding())
    with pytest.raises(SealError, match="not a sealed payload"):
        open_sealed(b"XXXX" + blob[4:], payload_key, _binding())
    with pytest.raises(SealError, match="version 9"):
        open_sealed(blob[:4] + b"\x09" + blob[5:], payload_key, _binding())


def test_two_seals_of_the_same_crop_differ(payload_key):
    crop = _crop()
    assert seal_crop(crop, payload_key, _binding()) != seal_crop(crop, payload_key, _binding())


def test_crop_size_must_match_binding(payload_key):
    with pytest.raises(ValueError, match="binding says"):
        seal_crop(_crop(size=32), payload_key, _binding())


def test_binding_from_dict_errors():
    binding_dict = _binding().to_dict()
    del binding_dict["track_id"]
    with pytest.raises(SealError, match="missing field"):
        SealBinding.from_dict(binding_dict)
    with pytest.raises(SealError, match="version"):
        SealBinding.from_dict({**_binding().to_dict(), "v": 7})


def test_binding_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _binding().frame_index = 5  # type: ignore[misc]
