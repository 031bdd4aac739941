"""File sink: anonymized frames encoded to H.264 in MKV or MP4 with their original timestamps."""

from __future__ import annotations

import logging
from pathlib import Path

from streamd.config import FileOutputConfig
from streamd.sources.base import FrameSource
from streamd.sources.files import FileVideoSource
from streamd.sinks import FrameSink, keep_written_frames
from streamd.types import AnonymizedFrame
from streamd.video_out import VideoFileWriter

logger = logging.getLogger(__name__)


def audio_source_of(config: FileOutputConfig, source: FrameSource) -> Path | None:
    """The file whose audio the output copies: a file source played once, when `audio` is on."""
    if not config.audio or not isinstance(source, FileVideoSource):
        return None
    if source.loop:
        logger.info("%s: the source loops; its audio is not copied", config.path)
        return None
    return source.path


class VideoFileSink(FrameSink):
    """Opens its writer on the first frame (the frame size is known only then)."""

    stage = "encode"

    def __init__(self, config: FileOutputConfig, source: FrameSource) -> None:
        self._config = config
        self._source = source  # a live source knows its rate only once frames arrive
        self._writer: VideoFileWriter | None = None

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written if self._writer else 0

    def write(self, anonymized: AnonymizedFrame) -> None:
        if self._writer is None:
            self._writer = VideoFileWriter(
                self._config.path,
                anonymized.frame.resolution_wh,
                anonymized.frame.time_base or self._source.time_base,
                self._source.average_rate,
                codec=self._config.codec,
                crf=self._config.crf,
                preset=self._config.preset,
                audio_source=audio_source_of(self._config, self._source),
            )
        self._writer.write(anonymized.bgr, pts=anonymized.frame.pts)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def abort(self) -> None:
        if self._writer is not None:
            keep_written_frames(self._writer, self._config.path)
