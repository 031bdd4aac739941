"""Audio passthrough: a video file's audio streams copied, packet for packet, into an output video.

Nothing is decoded or re-encoded: each audio packet keeps its codec, its bytes and its timestamps,
so the output's audio starts and ends where the input's does and stays in sync with the video
frames, which keep their input timestamps too. Packets are muxed in time order with the video
(`mux_until` the time of each video frame), so the muxer never has to hold more than a frame's worth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from streamd.errors import SinkError, SourceError

logger = logging.getLogger(__name__)


def audio_stream_count(path: Path) -> int:
    """How many audio streams the media file at `path` holds."""
    try:
        with av.open(str(path)) as container:
            return len(container.streams.audio)
    except av.FFmpegError as exc:
        raise SourceError(f"{path}: cannot read its streams: {exc}") from None


class AudioPassthrough:
    """Copies the audio streams of `source_path` into `container` (before its first packet is muxed)."""

    def __init__(self, source_path: Path, container: av.container.OutputContainer, output_path: Path) -> None:
        self.source_path = Path(source_path)
        self.output_path = Path(output_path)
        self.packets_copied = 0
        self._container = container
        try:
            self._input = av.open(str(self.source_path))
        except av.FFmpegError as exc:
            raise SourceError(f"{self.source_path}: cannot open it to copy its audio: {exc}") from None
        audio_streams = list(self._input.streams.audio)
        self._streams: dict[int, av.stream.Stream] = {}
        for stream in audio_streams:
            try:
                self._streams[stream.index] = container.add_stream_from_template(stream)
            except (ValueError, av.FFmpegError) as exc:
                self.close()
                raise SinkError(
                    f"{self.output_path}: cannot copy the {stream.codec_context.name} audio into a "
                    f"{self.output_path.suffix} file ({exc}); write .mkv, or pass --no-audio"
                ) from None
        self._packets: Iterator[av.Packet] = self._input.demux(*audio_streams) if audio_streams else iter(())
        self._pending: av.Packet | None = None
        if audio_streams:
            logger.info("%s: copying %d audio stream(s) from %s", self.output_path, len(audio_streams), self.source_path)

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def _next_packet(self) -> av.Packet | None:
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        while True:
            try:
                packet = next(self._packets)
            except StopIteration:
                return None
            except av.FFmpegError as exc:
                logger.warning("%s: reading its audio stopped early: %s", self.source_path, exc)
                return None
            if packet.size:  # the demuxer ends each stream with an empty flush packet
                return packet

    def mux_until(self, seconds: Fraction | float | None) -> None:
        """Mux every audio packet that starts at or before `seconds` (None: all that are left)."""
        while True:
            packet = self._next_packet()
            if packet is None:
                return
            stamp = packet.pts if packet.pts is not None else packet.dts
            if seconds is not None and stamp is not None and stamp * packet.time_base > seconds:
                self._pending = packet
                return
            packet.stream = self._streams[packet.stream_index]
            try:
                self._container.mux(packet)
            except (OSError, av.FFmpegError) as exc:
                raise SinkError(f"{self.output_path}: cannot write an audio packet: {exc}") from None
            self.packets_copied += 1

    def close(self) -> None:
        self._input.close()
