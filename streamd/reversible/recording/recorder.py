"""`streamd record`: subscribe to a camera's stream and write segmented recordings (docs/recording.md).

The recorder follows one camera. It keeps the wrapped keys of live tracks from `track_start` and
`track_keys` events, and writes them into every segment that shows those tracks, so each segment can
be restored on its own. A segment ends when it spans `segment_seconds` of stream time, when the
stream epoch changes or the stream goes down, when the frame size changes, and when the recorder
stops (`stop` event, `duration_s`, SIGTERM/SIGINT through the CLI); it is then finalized, never
left half-written. Sealed payloads are written as they arrive: the recorder never holds a key that
opens them.

Segments are signed with the host key and linked: each names its index in the run and the end
digest of the segment before, so a missing or reordered segment is found at restore. A track's face
stream is recorded from its first key frame on (a recorder that joins late skips the packets before
it); a segment that starts mid-track carries the track's packets since its last key frame as
`preroll`, so each segment decodes on its own.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import zmq

from streamd.errors import SinkError, SourceError
from streamd.frame_gaps import FrameGapCounter
from streamd.protocol import (
    EVENT_TOPIC_PREFIX,
    FRAME_TOPIC_PREFIX,
    ProtocolError,
    decode_event,
    decode_frame_message,
    parse_time_base,
)
from streamd.reversible.keys.host_keys import HostPrivateKey
from streamd.reversible.recording.recording_format import DEFAULT_AVERAGE_RATE, PrerollPacket, RecordingWriter, SegmentLink
from streamd.reversible.sealing.stream_sealer import SEALED_FACE_PACKET_KIND
from streamd.sinks.base import keep_written_frames

logger = logging.getLogger(__name__)

POLL_MS = 100
MISSING_REPORT_INTERVAL_S = 10.0  # frames that never arrived are summed up in one line this often
DEFAULT_SEGMENT_SECONDS = 60.0
# A track's packets since its last key frame are kept for the next segment's preroll; key frames come
# at least every 2 s, so this bound is only reached by a broken stream (the track then waits for a key frame).
MAX_PREROLL_PACKETS = 600


@dataclass
class RecordSummary:
    """What a recording run wrote and skipped."""

    files: list[Path] = field(default_factory=list)
    frames: int = 0
    faces_without_keys: int = 0
    frames_skipped: int = 0
    frames_missing: int = 0
    invalid_messages: int = 0
    other_camera_messages: int = 0
    #: The camera's tracks start without wrapped keys: it is not reversible, its recording cannot be restored.
    camera_not_reversible: bool = False
    faces_before_key_frame: int = 0


@dataclass
class _Segment:
    writer: RecordingWriter
    path: Path
    camera: str
    stream_epoch: str
    resolution_wh: tuple[int, int]
    start_s: float
    last_pts: int | None = None


def _media_seconds(header: dict[str, Any]) -> float | None:
    time_base = parse_time_base(header["time_base"])
    if header["pts"] is None or time_base is None:
        return None
    return float(header["pts"] * time_base)


class Recorder:
    """Writes one camera's stream from `endpoint` into segment files under `out_dir`."""

    def __init__(
        self,
        endpoint: str,
        out_dir: Path | str,
        *,
        segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
        camera: str | None = None,
        host_key: HostPrivateKey,
        crf: int = 20,
        preset: str = "veryfast",
    ) -> None:
        if segment_seconds <= 0:
            raise SinkError(f"segment length must be positive, got {segment_seconds}")
        self.endpoint = endpoint
        self.out_dir = Path(out_dir)
        self.segment_seconds = float(segment_seconds)
        self.camera = camera
        self.crf = crf
        self.preset = preset
        self.summary = RecordSummary()
        self._keys: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = {}
        self._average_rate: dict[tuple[str, str], Fraction] = {}
        self._segment: _Segment | None = None
        self._segment_counter = 0
        self._gaps = FrameGapCounter()
        self._missing_unreported = 0
        self._missing_reported_at = time.monotonic()
        self.host_key = host_key
        # Per stream: index and end digest of the last closed segment.
        self._links: dict[tuple[str, str], SegmentLink] = {}
        # Per track of the current stream: packets since its last key frame (None: waiting for one).
        self._since_key: dict[int, list[PrerollPacket] | None] = {}
        self._face_stream: tuple[str, str] | None = None
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"{self.out_dir}: cannot create the recording folder: {exc.strerror}") from None

    # ------------------------------------------------------------ messages
    def _accept_camera(self, camera: str) -> bool:
        if self.camera is None:
            self.camera = camera
            logger.info("recording camera %s from %s", camera, self.endpoint)
        if camera != self.camera:
            self.summary.other_camera_messages += 1
            return False
        return True

    def handle_event(self, event: dict[str, Any]) -> None:
        if not self._accept_camera(event["camera"]):
            return
        stream = (event["camera"], event["stream_epoch"])
        event_type = event["type"]
        if event_type in ("track_start", "track_keys") and event.get("wrapped_keys"):
            self._keys.setdefault(stream, {})[int(event["track_id"])] = event["wrapped_keys"]
            self.summary.camera_not_reversible = False
        elif event_type == "track_start" and not self._keys.get(stream) and not self.summary.camera_not_reversible:
            self.summary.camera_not_reversible = True
            logger.warning("camera %s is not reversible (its tracks start without wrapped keys): the recording "
                           "anonymizes but can never be restored", event["camera"])
        elif event_type == "track_end":
            self._keys.get(stream, {}).pop(int(event["track_id"]), None)
        elif event_type == "stream_up":
            rate_text = (event.get("details") or {}).get("average_rate")
            if isinstance(rate_text, str) and "/" in rate_text:
                self._average_rate[stream] = parse_time_base(rate_text) or DEFAULT_AVERAGE_RATE
        elif event_type == "stream_down":
            if self._segment is not None and (self._segment.camera, self._segment.stream_epoch) == stream:
                self.close_segment()
            self._keys.pop(stream, None)

    def handle_frame(self, header: dict[str, Any], bgr: Any, payload_parts: list[bytes]) -> None:
        if not self._accept_camera(header["camera"]):
            return
        missing, _ = self._gaps.update(header["camera"], header["stream_epoch"], header["frame_index"])
        if missing:
            self.summary.frames_missing += missing
            self._missing_unreported += missing
        self._report_missing()
        seconds = _media_seconds(header)
        if seconds is None:
            self.summary.frames_skipped += 1
            logger.warning("frame %d has no pts; a recording needs timestamps, skipped", header["frame_index"])
            return
        stream = (header["camera"], header["stream_epoch"])
        segment = self._segment
        if segment is not None and (
            (segment.camera, segment.stream_epoch) != stream
            or segment.resolution_wh != (header["width"], header["height"])
            or seconds - segment.start_s >= self.segment_seconds
            or (segment.last_pts is not None and header["pts"] <= segment.last_pts)
        ):
            self.close_segment()
            segment = None
        if segment is None:
            segment = self._open_segment(header, seconds)
        known_keys = self._keys.get(stream, {})
        self.summary.faces_without_keys += sum(1 for face in header["faces"] if face["track_id"] not in known_keys)
        header, payload_parts, preroll = self._face_packets(header, payload_parts, fresh_segment=segment.writer.frames_written == 0,
                                                            frames_missing=missing)
        segment.writer.write_frame(bgr, header, payload_parts, known_keys, preroll)
        segment.last_pts = header["pts"]
        self.summary.frames += 1

    def _report_missing(self, final: bool = False) -> None:
        """One warning line for the frames that never arrived, at most every MISSING_REPORT_INTERVAL_S."""
        now = time.monotonic()
        if not self._missing_unreported or (not final and now - self._missing_reported_at < MISSING_REPORT_INTERVAL_S):
            return
        logger.warning("%d frame(s) never arrived in the last %.0f s (%d in all; the publisher or ZeroMQ dropped "
                       "them)", self._missing_unreported, now - self._missing_reported_at, self.summary.frames_missing)
        self._missing_unreported = 0
        self._missing_reported_at = now

    def _face_packets(self, header: dict[str, Any], parts: list[bytes], *, fresh_segment: bool,
                      frames_missing: int) -> tuple[dict[str, Any], list[bytes], list[PrerollPacket]]:
        """Keep the face-stream packets that can be decoded (from each track's first key frame on), and
        the preroll a new segment needs."""
        stream = (header["camera"], header["stream_epoch"])
        if stream != self._face_stream or frames_missing:
            self._since_key = {}
            self._face_stream = stream
        preroll: list[PrerollPacket] = []
        if fresh_segment:
            current = {descriptor.get("track_id") for descriptor in header["payloads"]}
            preroll = [packet for track_id, packets in self._since_key.items() if packets and track_id in current
                       for packet in packets]
        kept_descriptors: list[dict[str, Any]] = []
        kept_parts: list[bytes] = []
        for descriptor, part in zip(header["payloads"], parts):
            if descriptor.get("kind") == SEALED_FACE_PACKET_KIND:
                track_id = int(descriptor["track_id"])
                packets = self._since_key.get(track_id)
                if descriptor.get("keyframe"):
                    packets = []
                elif packets is None or len(packets) >= MAX_PREROLL_PACKETS:
                    self._since_key[track_id] = None
                    self.summary.faces_before_key_frame += 1
                    continue
                packets.append(PrerollPacket({**descriptor, "frame_index": header["frame_index"], "pts": header["pts"]},
                                             part))
                self._since_key[track_id] = packets
            kept_descriptors.append(descriptor)
            kept_parts.append(part)
        for track_id in set(self._since_key) - {face["track_id"] for face in header["faces"]}:
            self._since_key.pop(track_id, None)
        return {**header, "payloads": kept_descriptors}, kept_parts, preroll

    def _open_segment(self, header: dict[str, Any], seconds: float) -> _Segment:
        started = datetime.datetime.fromtimestamp(header["wallclock"], tz=datetime.timezone.utc)
        self._segment_counter += 1
        name = f"{header['camera']}_{started:%Y%m%dT%H%M%SZ}_{header['stream_epoch']}_{self._segment_counter:04d}.mkv"
        path = self.out_dir / name
        stream = (header["camera"], header["stream_epoch"])
        time_base = parse_time_base(header["time_base"])
        assert time_base is not None
        previous = self._links.get(stream)
        link = SegmentLink() if previous is None else SegmentLink(previous.index + 1, previous.previous_end)
        writer = RecordingWriter(
            path, (header["width"], header["height"]), time_base,
            self._average_rate.get(stream, DEFAULT_AVERAGE_RATE), host_key=self.host_key, segment=link,
            crf=self.crf, preset=self.preset,
        )
        self._segment = _Segment(writer, path, header["camera"], header["stream_epoch"],
                                 (header["width"], header["height"]), seconds)
        logger.info("recording segment %s", path)
        return self._segment

    def close_segment(self) -> None:
        """Finalize the current segment, if any."""
        segment, self._segment = self._segment, None
        if segment is None:
            return
        segment.writer.close()
        self._remember_link(segment)
        self.summary.files.append(segment.path)

    def _remember_link(self, segment: _Segment) -> None:
        """The next segment of this stream names this one's index and end digest."""
        stream = (segment.camera, segment.stream_epoch)
        previous = self._links.get(stream)
        index = 0 if previous is None else previous.index + 1
        self._links[stream] = SegmentLink(index, segment.writer.end_digest)

    def abort_segment(self) -> None:
        """The recorder failed: keep what the open segment holds under an incomplete name."""
        segment, self._segment = self._segment, None
        if segment is not None:
            kept = keep_written_frames(segment.writer, segment.path)
            if kept is not None:
                self.summary.files.append(kept)

    # ------------------------------------------------------------ loop
    def run(self, stop: threading.Event | None = None, duration_s: float | None = None,
            ready: threading.Event | None = None) -> RecordSummary:
        """Record until `stop` is set or `duration_s` has passed; the open segment is finalized."""
        stop = stop or threading.Event()
        context = zmq.Context()
        socket = context.socket(zmq.SUB)
        prefixes = [FRAME_TOPIC_PREFIX, EVENT_TOPIC_PREFIX]
        if self.camera is not None:
            prefixes = [prefix + self.camera.encode("ascii") for prefix in prefixes]
        for prefix in prefixes:
            socket.setsockopt(zmq.SUBSCRIBE, prefix)
        try:
            socket.connect(self.endpoint)
        except zmq.ZMQError as exc:
            socket.close(linger=0)
            context.term()
            raise SourceError(f"cannot connect to {self.endpoint}: {exc.strerror}") from None
        if ready is not None:
            ready.set()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                if not socket.poll(POLL_MS):
                    continue
                self._handle(socket.recv_multipart())
        except BaseException:
            self.abort_segment()
            raise
        finally:
            self._report_missing(final=True)
            socket.close(linger=0)
            context.term()
        self.close_segment()
        return self.summary

    def _handle(self, parts: list[bytes]) -> None:
        try:
            if parts[0].startswith(FRAME_TOPIC_PREFIX):
                header, bgr, payload_parts = decode_frame_message(parts)
                self.handle_frame(header, bgr, payload_parts)
            else:
                self.handle_event(decode_event(parts))
        except ProtocolError as exc:
            self.summary.invalid_messages += 1
            logger.warning("skipped an invalid message: %s", exc)


def record(endpoint: str, out_dir: Path | str, *, host_key: HostPrivateKey,
           segment_seconds: float = DEFAULT_SEGMENT_SECONDS, duration_s: float | None = None,
           camera: str | None = None, stop: threading.Event | None = None,
           ready: threading.Event | None = None) -> RecordSummary:
    """Record `endpoint` into `out_dir` (see `Recorder`)."""
    recorder = Recorder(endpoint, out_dir, segment_seconds=segment_seconds, camera=camera, host_key=host_key)
    return recorder.run(stop=stop, duration_s=duration_s, ready=ready)
