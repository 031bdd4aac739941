"""The recording format: one self-contained, signed Matroska file per segment (docs/recording.md).

A recording file holds
- stream 0: the anonymized video, H.264, with the frames' original pts;
- the source's audio streams, copied unchanged (when the output copies audio);
- then a subrip stream titled `streamd.metadata` carrying one packet per frame, at the frame's
  pts, and a final `end` packet. Subrip packets round-trip byte-exact in Matroska.

Version 2 (written now): a packet is a canonical JSON record, a newline, then the record's sealed
payloads as raw bytes (sizes in the record); the file stores the record zlib-compressed
(`streamd.reversible.recording.chain.stored_packet`; uncompressed packets of earlier files still read). A
frame record holds the frame's clear metadata (as in
the wire protocol's frame header), its sealed face-stream packets, the wrapped keys of tracks new to
the file, and the digests of the video and audio packets muxed since the previous record. Every record is
chained to the one before and signed with the host key (`streamd.reversible.recording.chain`); the first
names the segment (index, host key, end digest of the previous segment). Version 1 files (JSON only,
PNG payloads in base64, no signatures) are still read; restoring them needs an explicit flag.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamd.config import FileOutputConfig
from streamd.errors import SinkError, StreamdError
from streamd.sinks.file_sink import FileWriterSink
from streamd.protocol import build_frame_header, parse_time_base
from streamd.reversible.recording.chain import (
    ChainSigner,
    PacketError,
    ParsedPacket,
    audio_packet_digest,
    milliseconds,
    parse_packet,
    stored_packet,
    video_packet_digest,
)
from streamd.reversible.keys.host_keys import HostPrivateKey, load_host_key
from streamd.reversible.sealing.stream_sealer import SEALING_EXTRAS_KEY, SealedFrame
from streamd.sources.base import FrameSource
from streamd.sources.live_audio import AudioSubscription
from streamd.types import AnonymizedFrame
from streamd.sinks.video_out import VideoFileWriter

logger = logging.getLogger(__name__)

RECORDING_FORMAT = "streamd.recording"
RECORDING_VERSION = 2
LEGACY_RECORDING_VERSION = 1
METADATA_STREAM_TITLE = "streamd.metadata"
RECORD_FRAME = "frame"
RECORD_END = "end"
# Header fields a frame record copies from the wire protocol's frame header.
FRAME_FIELDS = (
    "camera", "stream_epoch", "frame_index", "pts", "time_base", "wallclock", "width", "height",
    "method", "status", "faces",
)
DEFAULT_AVERAGE_RATE = Fraction(25)


class RecordingError(StreamdError):
    """A recording cannot be read: not a streamd recording, truncated, malformed or inconsistent."""


@dataclass(frozen=True)
class SegmentLink:
    """Where a segment sits in its recorder's run: its index and the end digest of the segment before."""

    index: int = 0
    previous_end: str | None = None


@dataclass(frozen=True)
class PrerollPacket:
    """A sealed face-stream packet of an earlier frame, carried so a segment can decode from a key frame."""

    descriptor: dict[str, Any]
    data: bytes


def frame_record(
    header: Mapping[str, Any],
    payload_parts: Sequence[bytes],
    wrapped_keys: Mapping[int, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """A version 2 frame record (without chain fields) from a frame header and its extra parts."""
    descriptors = header["payloads"]
    if len(descriptors) != len(payload_parts):
        raise SinkError(f"frame {header['frame_index']}: {len(descriptors)} payload descriptors, {len(payload_parts)} parts")
    record: dict[str, Any] = {"record": RECORD_FRAME, "format": RECORDING_FORMAT, "version": RECORDING_VERSION}
    record.update({name: header[name] for name in FRAME_FIELDS})
    if "method_details" in header:
        record["method_details"] = header["method_details"]
    record["payloads"] = [{**descriptor, "size": len(data)} for descriptor, data in zip(descriptors, payload_parts)]
    record["wrapped_keys"] = {str(track_id): list(keys) for track_id, keys in (wrapped_keys or {}).items()}
    return record


class _DigestingVideoWriter(VideoFileWriter):
    """The anonymized video and the copied audio; remembers the digest of every packet it muxes, and
    lets the recording write its end record after the encoder is flushed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.pending_digests: list[str] = []
        self.pending_audio_digests: dict[str, list[str]] = {}
        self.before_close: Any = None
        super().__init__(*args, **kwargs)
        self._audio_codec_names = self.audio_codecs

    def _mux_video(self, packet: av.Packet) -> None:
        self.pending_digests.append(video_packet_digest(bytes(packet)))
        super()._mux_video(packet)

    def _audio_packet(self, ordinal: int, packet: av.Packet) -> None:
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:
            raise SinkError(f"{self.path}: an audio packet of stream {ordinal} has no timestamp; it cannot be signed")
        digest = audio_packet_digest(bytes(packet), milliseconds(stamp, packet.time_base),
                                     self._audio_codec_names[ordinal])
        self.pending_audio_digests.setdefault(str(ordinal), []).append(digest)

    def take_audio_digests(self) -> dict[str, list[str]]:
        digests, self.pending_audio_digests = self.pending_audio_digests, {}
        return digests

    def _before_container_close(self) -> None:
        if self.before_close is not None:
            self.before_close()

    def take_digests(self) -> list[str]:
        digests, self.pending_digests = self.pending_digests, []
        return digests


class RecordingWriter:
    """Writes one signed recording file: video frames with their records, then the end record on `close()`.

    The file appears under its name only when complete (`VideoFileWriter` renames at close);
    `abort()` leaves nothing behind. Keys of each track are written once, with the first record that
    needs them: pass every live track's wrapped keys as `known_keys` on each call.

    `audio_source` (as for `VideoFileWriter`): a file whose audio streams are copied in, in time order
    with the frames, or a live camera's audio subscription; the first record names their codecs and
    each record signs the audio packets muxed since the one before.
    """

    def __init__(
        self,
        path: Path | str,
        resolution_wh: tuple[int, int],
        time_base: Fraction,
        average_rate: Fraction,
        *,
        host_key: HostPrivateKey,
        segment: SegmentLink = SegmentLink(),
        codec: str = "libx264",
        crf: int = 20,
        preset: str = "veryfast",
        audio_source: Path | AudioSubscription | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".mkv":
            raise SinkError(f"{self.path}: a recording (with sealed payloads and keys) must be an .mkv file")
        self._video = _DigestingVideoWriter(self.path, resolution_wh, time_base, average_rate, codec=codec, crf=crf,
                                            preset=preset, audio_source=audio_source)
        try:
            self._metadata_stream = self._video.add_subtitle_stream(title=METADATA_STREAM_TITLE)
        except SinkError:
            self._video.abort()
            raise
        self._video.before_close = self._write_end_record
        self._signer = ChainSigner(host_key)
        self._host_key = host_key
        self._segment = segment
        self._keys_written: set[int] = set()
        self._identity: tuple[str, str] | None = None
        self._last_pts: int | None = None
        self.frames_written = 0
        self.end_digest: str | None = None

    def write_frame(
        self,
        bgr: np.ndarray,
        header: Mapping[str, Any],
        payload_parts: Sequence[bytes],
        known_keys: Mapping[int, list[dict[str, Any]]],
        preroll: Sequence[PrerollPacket] = (),
    ) -> None:
        identity = (header["camera"], header["stream_epoch"])
        if self._identity is None:
            self._identity = identity
        elif identity != self._identity:
            raise SinkError(f"{self.path}: one recording file holds one camera and stream epoch; got {identity} after {self._identity}")
        time_base = parse_time_base(header["time_base"])
        if header["pts"] is None or time_base is None or time_base != self._video.time_base:
            raise SinkError(f"{self.path}: frame {header['frame_index']} has pts {header['pts']} in {header['time_base']}, "
                            f"the recording uses {self._video.time_base}")
        new_keys = {track_id: keys for track_id, keys in known_keys.items() if track_id not in self._keys_written}
        record = frame_record(header, payload_parts, new_keys)
        self._video.write(bgr, pts=header["pts"])
        record["video"] = self._video.take_digests()
        audio = self._video.take_audio_digests()
        if audio:
            record["audio"] = audio
        if self.frames_written == 0:
            record["segment"] = {
                "index": self._segment.index, "previous_end": self._segment.previous_end,
                "host_key_id": self._host_key.key_id,
                "host_public_key": base64.b64encode(self._host_key.public.raw_bytes).decode("ascii"),
            }
            if self._video.audio_codecs:
                record["segment"]["audio_streams"] = self._video.audio_codecs
        if preroll:
            record["preroll"] = [{**packet.descriptor, "size": len(packet.data)} for packet in preroll]
        blobs = b"".join(payload_parts) + b"".join(packet.data for packet in preroll)
        self._mux_metadata(stored_packet(self._signer.sign(record, blobs)), header["pts"], time_base)
        self._keys_written.update(new_keys)
        self._last_pts = header["pts"]
        self.frames_written += 1

    def _mux_metadata(self, payload: bytes, pts: int, time_base: Fraction) -> None:
        self._video.write_text_packet(self._metadata_stream, payload, pts, time_base)

    def _write_end_record(self) -> None:
        if self._identity is None or self._last_pts is None:
            return
        end = {
            "record": RECORD_END, "format": RECORDING_FORMAT, "version": RECORDING_VERSION,
            "camera": self._identity[0], "stream_epoch": self._identity[1], "frames": self.frames_written,
            "video": self._video.take_digests(),
        }
        audio = self._video.take_audio_digests()
        if audio:
            end["audio"] = audio
        ticks = max(1, round(1 / (self._video.average_rate * self._video.time_base)))
        packet = av.Packet(stored_packet(self._signer.sign(end, b"")))
        packet.stream = self._metadata_stream
        packet.time_base = self._video.time_base
        packet.pts = packet.dts = self._last_pts + ticks
        packet.duration = ticks
        self._video.container.mux(packet)
        self.end_digest = self._signer.head

    def close(self, final_path: Path | None = None) -> None:
        """Write the end record and finish the file (under `final_path` if given)."""
        self._video.close(final_path)

    def abort(self) -> None:
        self._video.abort()


class RecordingFileSink(FileWriterSink):
    """Writes a reversible stream straight into the recording format (one file, `config.path`)."""

    def __init__(self, config: FileOutputConfig, camera_id: str, stream_epoch: str, source: FrameSource,
                 host_key_ref: str) -> None:
        super().__init__(config, source)
        self._camera_id = camera_id
        self._stream_epoch = stream_epoch
        self._host_key = load_host_key(host_key_ref)
        self._live_keys: dict[int, list[dict[str, Any]]] = {}

    def write(self, anonymized: AnonymizedFrame) -> None:
        frame = anonymized.frame
        if self._writer is None:
            self._writer = RecordingWriter(
                self._config.path, frame.resolution_wh, frame.time_base or self._source.time_base,
                self._source.average_rate or DEFAULT_AVERAGE_RATE, host_key=self._host_key,
                codec=self._config.codec, crf=self._config.crf, preset=self._config.preset,
                audio_source=self._audio_source,
            )
        sealing = anonymized.extras.get(SEALING_EXTRAS_KEY)
        payloads: list[tuple[dict[str, Any], bytes]] = []
        if sealing is not None:
            assert isinstance(sealing, SealedFrame)
            self._live_keys.update(sealing.started_keys)
            self._live_keys.update(sealing.repeated_keys)
            payloads = sealing.payloads
        height, width = anonymized.bgr.shape[:2]
        image = {"format": "raw", "shape": [int(height), int(width), 3], "dtype": "uint8"}
        descriptors = [{**descriptor, "size": len(data)} for descriptor, data in payloads]
        header = build_frame_header(anonymized, self._camera_id, self._stream_epoch, image, descriptors)
        if header["pts"] is None:
            raise SinkError(f"{self._config.path}: frame {frame.index} has no pts; a recording needs timestamps")
        header["payloads"] = [descriptor for descriptor, _ in payloads]
        self._writer.write_frame(anonymized.bgr, header, [data for _, data in payloads], self._live_keys)
        for track_id in anonymized.ended:
            self._live_keys.pop(track_id, None)

    def end_tracks(self, track_ids: list[int]) -> None:
        for track_id in track_ids:
            self._live_keys.pop(track_id, None)

# ---------------------------------------------------------------- reading
@dataclass
class FrameRecord:
    """One frame's metadata in a recording, with its payloads as bytes.

    `packet` is the parsed metadata packet (version 2: digest and signature for verification);
    `authentic` is set by `verify_recording` (always False for version 1 files).
    """

    document: dict[str, Any]
    payload_descriptors: list[dict[str, Any]]
    payload_data: list[bytes]
    preroll: list[PrerollPacket] = field(default_factory=list)
    packet: ParsedPacket | None = None
    authentic: bool = False

    @property
    def frame_index(self) -> int:
        return int(self.document["frame_index"])

    @property
    def pts(self) -> int:
        return int(self.document["pts"])

    @property
    def time_base(self) -> Fraction:
        time_base = parse_time_base(self.document["time_base"])
        assert time_base is not None
        return time_base


@dataclass
class Recording:
    """The metadata of one recording file, read without decoding the video.

    `packets` are all metadata packets in file order (version 2), `video_digests` the digest of each
    video packet in file order, `audio_codecs` the codec of each audio stream and `audio_digests` the
    digest of each of its packets in file order; `verify_recording` checks them against the signatures."""

    path: Path
    records: list[FrameRecord]
    wrapped_keys: dict[int, list[dict[str, Any]]]
    camera: str
    stream_epoch: str
    end_frames: int | None
    problems: list[str] = field(default_factory=list)
    version: int = RECORDING_VERSION
    segment: dict[str, Any] | None = None
    packets: list[ParsedPacket] = field(default_factory=list)
    video_digests: list[str] = field(default_factory=list)
    audio_codecs: list[str] = field(default_factory=list)
    audio_digests: list[list[str]] = field(default_factory=list)

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_codecs)

    @property
    def signed(self) -> bool:
        return self.version >= RECORDING_VERSION

    @property
    def truncated(self) -> bool:
        return self.end_frames is None or self.end_frames != len(self.records)

    @property
    def first_seconds(self) -> float:
        return float(self.records[0].pts * self.records[0].time_base) if self.records else 0.0

    def seconds_of(self, record: FrameRecord) -> float:
        """Seconds from the first frame of the file."""
        return float(record.pts * record.time_base) - self.first_seconds


def _metadata_stream(container: av.container.InputContainer, path: Path) -> av.stream.Stream:
    for stream in container.streams:
        if stream.type == "subtitle" and stream.metadata.get("title") == METADATA_STREAM_TITLE:
            return stream
    raise RecordingError(f"{path}: not a streamd recording (no {METADATA_STREAM_TITLE} stream); "
                         "it was anonymized without a restore recipient, or is another video")


def _parse(packet_bytes: bytes, path: Path, position: int) -> tuple[dict[str, Any], ParsedPacket | None]:
    """The record of a metadata packet; version 2 packets also come back parsed (blobs, digest, signature)."""
    try:
        parsed = parse_packet(packet_bytes)
    except PacketError as exc:
        raise RecordingError(f"{path}: metadata record {position} is damaged ({exc})") from None
    record = parsed.record
    if record.get("format") != RECORDING_FORMAT:
        raise RecordingError(f"{path}: metadata record {position} is not a {RECORDING_FORMAT} record")
    version = record.get("version")
    if version == LEGACY_RECORDING_VERSION:
        return record, None
    if version != RECORDING_VERSION:
        raise RecordingError(f"{path}: recording format version {version!r}; this build reads "
                             f"{LEGACY_RECORDING_VERSION} and {RECORDING_VERSION}")
    return record, parsed


def _split_blobs(entries: list[dict[str, Any]], blobs: bytes, offset: int, path: Path, frame: object) -> tuple[list[bytes], int]:
    parts: list[bytes] = []
    for entry in entries:
        size = entry.get("size")
        if not isinstance(size, int) or size < 0 or offset + size > len(blobs):
            raise RecordingError(f"{path}: frame {frame}: a payload's size does not match the data carried")
        parts.append(blobs[offset:offset + size])
        offset += size
    return parts, offset


def _frame_record(record: dict[str, Any], parsed: ParsedPacket | None, path: Path) -> FrameRecord:
    missing = [name for name in (*FRAME_FIELDS, "payloads", "wrapped_keys") if name not in record]
    if missing:
        raise RecordingError(f"{path}: frame record is missing field(s) {', '.join(missing)}")
    if parsed is None:
        return _legacy_frame_record(record, path)
    descriptors = [dict(entry) for entry in record["payloads"]]
    data, offset = _split_blobs(descriptors, parsed.blobs, 0, path, record["frame_index"])
    preroll_descriptors = [dict(entry) for entry in record.get("preroll", [])]
    preroll_data, offset = _split_blobs(preroll_descriptors, parsed.blobs, offset, path, record["frame_index"])
    if offset != len(parsed.blobs):
        raise RecordingError(f"{path}: frame {record['frame_index']}: {len(parsed.blobs) - offset} bytes of payload "
                             "data are not described by the record")
    preroll = [PrerollPacket(descriptor, blob) for descriptor, blob in zip(preroll_descriptors, preroll_data)]
    return FrameRecord(document=record, payload_descriptors=descriptors, payload_data=data, preroll=preroll,
                       packet=parsed)


def _legacy_frame_record(record: dict[str, Any], path: Path) -> FrameRecord:
    descriptors: list[dict[str, Any]] = []
    data: list[bytes] = []
    for entry in record["payloads"]:
        try:
            payload = base64.b64decode(entry["data"].encode("ascii"), validate=True)
        except (KeyError, AttributeError, binascii.Error, UnicodeEncodeError) as exc:
            raise RecordingError(f"{path}: frame {record['frame_index']}: a payload's data is damaged ({exc!r})") from None
        descriptors.append({name: value for name, value in entry.items() if name != "data"})
        data.append(payload)
    return FrameRecord(document=record, payload_descriptors=descriptors, payload_data=data)


def read_recording(path: Path | str) -> Recording:
    """Read every metadata record of a recording file and the digests of its video and audio packets
    (nothing is decoded). Signatures are checked by `verify_recording`, not here.

    Raises RecordingError for a file that is not a recording, mixes cameras, stream epochs or format
    versions, or has damaged records. A truncated file is returned with `truncated` True and
    `problems` saying why.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such recording file")
    try:
        container = av.open(str(path))
    except (OSError, av.FFmpegError) as exc:
        raise RecordingError(f"{path}: cannot open as a video file ({exc}); truncated or not a recording") from None
    records: list[FrameRecord] = []
    wrapped_keys: dict[int, list[dict[str, Any]]] = {}
    end_frames: int | None = None
    problems: list[str] = []
    identities: set[tuple[str, str]] = set()
    versions: set[int] = set()
    packets: list[ParsedPacket] = []
    video_digests: list[str] = []
    segment: dict[str, Any] | None = None
    with container:
        stream = _metadata_stream(container, path)
        audio_streams = list(container.streams.audio)
        audio_codecs = [audio.codec_context.name for audio in audio_streams]
        audio_ordinal = {audio.index: ordinal for ordinal, audio in enumerate(audio_streams)}
        audio_digests: list[list[str]] = [[] for _ in audio_streams]
        streams = [stream, *container.streams.video[:1], *audio_streams]
        try:
            for position, packet in enumerate(container.demux(streams)):
                if packet.size == 0:
                    continue
                if packet.stream.type == "video":
                    video_digests.append(video_packet_digest(bytes(packet)))
                    continue
                if packet.stream.type == "audio":
                    ordinal = audio_ordinal[packet.stream.index]
                    audio_digests[ordinal].append(_audio_digest(packet, audio_codecs[ordinal]))
                    continue
                record, parsed = _parse(bytes(packet), path, position)
                versions.add(int(record["version"]))
                if parsed is not None:
                    packets.append(parsed)
                    if segment is None and isinstance(record.get("segment"), dict):
                        segment = record["segment"]
                if end_frames is not None and parsed is None:
                    raise RecordingError(f"{path}: metadata continues after the end record")
                identities.add((str(record.get("camera")), str(record.get("stream_epoch"))))
                if record.get("record") == RECORD_END:
                    end_frames = int(record.get("frames", -1))
                    continue
                frame = _frame_record(record, parsed, path)
                for track_text, keys in record["wrapped_keys"].items():
                    wrapped_keys.setdefault(int(track_text), []).extend(keys)
                records.append(frame)
        except (av.FFmpegError, OSError) as exc:
            problems.append(f"reading stopped at a damaged part ({exc})")
    if len({camera for camera, _ in identities}) > 1:
        cameras = sorted({camera for camera, _ in identities})
        raise RecordingError(f"{path}: the recording mixes cameras {', '.join(cameras)}; a recording file holds one camera")
    if len(identities) > 1:
        raise RecordingError(f"{path}: the recording mixes stream epochs {', '.join(sorted(e for _, e in identities))}")
    if len(versions) > 1:
        raise RecordingError(f"{path}: the recording mixes format versions {sorted(versions)}")
    if not records:
        raise RecordingError(f"{path}: the recording holds no frames (truncated or empty)")
    if end_frames is None:
        problems.append(f"no end record after frame {records[-1].frame_index}: the file is truncated")
    elif end_frames != len(records):
        problems.append(f"the end record counts {end_frames} frames but {len(records)} are present")
    camera, stream_epoch = next(iter(identities))
    return Recording(path, records, wrapped_keys, camera, stream_epoch, end_frames, problems,
                     version=versions.pop(), segment=segment, packets=packets, video_digests=video_digests,
                     audio_codecs=audio_codecs, audio_digests=audio_digests)


UNSTAMPED_AUDIO = "unstamped"


def _audio_digest(packet: av.Packet, codec: str) -> str:
    """The digest of an audio packet as the file holds it; one without a timestamp cannot have been
    signed (the writer signs each packet's start) and gets a marker no record lists."""
    stamp = packet.pts if packet.pts is not None else packet.dts
    if stamp is None:
        return UNSTAMPED_AUDIO
    return audio_packet_digest(bytes(packet), milliseconds(stamp, packet.time_base), codec)


def decode_video_frames(path: Path) -> Iterator[tuple[int | None, Fraction | None, np.ndarray]]:
    """(pts, time_base, bgr) of every video frame of a recording, in presentation order."""
    for pts, time_base, frame in decode_video(path):
        yield pts, time_base, frame.to_ndarray(format="bgr24")


def decode_video(path: Path) -> Iterator[tuple[int | None, Fraction | None, av.VideoFrame]]:
    """(pts, time_base, decoded frame) of every video frame of a recording, in presentation order."""
    try:
        container = av.open(str(path))
    except (OSError, av.FFmpegError) as exc:
        raise RecordingError(f"{path}: cannot open as a video file ({exc})") from None
    with container:
        if not container.streams.video:
            raise RecordingError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.pts, frame.time_base, frame
        except (av.FFmpegError, OSError) as exc:
            raise RecordingError(f"{path}: the video is damaged or truncated ({exc})") from None
