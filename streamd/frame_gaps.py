"""Frames a subscriber never received, found from `frame_index` gaps within each stream epoch.

A publisher numbers the frames of one stream epoch without holes, so a jump in `frame_index` at a
subscriber is exactly the number of frames lost on the way (dropped by the publisher, by ZeroMQ for a
slow subscriber, or by the subscriber's own receive queue). A new epoch restarts the numbering.
"""

from __future__ import annotations


class FrameGapCounter:
    """Missing frame indices per camera, within its current stream epoch."""

    def __init__(self) -> None:
        self._last_index: dict[str, tuple[str, int]] = {}

    def update(self, camera: str, stream_epoch: str, frame_index: int) -> tuple[int, bool]:
        """(frames missing before this one, whether this frame starts a new epoch)."""
        previous = self._last_index.get(camera)
        self._last_index[camera] = (stream_epoch, frame_index)
        if previous is None or previous[0] != stream_epoch:
            return 0, True
        return max(0, frame_index - previous[1] - 1), False
