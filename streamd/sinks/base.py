"""Where anonymized frames go: the interface the pipeline writes to.

A sink is told `finish()` when the stream ended normally and `abort()` when it failed. A file sink
that had written frames keeps them: it finishes the file under an `incomplete` name beside the
target (every frame in it was anonymized before it was written, so it is as safe as a complete
output), and a restarted camera writes its target path afresh without losing the earlier run.
"""

from __future__ import annotations

import abc
import logging
from pathlib import Path
from typing import Protocol

from streamd.errors import SinkError
from streamd.types import AnonymizedFrame
from streamd.sinks.video_out import incomplete_sibling

logger = logging.getLogger(__name__)


class FrameSink(abc.ABC):
    """Receives every anonymized frame of one stream, in order, from one thread."""

    #: Pipeline stage name its time is counted under ("encode" or "publish").
    stage: str = "encode"

    @abc.abstractmethod
    def write(self, anonymized: AnonymizedFrame) -> None:
        """Consume one frame; raise SinkError when the output cannot take it."""

    def end_tracks(self, track_ids: list[int]) -> None:
        """Tracks that ended without a further frame (end of stream)."""

    def source_state(self, up: bool, reason: str) -> None:
        """A live source went down (connection lost, `reason` says why) or came back up."""

    def finish(self) -> None:
        """The stream ended normally: flush and close."""

    def abort(self) -> None:
        """The stream failed: close, keeping what was written (see `keep_written_frames`)."""


class ClosableWriter(Protocol):
    frames_written: int

    def close(self, final_path: Path | None = None) -> None: ...

    def abort(self) -> None: ...


def keep_written_frames(writer: ClosableWriter, target: Path) -> Path | None:
    """After a failure: finish `writer` under an incomplete name beside `target` when it holds frames
    (returns that path), otherwise remove its temporary file (returns None)."""
    if writer.frames_written == 0:
        writer.abort()
        return None
    kept = incomplete_sibling(Path(target))
    try:
        writer.close(kept)
    except SinkError as exc:
        writer.abort()
        logger.error("%s: the %d frames written before the failure could not be kept: %s",
                     target, writer.frames_written, exc)
        return None
    logger.warning("%s: the run stopped early; the %d frames written before it stopped are in %s",
                   target, writer.frames_written, kept)
    return kept
