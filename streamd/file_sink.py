"""File sink: anonymized frames encoded to H.264 in MKV or MP4 with their original timestamps."""

from __future__ import annotations

from fractions import Fraction

from streamd.config import FileOutputConfig
from streamd.sinks import FrameSink
from streamd.types import AnonymizedFrame
from streamd.video_out import VideoFileWriter


class VideoFileSink(FrameSink):
    """Opens its writer on the first frame (the frame size is known only then)."""

    stage = "encode"

    def __init__(self, config: FileOutputConfig, time_base: Fraction, average_rate: Fraction) -> None:
        self._config = config
        self._time_base = time_base
        self._average_rate = average_rate
        self._writer: VideoFileWriter | None = None

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written if self._writer else 0

    def write(self, anonymized: AnonymizedFrame) -> None:
        if self._writer is None:
            self._writer = VideoFileWriter(
                self._config.path,
                anonymized.frame.resolution_wh,
                self._time_base,
                self._average_rate,
                codec=self._config.codec,
                crf=self._config.crf,
                preset=self._config.preset,
            )
        self._writer.write(anonymized.bgr, pts=anonymized.frame.pts)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
