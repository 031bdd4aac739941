"""A frame source that plays frames from memory, for pipeline tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from streamd.sources.base import FrameSource
from streamd.types import VideoFrame

FPS = 25


class MemoryFrameSource(FrameSource):
    """`frames` in order at 25 fps timestamps, as fast as they are taken; `live` makes the pipeline
    treat it as a camera (drops when behind) rather than a file (back-pressure). `delivered_at` records
    when each frame left."""

    def __init__(self, frames: list[np.ndarray], live: bool = False) -> None:
        self._frames = frames
        self.is_live = live
        self.delivered_at: list[float] = []

    def frames(self) -> Iterator[VideoFrame]:
        for index, bgr in enumerate(self._frames):
            self.delivered_at.append(time.monotonic())
            yield VideoFrame(bgr=bgr, index=index, pts=index, time_base=Fraction(1, FPS), wallclock=time.time())

    @property
    def time_base(self) -> Fraction:
        return Fraction(1, FPS)

    @property
    def average_rate(self) -> Fraction:
        return Fraction(FPS)
