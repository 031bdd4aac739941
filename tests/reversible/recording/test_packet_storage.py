"""Metadata packets are stored with their record compressed; digests and signatures stay over the
uncompressed bytes, and packets stored uncompressed still parse."""

from __future__ import annotations

import zlib

import pytest

from streamd.reversible.recording.chain import (
    COMPRESSED_PACKET_MARK,
    DICTIONARY_PACKET_MARK,
    ChainSigner,
    ChainVerifier,
    PacketError,
    parse_packet,
    stored_packet,
    unstored_packet,
)
from streamd.reversible.keys.host_keys import generate_host_key, load_host_key


def _record(index: int) -> dict[str, object]:
    faces = [{"track_id": track, "xyxy": [100.25 + track, 200.5, 180.75, 300.125], "score": 0.9123}
             for track in range(8)]
    return {"record": "frame", "frame_index": index, "faces": faces}


def test_stored_packets_are_smaller_and_verify_as_signed(tmp_path):
    _, private_path, _ = generate_host_key(tmp_path / "host")
    host_key = load_host_key(private_path)
    signer, verifier = ChainSigner(host_key), ChainVerifier(host_key.public)
    blobs = bytes(range(256)) * 4  # payload bytes that include newlines and the mark itself
    for index in range(3):
        signed = signer.sign(_record(index), blobs)
        stored = stored_packet(signed)
        assert stored.startswith(DICTIONARY_PACKET_MARK) and len(stored) < len(signed)
        assert unstored_packet(stored) == signed
        parsed, plain = parse_packet(stored), parse_packet(signed)
        assert parsed.blobs == blobs and parsed.record == plain.record and parsed.digest == plain.digest
        assert verifier.check(parsed, index), verifier.report.problems
    assert verifier.report.authentic == [0, 1, 2]


def _earlier_stored_packet(packet: bytes) -> bytes:
    """A packet as files written before the record dictionary store it: the record as a plain zlib stream."""
    newline = packet.index(b"\n")
    return COMPRESSED_PACKET_MARK + zlib.compress(packet[:newline], 6) + packet[newline + 1:]


def test_the_record_dictionary_saves_bytes_and_earlier_packets_still_verify(tmp_path):
    _, private_path, _ = generate_host_key(tmp_path / "host")
    host_key = load_host_key(private_path)
    signer, verifier = ChainSigner(host_key), ChainVerifier(host_key.public)
    record = {"record": "frame", "format": "streamd.recording", "version": 2, "camera": "lobby-1",
              "frame_index": 7, "status": "ok", "payloads": [
                  {"kind": "sealed_face_packet", "track_id": 3, "geometry": "box", "region_xyxy": [594, 166, 719, 325],
                   "affine_e4": [10000, 0, -5940000, 0, 10000, -1660000], "crop_wh": [125, 159],
                   "box_e2": [61240, 18890, 70120, 30175], "part": 0, "number": 37, "canvas_wh": [160, 208],
                   "keyframe": False, "size": 0}]}
    signed = signer.sign(record, b"")
    earlier = _earlier_stored_packet(signed)
    assert len(stored_packet(signed)) < len(earlier) - 50
    parsed = parse_packet(earlier)
    assert unstored_packet(earlier) == signed and verifier.check(parsed, 0), verifier.report.problems
    # the mark says how to read the record: a dictionary packet is not a plain zlib stream
    with pytest.raises(PacketError, match="does not decompress"):
        parse_packet(COMPRESSED_PACKET_MARK + stored_packet(signed)[1:])


def test_a_damaged_compressed_record_is_one_clear_error(tmp_path):
    _, private_path, _ = generate_host_key(tmp_path / "host")
    stored = stored_packet(ChainSigner(load_host_key(private_path)).sign(_record(0), b""))
    with pytest.raises(PacketError, match="truncated"):
        parse_packet(stored[:len(stored) // 2])
    for mark in (COMPRESSED_PACKET_MARK, DICTIONARY_PACKET_MARK):
        with pytest.raises(PacketError, match="does not decompress"):
            parse_packet(mark + b"not zlib at all")


def _annex_b(units: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


def _length_prefixed(units: list[bytes]) -> bytes:
    return b"".join(len(unit).to_bytes(4, "big") + unit for unit in units)


@pytest.mark.parametrize("first_unit_bytes", [1, 5, 300, 511, 4000])
def test_video_digest_is_the_same_before_and_after_muxing(first_unit_bytes):
    # A first unit of 256-511 bytes makes the muxed (length-prefixed) packet start with 00 00 01 xx,
    # the Annex B start code: the digest must still read it as length-prefixed.
    first = bytes([0x65]) + bytes((7 * i + 3) % 251 + 1 for i in range(first_unit_bytes - 1))
    units = [first, bytes([0x41]) + bytes(range(1, 200))]
    from streamd.reversible.recording.chain import video_packet_digest

    assert video_packet_digest(_annex_b(units)) == video_packet_digest(_length_prefixed(units))
    other = [units[0][:-1] + b"\x09", units[1]]
    assert video_packet_digest(_length_prefixed(other)) != video_packet_digest(_length_prefixed(units))
