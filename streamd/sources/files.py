"""Video files as a frame source: PyAV decoding, upright frames, loop and real-time pacing."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from streamd.errors import SourceError, UnusableSourceError
from streamd.sources.base import FrameSource
from streamd.sources.planes import PlaneKeeper
from streamd.sources.orientation import UPRIGHT, FrameOrienter, Orientation, RotationSetting, first_frame_orientation
from streamd.types import VideoFrame

logger = logging.getLogger(__name__)


_FALLBACK_RATE = Fraction(25)

# FFmpeg renders text files (ANSI art, binary text) as video; such a "video" is never a camera clip.
_TEXT_RENDERING_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})


class FileVideoSource(FrameSource):
    """Decode the first video stream of a file with PyAV into BGR frames.

    The file is opened and checked on construction, so a missing, corrupt or unsupported file fails
    with a `SourceError` before any pipeline starts. Packets that fail to decode mid-file are skipped
    and counted in `decode_errors`; a file in which no frame at all decodes is an error.

    `loop=True` starts again at the end; `index` and `pts` keep increasing across passes so the
    stream looks like one continuous recording. `realtime=True` paces frames to their timestamps
    (measured from the first frame), as a live camera would deliver them. Frames without a pts
    (some elementary streams) get one computed from their index and the average rate. Calling
    `frames()` again starts over from the beginning of the file.

    Frames come out upright. `rotation="auto"` follows the display matrix FFmpeg attaches to each
    decoded frame (a phone's MP4 rotation, an H.264 display orientation SEI); 0, 90, 180 or 270 turns
    every stored frame that many degrees clockwise instead, whatever the metadata says (see
    `streamd.sources.orientation`). `resolution_wh` is the upright size, and outputs are written with upright
    pixels and no rotation metadata, so every player shows them the same way.

    `keep_yuv420=True` (a camera that seals original faces) also hands on each frame's decoded yuv420p
    planes, upright, in `VideoFrame.yuv420` (`streamd.sources.planes`); otherwise frames carry none.
    """

    is_live = False

    def __init__(self, path: Path | str, loop: bool = False, realtime: bool = False,
                 rotation: RotationSetting = "auto", keep_yuv420: bool = False) -> None:
        self.path = Path(path)
        self._planes = PlaneKeeper(str(self.path)) if keep_yuv420 else None
        self.loop = loop
        self.realtime = realtime
        self.decode_errors = 0
        self.frames_decoded = 0
        self.frames_short = 0  # frames the container announces that the file did not hold (truncated)
        self._closed = False
        self._iterated = False
        self._container = self._open_container()
        stream = self._container.streams.video[0]
        self._time_base = Fraction(stream.time_base) if stream.time_base else None
        self._average_rate = self._rate_of(stream)
        if self._time_base is None:
            self._time_base = 1 / self._average_rate
        codec_context = stream.codec_context
        self._stored_wh = (int(codec_context.width), int(codec_context.height))
        self._orienter = FrameOrienter(rotation, str(self.path), initial=self._initial_orientation(rotation))
        self._resolution_wh = self.orientation.upright_wh(self._stored_wh)
        self._frame_count_hint = self._count_hint(self._container, stream, self._average_rate)
        self._codec_name = codec_context.name
        logger.info(
            "opened %s: %s %dx%d at %s fps, time base %s; frames %s (%s), upright %dx%d",
            self.path,
            self._codec_name,
            self._stored_wh[0],
            self._stored_wh[1],
            self._average_rate,
            self._time_base,
            self.orientation.describe(),
            self._orienter.source_label,
            *self._resolution_wh,
        )

    # ------------------------------------------------------------ opening and checks
    def _open_container(self) -> av.container.InputContainer:
        if not self.path.exists():
            raise UnusableSourceError(f"{self.path}: video file not found")
        if self.path.is_dir():
            raise UnusableSourceError(f"{self.path}: is a directory, not a video file")
        try:
            container = av.open(str(self.path), mode="r")
        except av.error.PermissionError:
            raise UnusableSourceError(f"{self.path}: permission denied") from None
        except av.error.InvalidDataError:
            raise UnusableSourceError(f"{self.path}: not a video file, or the file is corrupt or truncated") from None
        except av.FFmpegError as exc:
            raise UnusableSourceError(f"{self.path}: cannot open video: {exc.strerror or exc}") from None
        try:
            self._check_video_stream(container)
        except SourceError:
            container.close()
            raise
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return container

    def _check_video_stream(self, container: av.container.InputContainer) -> None:
        if not container.streams.video:
            kinds = sorted({stream.type for stream in container.streams}) or ["none"]
            raise UnusableSourceError(f"{self.path}: no video stream in the file (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise UnusableSourceError(f"{self.path}: unsupported video codec (this FFmpeg build has no decoder for it)")
        if stream.codec_context.name in _TEXT_RENDERING_CODECS:
            raise UnusableSourceError(f"{self.path}: not a video file (FFmpeg reads it as text rendered to video)")

    def _initial_orientation(self, rotation: RotationSetting) -> Orientation:
        """The fixed orientation asked for, or the display orientation of the file's first frame."""
        if rotation != "auto":
            return Orientation(int(rotation))
        try:
            return first_frame_orientation(self.path) or UPRIGHT
        except av.FFmpegError as exc:
            logger.warning("%s: cannot read the display orientation (%s); assuming upright", self.path, exc)
            return UPRIGHT

    def _rate_of(self, stream: av.video.stream.VideoStream) -> Fraction:
        for name in ("average_rate", "guessed_rate", "base_rate"):
            rate = getattr(stream, name)
            if rate is not None and rate > 0:
                return Fraction(rate)
        logger.warning("%s: the file does not state a frame rate; assuming %s fps", self.path, _FALLBACK_RATE)
        return _FALLBACK_RATE

    @staticmethod
    def _count_hint(
        container: av.container.InputContainer, stream: av.video.stream.VideoStream, rate: Fraction
    ) -> int | None:
        if stream.frames:
            return int(stream.frames)
        if stream.duration is not None and stream.time_base is not None:
            return max(1, round(stream.duration * stream.time_base * rate))
        if container.duration is not None and container.duration > 0:
            return max(1, round(Fraction(container.duration, av.time_base) * rate))
        return None

    # ------------------------------------------------------------ properties
    @property
    def time_base(self) -> Fraction:
        return self._time_base

    @property
    def average_rate(self) -> Fraction:
        return self._average_rate

    @property
    def resolution_wh(self) -> tuple[int, int]:
        """Width and height of the upright frames: the container's size, turned with `orientation`."""
        return self._resolution_wh

    @property
    def stored_resolution_wh(self) -> tuple[int, int]:
        """Width and height the container declares for the stored frames."""
        return self._stored_wh

    @property
    def orientation(self) -> Orientation:
        """How the stored frames are turned upright (from the first frame, or the `rotation` setting)."""
        return self._orienter.current

    @property
    def frame_count_hint(self) -> int | None:
        """Frames in one pass as the container states or its duration implies; None when unknown."""
        return self._frame_count_hint

    # ------------------------------------------------------------ decoding
    def _decoded_frames(self, container: av.container.InputContainer) -> Iterator[av.VideoFrame]:
        """Decode one pass; count packets that fail or that the decoder discards as undecodable.

        FFmpeg's H.264 decoder conceals most damage by dropping the frame instead of raising, so a
        packet that went in without an exception but never produced a frame (checked at the end of
        the pass, after the decoder is flushed) is counted as a decode error too.
        """
        stream = container.streams.video[0]
        packets = container.demux(stream)
        packets_accepted = 0
        frames_out = 0
        errors_before = self.decode_errors
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                self.decode_errors += 1
                logger.warning("%s: reading stopped early: %s", self.path, exc.strerror or exc)
                break
            try:
                decoded = packet.decode()
            except av.FFmpegError as exc:
                self.decode_errors += 1
                logger.debug("%s: skipped a packet that failed to decode (pts %s): %s", self.path, packet.pts, exc)
                continue
            if packet.size:
                packets_accepted += 1
            frames_out += len(decoded)
            yield from decoded
        if packets_accepted > frames_out:
            self.decode_errors += packets_accepted - frames_out
        if self.decode_errors > errors_before:
            logger.warning(
                "%s: %d packets could not be decoded and were skipped",
                self.path,
                self.decode_errors - errors_before,
            )

    def frames(self) -> Iterator[VideoFrame]:
        if self._closed:
            raise SourceError(f"{self.path}: source is closed")
        if self._iterated:
            self._container.close()
            self._container = self._open_container()
        self._iterated = True
        ticks_per_frame = max(1, round(1 / (self._average_rate * self._time_base)))
        index = 0
        pts_offset = 0
        next_free_pts: int | None = None
        pace_start: tuple[float, Fraction] | None = None
        pass_number = 0
        while True:
            if pass_number > 0:
                self._container.close()
                self._container = self._open_container()
            first_pts_in_pass: int | None = None
            frames_in_pass = 0
            for decoded in self._decoded_frames(self._container):
                source_pts = decoded.pts
                if source_pts is None:
                    source_pts = round(index / (self._average_rate * self._time_base))
                if first_pts_in_pass is None:
                    first_pts_in_pass = source_pts
                    if pass_number > 0 and next_free_pts is not None:
                        pts_offset = next_free_pts - source_pts
                pts = source_pts + pts_offset
                bgr = self._orienter.upright_bgr(decoded)
                planes = None if self._planes is None else self._planes.planes_of(decoded, self._orienter.current)
                if self.realtime:
                    pace_start = self._pace(pts, pace_start)
                frames_in_pass += 1
                self.frames_decoded += 1
                next_free_pts = pts + ticks_per_frame
                yield VideoFrame(bgr=bgr, index=index, pts=pts, time_base=self._time_base, wallclock=time.time(),
                                 yuv420=planes)
                index += 1
            if frames_in_pass == 0:
                raise SourceError(
                    f"{self.path}: no frame could be decoded ({self.decode_errors} decode errors); "
                    "the file is corrupt or not a video"
                )
            if not self.loop:
                self._check_complete(frames_in_pass)
                return
            pass_number += 1
            logger.debug("%s: looping, pass %d starts at frame %d", self.path, pass_number + 1, index)

    def _check_complete(self, frames_in_pass: int) -> None:
        """Count the frames a truncated file is short of what its container announces.

        The announced count comes from the container's frame count or duration, which can be a frame
        or two off on a complete file; fewer than max(2, 1%) missing frames is not counted.
        """
        announced = self._frame_count_hint
        if announced is None:
            return
        missing = announced - frames_in_pass
        if missing > max(2, announced // 100):
            self.frames_short = missing
            logger.warning("%s: the file ended after %d of the %d frames its container announces (truncated?)",
                           self.path, frames_in_pass, announced)

    def _pace(self, pts: int, pace_start: tuple[float, Fraction] | None) -> tuple[float, Fraction]:
        """Sleep until the frame's time relative to the first paced frame; return the reference."""
        seconds = pts * self._time_base
        if pace_start is None:
            return time.monotonic(), seconds
        start_monotonic, start_seconds = pace_start
        delay = start_monotonic + float(seconds - start_seconds) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return pace_start

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._container.close()
