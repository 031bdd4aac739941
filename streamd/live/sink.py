"""The pipeline output that feeds a camera's live view: the same frames the other outputs get."""

from __future__ import annotations

from streamd.live.feed import LiveFeed
from streamd.sinks.base import FrameSink
from streamd.types import AnonymizedFrame


class LiveSink(FrameSink):
    """Hands each anonymized frame to the camera's `LiveFeed` (a reference, no copy, no wait)."""

    stage = "publish"

    def __init__(self, feed: LiveFeed) -> None:
        self.feed = feed

    def write(self, anonymized: AnonymizedFrame) -> None:
        self.feed.publish(anonymized.bgr, anonymized.frame.index)
