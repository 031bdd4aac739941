"""RTSP camera source: PyAV over RTP/TCP, reconnecting forever with exponential backoff.

A background reader thread owns the PyAV container: it opens the camera, decodes frames and hands
them to `frames()` through a small queue, so that `close()` from any thread ends `frames()` within
a tenth of a second even while the reader is blocked in the network (the reader itself leaves once
that call returns, bounded by the open and read timeouts).

A live camera never ends: end of stream, a read that stalls past `read_timeout_s` and a failed open
are all disconnects. The reader waits a random delay between `reconnect_initial_s` and an
exponentially growing cap (at most `reconnect_max_s`) and tries again, until `close()`. Frame
indices keep counting across reconnects and pts are rebased so they stay strictly increasing.

Frames come out upright: with `rotation: auto` as the display matrix FFmpeg attaches to decoded
frames says (an H.264 display orientation SEI; RTSP carries no container metadata), otherwise turned
the configured number of degrees clockwise (`streamd.sources.orientation`). The orientation is worked out
again on every connection and logged with the first frame.

Audio: when the camera offers an audio stream, the first one is demuxed too (its packets are never
decoded) and published, in arrival order, into `audio_feed` (`streamd.sources.live_audio`), a side
channel that file outputs subscribe to and drain up to each frame's time before they write it; the
pipeline may drop frames, never the audio. Each audio packet is rebased with the same offset as the
connection's video, so it stays in sync with the rebased frames across reconnects. Audio read before the
connection's first frame is held until that frame fixes the offset; what starts before the frame is
then dropped (by timestamp, so how late decoding runs changes nothing), and so is a packet that would start before the end of the
previous one (the overlap at a reconnect), so audio timestamps only increase. `audio_feed.track`
holds the current audio's codec parameters (codec, sample rate, layout, extradata) and a template
stream for declaring it in an output. Audio that Matroska cannot carry is left out with one warning
(per codec); the video is unaffected, as it is when the camera has no audio.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from urllib.parse import urlsplit, urlunsplit

import av
import numpy as np

from streamd.config import RtspSourceConfig
from streamd.errors import SourceError
from streamd.sources.base import FrameSource
from streamd.sources.live_audio import AudioTrack, LiveAudioFeed, LiveAudioPacket
from streamd.sources.orientation import FrameOrienter
from streamd.sources.planes import PlaneKeeper
from streamd.types import VideoFrame, Yuv420Planes

logger = logging.getLogger(__name__)

# FFmpeg reads 0 as "use the default" (5 s), so the smallest real analyze duration is 1 microsecond.
# With the SPS and PPS from the SDP, the stream parameters are known after the first keyframe.
PROBE_OPTIONS = {"analyzeduration": "1", "probesize": "32768"}
FRAME_QUEUE_SIZE = 8
# Audio packets held until a frame fixes the connection's offset; about 5 s of AAC.
MAX_WAITING_AUDIO = 256
CONSUMER_POLL_S = 0.1

StateCallback = Callable[[bool, str], None]


@dataclass(frozen=True)
class _ConnectionAudio:
    stream: av.audio.stream.AudioStream
    track: AudioTrack


@dataclass(frozen=True)
class _StateChange:
    up: bool
    reason: str


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for logs and events."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class RtspVideoSource(FrameSource):
    """Frames from an RTSP camera, surviving network faults until `close()`.

    Counters (read them from any thread): `frames_decoded`; `decode_errors` (packets the decoder
    rejected, which are skipped, plus frames in which it concealed damaged macroblocks; those are
    still yielded, since they show the scene and must be anonymized like any other); `disconnects`
    (times a working stream was lost); `reconnects` (times it came back after a loss);
    `connect_failures` (attempts that ended before a first frame); `connected`.

    `on_state(up, reason)` is called from the thread iterating `frames()` whenever the stream goes
    up or down (the first failure of a camera that never came up counts as down).

    `audio_feed` carries the camera's audio packets (see the module docstring); `audio_packets` counts
    those published, `audio_packets_dropped` those left out (before a connection's first frame, or
    overlapping the previous packet after a reconnect).
    """

    is_live = True

    def __init__(self, config: RtspSourceConfig, on_state: StateCallback | None = None,
                 rng: random.Random | None = None, keep_yuv420: bool = False) -> None:
        self.config = config
        self._keep_yuv420 = keep_yuv420
        self.on_state = on_state
        self.display_url = redact_url(config.url)
        self.frames_decoded = 0
        self.decode_errors = 0
        self.disconnects = 0
        self.reconnects = 0
        self.connect_failures = 0
        self.connected = False
        self._rng = rng if rng is not None else random.Random()
        self._closed = threading.Event()
        self._handoff: queue.Queue[VideoFrame | _StateChange | BaseException] = queue.Queue(FRAME_QUEUE_SIZE)
        self._reader: threading.Thread | None = None
        self._average_rate: Fraction | None = None
        self._next_index = 0
        self._last_pts: int | None = None
        self._frame_ticks = 1
        self.audio_feed = LiveAudioFeed()
        self.audio_packets = 0
        self.audio_packets_dropped = 0
        self._audio_end_s: Fraction | None = None
        self._unsupported_audio_logged: set[str] = set()

    @property
    def time_base(self) -> Fraction:
        return Fraction(1, 90_000)

    @property
    def average_rate(self) -> Fraction:
        if self._average_rate is None:
            raise SourceError(f"{self.display_url}: frame rate unknown until the first frame has been received")
        return self._average_rate

    def frames(self) -> Iterator[VideoFrame]:
        if self._reader is not None:
            raise SourceError(f"{self.display_url}: frames() can be iterated only once")
        reader = threading.Thread(target=self._read_forever, name=f"rtsp-reader {self.display_url}", daemon=True)
        # Published only once started: close() may run on another thread at any moment and joins it.
        reader.start()
        self._reader = reader
        try:
            while not self._closed.is_set():
                try:
                    item = self._handoff.get(timeout=CONSUMER_POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, VideoFrame):
                    yield item
                elif isinstance(item, _StateChange):
                    if self.on_state is not None:
                        self.on_state(item.up, item.reason)
                else:
                    raise SourceError(f"{self.display_url}: reader failed: {item}") from item
        finally:
            self.close()

    def close(self) -> None:
        """Stop reconnecting and end `frames()`; returns at once, safe to call twice and from any thread."""
        self._closed.set()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=CONSUMER_POLL_S)

    # ------------------------------------------------------------------ reader thread
    def _read_forever(self) -> None:
        try:
            failures_in_row = 0
            ever_up = False
            down_reported = False
            down_since = time.monotonic()
            while not self._closed.is_set():
                delivered, reason = self._read_connection(ever_up, down_since)
                reason = reason.replace(self.config.url, self.display_url)
                self.connected = False
                if self._closed.is_set():
                    break
                if delivered:
                    ever_up, failures_in_row, down_since = True, 0, time.monotonic()
                    self.disconnects += 1
                else:
                    self.connect_failures += 1
                    failures_in_row += 1
                if delivered or not down_reported:
                    logger.warning("RTSP %s down: %s; reconnecting until it returns", self.display_url, reason)
                    down_reported = True
                    self._put(_StateChange(False, reason))
                else:
                    logger.debug("RTSP %s still down (attempt %d): %s", self.display_url, failures_in_row, reason)
                self._closed.wait(self._backoff_s(failures_in_row))
        except Exception as error:  # a defect, not a network fault: the consumer raises it
            logger.exception("RTSP reader for %s failed", self.display_url)
            self._put(error)
        finally:
            self.connected = False

    def _backoff_s(self, failures_in_row: int) -> float:
        """Full jitter between the initial delay and an exponentially growing cap."""
        initial, longest = self.config.reconnect_initial_s, self.config.reconnect_max_s
        cap = min(longest, initial * 2.0 ** min(failures_in_row, 32))
        return self._rng.uniform(min(initial, cap), cap)

    def _put(self, item: VideoFrame | _StateChange | BaseException) -> None:
        while not self._closed.is_set():
            try:
                self._handoff.put(item, timeout=CONSUMER_POLL_S)
                return
            except queue.Full:
                continue

    def _read_connection(self, ever_up: bool, down_since: float) -> tuple[bool, str]:
        """Read one connection until it fails; returns (whether any frame came, why it ended)."""
        config = self.config
        try:
            container = av.open(config.url, options={"rtsp_transport": "tcp", **PROBE_OPTIONS},
                                timeout=(config.open_timeout_s, config.read_timeout_s))
        except av.FFmpegError as error:
            return False, f"cannot open: {error}"
        delivered = False
        try:
            if not container.streams.video:
                return False, "no video stream"
            stream = container.streams.video[0]
            # One decoding thread per camera: with slice threads FFmpeg does not reliably flag
            # concealed frames, and cameras are isolated from each other anyway.
            stream.codec_context.thread_count = 1
            rate = stream.average_rate or stream.guessed_rate
            orienter = FrameOrienter(config.rotation, self.display_url)
            keeper = PlaneKeeper(f"RTSP {self.display_url}") if self._keep_yuv420 else None
            pts_offset: int | None = None
            audio_track = self._audio_track(container)
            connection_start_s: Fraction | None = None
            # Audio read before a frame fixed the offset; published (or dropped, when it starts before the
            # connection's first frame) by its timestamp once the offset is known, however late decoding is.
            waiting_audio: list[av.Packet] = []
            packets = container.demux(stream, audio_track.stream) if audio_track else container.demux(stream)
            while True:
                requested = time.monotonic()
                try:
                    packet = next(packets, None)
                except av.ExitError:
                    return delivered, f"no data for {config.read_timeout_s:g} s"
                except av.FFmpegError as error:
                    return delivered, f"read failed: {error}"
                if packet is None:
                    return delivered, "end of stream"
                if self._closed.is_set():
                    return delivered, "closed"
                # FFmpeg's H.264 parser holds the last frame until the next one starts, and hands it
                # over when the read is interrupted; a packet that took this long means a stall.
                stalled = time.monotonic() - requested >= config.read_timeout_s
                if packet.stream.type == "audio":
                    if audio_track is not None and packet.size:
                        if pts_offset is not None:
                            self._publish_audio(packet, audio_track.track, pts_offset, connection_start_s)
                        elif len(waiting_audio) < MAX_WAITING_AUDIO:
                            waiting_audio.append(packet)
                        else:
                            self.audio_packets_dropped += 1
                    if stalled:
                        return delivered, f"no data for {config.read_timeout_s:g} s"
                    continue
                try:
                    decoded = stream.codec_context.decode(packet)
                except av.FFmpegError as error:
                    self.decode_errors += 1
                    logger.debug("RTSP %s: packet skipped: %s", self.display_url, error)
                    decoded = []
                for frame in decoded:
                    bgr = orienter.upright_bgr(frame)
                    if not delivered:
                        delivered = True
                        logger.info("RTSP %s: %dx%d frames %s (%s), upright %dx%d", self.display_url, frame.width,
                                    frame.height, orienter.current.describe(), orienter.source_label,
                                    bgr.shape[1], bgr.shape[0])
                        self._on_connected(ever_up, down_since, rate)
                    planes = None if keeper is None else keeper.planes_of(frame, orienter.current)
                    pts_offset = self._emit(frame, bgr, stream.time_base, pts_offset, planes)
                    if connection_start_s is None:
                        connection_start_s = self._last_pts * self.time_base
                    if pts_offset is not None and waiting_audio and audio_track is not None:
                        for waiting in waiting_audio:
                            self._publish_audio(waiting, audio_track.track, pts_offset, connection_start_s)
                        waiting_audio.clear()
                if stalled:
                    return delivered, f"no data for {config.read_timeout_s:g} s"
        finally:
            container.close()

    def _audio_track(self, container: av.container.InputContainer) -> "_ConnectionAudio | None":
        """The connection's first audio stream, published as the feed's track (the current one kept when
        the parameters are the same, so outputs opened on it go on taking its packets)."""
        if not container.streams.audio:
            self.audio_feed.set_track(None)
            return None
        stream = container.streams.audio[0]
        try:
            track = AudioTrack(stream)
        except (ValueError, av.FFmpegError) as error:
            name = stream.codec_context.name
            if name not in self._unsupported_audio_logged:
                self._unsupported_audio_logged.add(name)
                logger.warning("RTSP %s: the camera's %s audio cannot be passed through (%s); outputs get video only",
                               self.display_url, name, error)
            self.audio_feed.set_track(None)
            return None
        current = self.audio_feed.track
        if current is not None and current.parameters == track.parameters:
            track = current
        else:
            logger.info("RTSP %s: audio %s", self.display_url, track.parameters.describe())
            self.audio_feed.set_track(track)
        return _ConnectionAudio(stream, track)

    def _publish_audio(self, packet: av.Packet, track: AudioTrack, pts_offset: int | None,
                       connection_start_s: Fraction | None) -> None:
        """Rebase one audio packet onto the frames' clock and publish it; dropped before the connection's
        first frame and when it would overlap the previous packet."""
        stamp = packet.pts if packet.pts is not None else packet.dts
        time_base = track.parameters.time_base
        if pts_offset is None or connection_start_s is None or stamp is None or packet.time_base is None:
            self.audio_packets_dropped += 1
            return
        source_pts = round(Fraction(stamp) * Fraction(packet.time_base) / time_base)
        pts = source_pts + round(pts_offset * self.time_base / time_base)
        start_s = pts * time_base
        if start_s < connection_start_s or (self._audio_end_s is not None and start_s < self._audio_end_s):
            self.audio_packets_dropped += 1
            return
        duration = round(packet.duration * Fraction(packet.time_base) / time_base) if packet.duration else 0
        if not duration and track.frame_size and track.parameters.sample_rate:
            duration = round(Fraction(track.frame_size, track.parameters.sample_rate) / time_base)
        self._audio_end_s = (pts + max(duration, 1)) * time_base
        self.audio_feed.publish(LiveAudioPacket(bytes(packet), pts, duration, track))
        self.audio_packets += 1

    def _on_connected(self, ever_up: bool, down_since: float, rate: Fraction | None) -> None:
        if rate:
            self._average_rate = Fraction(rate)
            self._frame_ticks = max(1, round(self.time_base.denominator / (self._average_rate * self.time_base.numerator)))
        self.connected = True
        if ever_up:
            self.reconnects += 1
        outage_s = time.monotonic() - down_since
        if ever_up or self.connect_failures:
            logger.info("RTSP %s up again after %.1f s", self.display_url, outage_s)
            reason = f"reconnected after {outage_s:.1f} s"
        else:
            logger.info("RTSP %s up", self.display_url)
            reason = "connected"
        self._put(_StateChange(True, reason))

    def _emit(self, frame: av.VideoFrame, bgr: np.ndarray, stream_time_base: Fraction | None,
              pts_offset: int | None, planes: Yuv420Planes | None = None) -> int | None:
        """Queue one frame (its upright pixels `bgr`, and its upright decoded planes when kept) with a
        rebased, strictly increasing pts; returns the connection's pts offset."""
        if frame.is_corrupt:
            self.decode_errors += 1
        following = 0 if self._last_pts is None else self._last_pts + self._frame_ticks
        if frame.pts is None or stream_time_base is None:
            pts = following
        else:
            source_pts = round(frame.pts * stream_time_base / self.time_base)
            if pts_offset is None:
                pts_offset = following - source_pts
            pts = source_pts + pts_offset if self._last_pts is None else max(source_pts + pts_offset, self._last_pts + 1)
        self._last_pts = pts
        video_frame = VideoFrame(bgr=bgr, index=self._next_index, pts=pts,
                                 time_base=self.time_base, wallclock=time.time(), yuv420=planes)
        self._next_index += 1
        self.frames_decoded += 1
        self._put(video_frame)
        return pts_offset
