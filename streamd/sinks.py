"""Where anonymized frames go: the interface the pipeline writes to.

A sink is told `finish()` when the stream ended normally and `abort()` when it failed, so that a
file sink can remove a half-written output.
"""

from __future__ import annotations

import abc

from streamd.types import AnonymizedFrame


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
        """The stream failed: close and leave no partial output behind."""
