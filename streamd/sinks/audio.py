"""Audio passthrough: a video file's audio streams copied, packet for packet, into an output video.

Nothing is decoded or re-encoded: each audio packet keeps its codec, its bytes and its timestamps,
so the output's audio starts and ends where the input's does and stays in sync with the video
frames, which keep their input timestamps too. Packets are muxed in time order with the video
(`mux_until` the time of each video frame), so the muxer never has to hold more than a frame's worth.

Several sources (consecutive segments of one recording) are copied one after the other into the same
output streams; they must carry the same audio streams (count and codecs). A writer that needs to see
each packet before it is muxed (a signed recording digests them) passes `on_packet`.

`LiveAudioPassthrough` does the same for a live camera's audio (`streamd.sources.live_audio`): the
output declares the stream the camera offered when the output opens, takes the packets the source
rebased onto the frames' clock up to each frame's time, and at the end the audio up to the end of the
last frame (a camera never ends, so there is no "rest of the audio").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av

from streamd.errors import SinkError, SourceError, StreamdError
from streamd.sources.live_audio import AudioSubscription, AudioTrack

logger = logging.getLogger(__name__)


def audio_stream_count(path: Path) -> int:
    """How many audio streams the media file at `path` holds."""
    try:
        with av.open(str(path)) as container:
            return len(container.streams.audio)
    except av.FFmpegError as exc:
        raise SourceError(f"{path}: cannot read its streams: {exc}") from None


#: Called with (audio stream ordinal, packet) just before each audio packet is muxed.
PacketObserver = Callable[[int, av.Packet], None]


class AudioPassthrough:
    """Copies the audio streams of `source_path` (or of several files, in turn) into `container`,
    before its first packet is muxed."""

    #: False: `mux_until(None)` copies all the audio that is left (a file has an end).
    ends_with_video = False

    def __init__(self, source_path: Path | Sequence[Path], container: av.container.OutputContainer, output_path: Path,
                 on_packet: PacketObserver | None = None) -> None:
        paths = [Path(source_path)] if isinstance(source_path, (str, Path)) else [Path(path) for path in source_path]
        if not paths:
            raise SinkError(f"{output_path}: no file to copy audio from")
        self.source_path = paths[0]
        self.output_path = Path(output_path)
        self.packets_copied = 0
        self._container = container
        self._on_packet = on_packet
        self._inputs: list[av.container.InputContainer] = []
        self._streams: list[av.stream.Stream] = []
        self.codec_names: list[str] = []
        try:
            for path in paths:
                self._inputs.append(self._open(path))
            first_streams = list(self._inputs[0].streams.audio)
            for stream in first_streams:
                self._streams.append(self._add_stream(stream))
            self.codec_names = [stream.codec_context.name for stream in first_streams]
            for path, source in zip(paths[1:], self._inputs[1:]):
                names = [stream.codec_context.name for stream in source.streams.audio]
                if names != self.codec_names:
                    raise SinkError(f"{self.output_path}: {path} carries audio {names or 'none'}, {self.source_path} "
                                    f"{self.codec_names or 'none'}; the audio of one output must be the same "
                                    "streams throughout (write them to separate outputs, or pass --no-audio)")
        except StreamdError:
            self.close()
            raise
        self._packets: Iterator[tuple[int, av.Packet]] = self._demux_all(paths)
        self._pending: tuple[int, av.Packet] | None = None
        if self._streams:
            logger.info("%s: copying %d audio stream(s) from %s", self.output_path, len(self._streams),
                        ", ".join(map(str, paths)))

    def _open(self, path: Path) -> av.container.InputContainer:
        try:
            return av.open(str(path))
        except av.FFmpegError as exc:
            raise SourceError(f"{path}: cannot open it to copy its audio: {exc}") from None

    def _add_stream(self, stream: av.stream.Stream) -> av.stream.Stream:
        try:
            return self._container.add_stream_from_template(stream)
        except (ValueError, av.FFmpegError) as exc:
            raise SinkError(
                f"{self.output_path}: cannot copy the {stream.codec_context.name} audio into a "
                f"{self.output_path.suffix} file ({exc}); write .mkv, or pass --no-audio"
            ) from None

    def _demux_all(self, paths: Sequence[Path]) -> Iterator[tuple[int, av.Packet]]:
        """(ordinal of the audio stream, packet) of every source in turn; empty flush packets skipped."""
        for path, source in zip(paths, self._inputs):
            audio_streams = list(source.streams.audio)
            if not audio_streams:
                continue
            ordinal_of = {stream.index: ordinal for ordinal, stream in enumerate(audio_streams)}
            try:
                for packet in source.demux(*audio_streams):
                    if packet.size:  # the demuxer ends each stream with an empty flush packet
                        yield ordinal_of[packet.stream_index], packet
            except av.FFmpegError as exc:
                logger.warning("%s: reading its audio stopped early: %s", path, exc)

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def _next_packet(self) -> tuple[int, av.Packet] | None:
        if self._pending is not None:
            entry, self._pending = self._pending, None
            return entry
        return next(self._packets, None)

    def mux_until(self, seconds: Fraction | float | None) -> None:
        """Mux every audio packet that starts at or before `seconds` (None: all that are left)."""
        while True:
            entry = self._next_packet()
            if entry is None:
                return
            ordinal, packet = entry
            stamp = packet.pts if packet.pts is not None else packet.dts
            if seconds is not None and stamp is not None and stamp * packet.time_base > seconds:
                self._pending = entry
                return
            packet.stream = self._streams[ordinal]
            mux_audio_packet(self._container, packet, ordinal, self._on_packet, self.output_path)
            self.packets_copied += 1

    def close(self) -> None:
        for source in self._inputs:
            source.close()


def mux_audio_packet(container: av.container.OutputContainer, packet: av.Packet, ordinal: int,
                     on_packet: PacketObserver | None, output_path: Path) -> None:
    """Mux one audio packet (its stream already set), telling `on_packet` first."""
    if on_packet is not None:
        on_packet(ordinal, packet)
    try:
        container.mux(packet)
    except (OSError, av.FFmpegError) as exc:
        raise SinkError(f"{output_path}: cannot write an audio packet: {exc}") from None


class LiveAudioPassthrough:
    """Writes a live camera's audio (one stream) into `container`, from `subscription`, before its
    first packet is muxed. Use `open`, which returns None (after one log line) when there is no audio
    to write."""

    #: True: the audio ends with the video; `mux_until(None)` is not allowed.
    ends_with_video = True

    def __init__(self, subscription: AudioSubscription, track: AudioTrack, stream: av.stream.Stream,
                 container: av.container.OutputContainer, output_path: Path,
                 on_packet: PacketObserver | None = None) -> None:
        self.output_path = Path(output_path)
        self.codec_names = [track.parameters.codec_name]
        self.packets_copied = 0
        self._subscription = subscription
        self._stream = stream
        self._container = container
        self._on_packet = on_packet
        self._started = False

    @classmethod
    def open(cls, subscription: AudioSubscription, container: av.container.OutputContainer, output_path: Path,
             on_packet: PacketObserver | None = None) -> "LiveAudioPassthrough | None":
        """Declare the camera's current audio in `container`; None (the subscription closed) when the
        camera has no audio or the container cannot hold it."""
        output_path = Path(output_path)
        track = subscription.lock_track()
        if track is None:
            subscription.close()
            logger.info("%s: the camera sends no audio (or none that can be passed through); writing video only",
                        output_path)
            return None
        try:
            stream = container.add_stream_from_template(track.template)
        except (ValueError, av.FFmpegError) as exc:
            subscription.close()
            logger.warning("%s: the camera's %s audio cannot go into a %s file (%s); writing video only "
                           "(write .mkv to keep it)", output_path, track.parameters.codec_name, output_path.suffix, exc)
            return None
        logger.info("%s: writing the camera's audio (%s), unchanged", output_path, track.parameters.describe())
        return cls(subscription, track, stream, container, output_path, on_packet)

    @property
    def stream_count(self) -> int:
        return 1

    def mux_until(self, seconds: Fraction | float | None) -> None:
        """Mux the audio packets that start at or before `seconds`; audio from before the first call
        (before the output's first frame) is left out."""
        if seconds is None:
            raise SinkError(f"{self.output_path}: a live camera's audio has no end; give the end of the video")
        seconds = Fraction(seconds)
        if not self._started:
            self._started = True
            self._subscription.discard_before(seconds)
        for live_packet in self._subscription.take_until(seconds):
            packet = live_packet.to_av_packet()
            packet.stream = self._stream
            mux_audio_packet(self._container, packet, 0, self._on_packet, self.output_path)
            self.packets_copied += 1

    def close(self) -> None:
        self._subscription.close()
