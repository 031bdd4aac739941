"""The interface every video source implements: decoded BGR frames with timestamps."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from fractions import Fraction

from streamd.sources.live_audio import LiveAudioFeed
from streamd.types import VideoFrame


class FrameSource(abc.ABC):
    """A stream of decoded frames.

    `is_live` tells the pipeline whether it may drop frames when it falls behind (live cameras) or
    must apply back-pressure so that no frame is lost (files).

    `audio_feed`: a live source's audio, for file outputs to pass through (`streamd.sources.live_audio`);
    None for sources without one (a file's audio is copied from the file itself).
    """

    is_live: bool = False
    audio_feed: LiveAudioFeed | None = None

    @abc.abstractmethod
    def frames(self) -> Iterator[VideoFrame]:
        """Yield frames in order until the source ends; raise SourceError on a fatal problem."""

    @property
    @abc.abstractmethod
    def time_base(self) -> Fraction:
        """Unit of `VideoFrame.pts`."""

    @property
    @abc.abstractmethod
    def average_rate(self) -> Fraction:
        """Nominal frames per second."""

    def close(self) -> None:
        """Release the underlying container; safe to call twice."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
