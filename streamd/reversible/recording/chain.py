"""The signed hash chain of a recording segment (docs/recording.md, "Signatures").

Every metadata packet of a version 2 recording is `canonical JSON record` + `\\n` + the record's
binary payloads (sealed face packets). Each record carries
- `seq`: its position in the segment, from 0;
- `prev`: SHA-256 (hex) of the previous packet's unsigned bytes (`GENESIS` for the first);
- `video`: digests of the anonymized video packets muxed since the previous record;
- `audio` (only when some were muxed): per audio stream, digests of the audio packets muxed since the
  previous record (`audio_packet_digest`);
- `sig`: Ed25519 signature by the host key over `SIGNATURE_LABEL` + SHA-256 of this packet's unsigned
  bytes (the packet as it would be without the `sig` field).
So one signature covers the record, its sealed payloads, the video packets before it and, through
`prev`, everything earlier; the end record closes the segment. A deleted, inserted, reordered or
altered record, payload, video or audio packet is found by `ChainVerifier` and the digest checks of
`streamd.reversible.recording.authenticity`.

In the file a packet is stored with its record compressed (`stored_packet`: `DICTIONARY_PACKET_MARK`,
the record's JSON as a zlib stream primed with `RECORD_DICTIONARY`, then the payloads as they are):
records are mostly numbers and repeated keys and shrink to about a third; the dictionary, the keys
and fixed values a record repeats, takes another quarter off the demo's records, since each record is
compressed on its own. Digests and signatures are over the uncompressed bytes above, so compression
changes neither; packets of earlier files, compressed without the dictionary (`COMPRESSED_PACKET_MARK`)
or not at all, still parse.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from streamd.reversible.keys.host_keys import HostPrivateKey, HostPublicKey

GENESIS = "0" * 64
AUDIO_DIGEST_LABEL = b"streamd/audio-packet/v1\x00"
#: Matroska stores every timestamp in milliseconds; an audio digest signs the packet's start in that unit.
AUDIO_TIME_BASE = Fraction(1, 1000)
SIGNATURE_LABEL = b"streamd/recording-record/v2\x00"
VIDEO_DIGEST_HEX = 32
#: First byte of a stored packet whose record is compressed (an uncompressed record starts with `{`).
COMPRESSED_PACKET_MARK = b"z"
#: First byte of a stored packet whose record is compressed with `RECORD_DICTIONARY` as zlib's preset dictionary.
DICTIONARY_PACKET_MARK = b"Z"
#: zlib's preset dictionary for records: what a record repeats, the most frequent last. Part of the file
#: format: changing it needs a new mark.
RECORD_DICTIONARY = (
    b'"wrapped_keys":{"1":[{"alg":"X25519-HKDF-SHA256-ChaCha20Poly1305","ct":"","epk":"","key_id":"","v":1}]}'
    b'{"camera":"","faces":[],"format":"streamd.recording","frame_index":0,"height":720,"method":"blur","payloads":[],'
    b'"prev":"","pts":0,"record":"frame","seq":0,"status":"ok","stream_epoch":"","time_base":"1/90000","version":2,'
    b'"video":[""],"wallclock":1767225600.0,"width":1280,"sig":""}'
    b'{"affine_e4":[10000,0,-1000000,0,10000,-1000000],"box_e2":[10000,10000,10000,10000],"canvas_wh":[160,208],'
    b'"crop_wh":[100,100],"geometry":"box","keyframe":false,"kind":"sealed_face_packet","number":1,"part":0,'
    b'"region_xyxy":[100,100,100,100],"size":1000,"track_id":1},'
    b'{"detected":true,"kps5":[[100.1,100.1],[100.1,100.1],[100.1,100.1],[100.1,100.1],[100.1,100.1]],"score":0.9,'
    b'"track_id":1,"xyxy":[100.1,100.1,100.1,100.1]},'
)
RECORD_COMPRESSION_LEVEL = 9
#: Largest record a compressed packet may expand to.
MAX_RECORD_BYTES = 16 * 1024 * 1024


def video_packet_digest(data: bytes) -> str:
    """Digest of one H.264 packet, the same before muxing (Annex B) and after (length-prefixed NAL units):
    SHA-256 over each NAL unit prefixed by its 4-byte length, first 128 bits in hex."""
    digest = hashlib.sha256()
    for unit in _nal_units(bytes(data)):
        digest.update(len(unit).to_bytes(4, "big"))
        digest.update(unit)
    return digest.hexdigest()[:VIDEO_DIGEST_HEX]


def audio_packet_digest(data: bytes, start_ms: int, codec: str) -> str:
    """Digest of one audio packet and of when it starts: SHA-256 over a label, the start in milliseconds
    (8 bytes, signed) and the packet's bytes, first 128 bits in hex. An AAC packet's ADTS header (what
    an MPEG-TS source carries; Matroska stores the frame without it) is left out, so the digest is the
    same before and after muxing."""
    payload = _without_adts_header(bytes(data)) if codec == "aac" else bytes(data)
    digest = hashlib.sha256(AUDIO_DIGEST_LABEL)
    digest.update(int(start_ms).to_bytes(8, "big", signed=True))
    digest.update(payload)
    return digest.hexdigest()[:VIDEO_DIGEST_HEX]


def milliseconds(stamp: int, time_base: Fraction) -> int:
    """`stamp` in `time_base` as whole milliseconds, rounded half away from zero (as FFmpeg rescales)."""
    exact = Fraction(stamp) * Fraction(time_base) / AUDIO_TIME_BASE
    rounded = math.floor(abs(exact) + Fraction(1, 2))
    return rounded if exact >= 0 else -rounded


def _without_adts_header(data: bytes) -> bytes:
    """An AAC frame without its ADTS header (7 bytes, 9 with a CRC), when it has one."""
    if len(data) < 7 or data[0] != 0xFF or (data[1] & 0xF6) != 0xF0:
        return data
    frame_length = ((data[3] & 0x03) << 11) | (data[4] << 3) | (data[5] >> 5)
    if frame_length != len(data):
        return data
    header = 7 if data[1] & 0x01 else 9
    return data[header:]


def _nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an H.264 packet in either form. Length-prefixed is tried first, strictly (the
    lengths must cover the packet exactly and every unit start with a valid NAL header): a first unit
    of 256-511 bytes makes a length-prefixed packet start with 00 00 01, as Annex B does."""
    units = _length_prefixed_units(data)
    if units is not None:
        return units
    return [unit.rstrip(b"\x00") for unit in data.split(b"\x00\x00\x01") if unit.rstrip(b"\x00")]


def _length_prefixed_units(data: bytes) -> list[bytes] | None:
    """The units of a packet of 4-byte-length-prefixed NAL units; None when `data` is not one."""
    units: list[bytes] = []
    position = 0
    while position < len(data):
        if position + 4 > len(data):
            return None
        length = int.from_bytes(data[position:position + 4], "big")
        unit = data[position + 4:position + 4 + length]
        if length == 0 or len(unit) != length or unit[0] & 0x80:
            return None
        if unit.rstrip(b"\x00"):
            units.append(unit.rstrip(b"\x00"))
        position += 4 + length
    return units if units else None


def record_json(record: Mapping[str, Any]) -> bytes:
    """A record as JSON with sorted keys and no spaces. Floats (boxes, wall clock) are written in Python's
    shortest round-trip form, so parsing and writing a record again gives the same bytes."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def packet_bytes(record: Mapping[str, Any], blobs: bytes) -> bytes:
    return record_json(record) + b"\n" + blobs


class ChainSigner:
    """Adds `seq`, `prev` and `sig` to each record of one segment, in order."""

    def __init__(self, host_key: HostPrivateKey) -> None:
        self._host_key = host_key
        self._prev = GENESIS
        self.seq = 0

    @property
    def head(self) -> str:
        """Digest of the last packet signed (GENESIS before the first)."""
        return self._prev

    def sign(self, record: dict[str, Any], blobs: bytes) -> bytes:
        record["seq"] = self.seq
        record["prev"] = self._prev
        record.pop("sig", None)
        digest = hashlib.sha256(packet_bytes(record, blobs)).digest()
        record["sig"] = base64.b64encode(self._host_key.sign(SIGNATURE_LABEL + digest)).decode("ascii")
        self._prev = digest.hex()
        self.seq += 1
        return packet_bytes(record, blobs)


@dataclass
class ParsedPacket:
    """A metadata packet split into its record, its payload bytes, and the digest of its unsigned bytes."""

    record: dict[str, Any]
    blobs: bytes
    digest: str
    signature: bytes | None


class PacketError(ValueError):
    """A metadata packet is not a well-formed record."""


def stored_packet(packet: bytes) -> bytes:
    """A signed packet (`packet_bytes`) as the file stores it: its record compressed, payloads as they are."""
    newline = packet.index(b"\n")
    compressor = zlib.compressobj(RECORD_COMPRESSION_LEVEL, zdict=RECORD_DICTIONARY)
    record = compressor.compress(packet[:newline]) + compressor.flush()
    return DICTIONARY_PACKET_MARK + record + packet[newline + 1:]


def _split(data: bytes) -> tuple[bytes, bytes]:
    """The record's JSON and the payloads of a stored packet, compressed or not."""
    if data.startswith(DICTIONARY_PACKET_MARK):
        decompressor = zlib.decompressobj(zdict=RECORD_DICTIONARY)
    elif data.startswith(COMPRESSED_PACKET_MARK):
        decompressor = zlib.decompressobj()
    else:
        newline = data.find(b"\n")
        return (data, b"") if newline < 0 else (data[:newline], data[newline + 1:])
    try:
        text = decompressor.decompress(data[1:], MAX_RECORD_BYTES)
    except zlib.error as exc:
        raise PacketError(f"its compressed record does not decompress ({exc})") from None
    if not decompressor.eof:
        raise PacketError(f"its compressed record is truncated or larger than {MAX_RECORD_BYTES} bytes")
    return text, decompressor.unused_data


def unstored_packet(data: bytes) -> bytes:
    """A stored packet, compressed or not, in its uncompressed form (record, newline, payloads)."""
    text, blobs = _split(data)
    return text + b"\n" + blobs


def parse_packet(data: bytes) -> ParsedPacket:
    text, blobs = _split(data)
    try:
        record = json.loads(text.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PacketError(f"not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise PacketError("not a JSON object")
    signature: bytes | None = None
    if "sig" in record:
        try:
            signature = base64.b64decode(str(record.pop("sig")).encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise PacketError("its signature is not base64") from None
    digest = hashlib.sha256(packet_bytes(record, blobs)).hexdigest() if signature is not None else ""
    return ParsedPacket(record, blobs, digest, signature)


@dataclass
class ChainReport:
    """What verification found for one segment. Records listed in `authentic` carry a valid signature."""

    authentic: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    end_digest: str | None = None

    @property
    def intact(self) -> bool:
        return not self.problems


class ChainVerifier:
    """Checks the records of one segment in file order against one host public key."""

    def __init__(self, host: HostPublicKey) -> None:
        self.host = host
        self.report = ChainReport()
        self._last_seq = -1
        self._prev = GENESIS
        self._seen: set[int] = set()
        self._frame_of: dict[int, object] = {}

    def check(self, packet: ParsedPacket, position: int) -> bool:
        """True when the packet's signature is valid (its content can be used); chain breaks are reported."""
        record = packet.record
        label = f"record {position}"
        if packet.signature is None:
            self.report.problems.append(f"{label} is not signed")
            return False
        if not self.host.verify(packet.signature, SIGNATURE_LABEL + bytes.fromhex(packet.digest)):
            self.report.problems.append(f"{label} (frame {record.get('frame_index', '-')}) has an invalid signature: "
                                        "it was altered or signed by another key")
            return False
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or seq in self._seen:
            self.report.problems.append(f"{label}: sequence number {seq!r} repeats or is malformed (replayed record)")
            return False
        if self._seen and seq < self._last_seq:
            self.report.problems.append(f"{label} (frame {record.get('frame_index', '-')}) is out of order: "
                                        f"record {seq} comes after record {self._last_seq}")
        elif seq == self._last_seq + 1 and record.get("prev") != self._prev:
            self.report.problems.append(f"{label} does not follow the record before it (chain broken)")
        self._seen.add(seq)
        self._frame_of[seq] = record.get("frame_index")
        self._last_seq = seq
        self._prev = packet.digest
        self.report.authentic.append(position)
        return True

    def finish(self, end_seen: bool) -> ChainReport:
        highest = max(self._seen, default=-1)
        missing = [seq for seq in range(highest + 1) if seq not in self._seen]
        for first, last in _runs(missing):
            before, after = self._frame_of.get(first - 1, "-"), self._frame_of.get(last + 1, "-")
            self.report.problems.append(f"records {first}-{last} of the segment are missing "
                                        f"(between frames {before} and {after})")
        if not end_seen:
            self.report.problems.append(f"no signed end record after record {highest}: the segment is truncated")
        else:
            self.report.end_digest = self._prev
        return self.report


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs
