"""File sink: anonymized frames encoded to H.264 in MKV or MP4 with their original timestamps, and the
source's audio passed through (a file source's, or a live camera's)."""

from __future__ import annotations

import logging
from pathlib import Path

from streamd.config import FileOutputConfig
from streamd.sources.base import FrameSource
from streamd.sources.files import FileVideoSource
from streamd.sinks.base import ClosableWriter, FrameSink, keep_written_frames
from streamd.sources.live_audio import AudioSubscription
from streamd.types import AnonymizedFrame
from streamd.sinks.video_out import VideoFileWriter

logger = logging.getLogger(__name__)


def audio_source_of(config: FileOutputConfig, source: FrameSource) -> Path | AudioSubscription | None:
    """Where the output's audio comes from, when `audio` is on: the file of a file source played once,
    or a subscription to a live source's audio feed (take it before the source's first frame, and close
    it when no writer takes it over)."""
    if not config.audio:
        return None
    if source.audio_feed is not None:
        return source.audio_feed.subscribe(str(config.path))
    if not isinstance(source, FileVideoSource):
        return None
    if source.loop:
        logger.info("%s: the source loops; its audio is not copied", config.path)
        return None
    return source.path


class FileWriterSink(FrameSink):
    """A sink writing one file (`config.path`) through a writer it opens on the first frame (the frame
    size is known only then), with the source's audio when `config.audio` is on."""

    stage = "encode"

    def __init__(self, config: FileOutputConfig, source: FrameSource) -> None:
        self._config = config
        self._source = source  # a live source knows its rate only once frames arrive
        self._writer: ClosableWriter | None = None
        self._audio_source = audio_source_of(config, source)

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written if self._writer else 0

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
        release_unused_audio(self._audio_source)

    def abort(self) -> None:
        if self._writer is not None:
            keep_written_frames(self._writer, self._config.path)
        release_unused_audio(self._audio_source)


class VideoFileSink(FileWriterSink):
    """Anonymized frames encoded to one video file."""

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
                audio_source=self._audio_source,
            )
        self._writer.write(anonymized.bgr, pts=anonymized.frame.pts)


def release_unused_audio(audio_source: Path | AudioSubscription | None) -> None:
    """Stop a live audio subscription (the writer, if any, has finished with it); safe to call twice."""
    if isinstance(audio_source, AudioSubscription):
        audio_source.close()
