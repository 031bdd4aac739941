"""The decoded yuv420p planes of a frame, kept for sealing original faces.

A camera that seals its original faces codes them from the decoded source's own planes rather than
from the BGR pixels the pipeline works on: converting BGR back to YUV recovers the decoded luma only to
about 47 dB. The planes are views into the decoder's picture (no copy), turned upright the same way as
the BGR pixels (`numpy.rot90` and `fliplr` views: with an even width and height every 2x2 chroma block
stays a block). Frames whose planes cannot serve are kept without them, and the sealer converts their
BGR pixels instead: full-range (`yuvj420p`) or other pixel formats, and odd widths or heights. Which
path a stream takes is logged once, and again whenever it changes.
"""

from __future__ import annotations

import logging

import av
import numpy as np

from streamd.sources.orientation import Orientation
from streamd.types import Yuv420Planes

logger = logging.getLogger(__name__)

PLANES_FORMAT = "yuv420p"
_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full-range samples


def _plane(frame: av.VideoFrame, index: int, width: int, height: int) -> np.ndarray:
    plane = frame.planes[index]
    return np.frombuffer(plane, dtype=np.uint8).reshape(height, plane.line_size)[:, :width]


def _upright(plane: np.ndarray, orientation: Orientation) -> np.ndarray:
    if orientation.clockwise:
        plane = np.rot90(plane, -orientation.clockwise // 90)
    if orientation.mirror:
        plane = np.fliplr(plane)
    return plane


def why_not_planes(frame: av.VideoFrame) -> str | None:
    """Why `frame`'s planes cannot be sealed as they are; None when they can."""
    if frame.format.name != PLANES_FORMAT:
        return f"decoded as {frame.format.name}, not {PLANES_FORMAT}"
    if frame.color_range == _JPEG_RANGE:
        return "full-range yuv420p"
    if frame.width % 2 or frame.height % 2:
        return f"odd frame size {frame.width}x{frame.height}"
    return None


def upright_planes(frame: av.VideoFrame, orientation: Orientation) -> Yuv420Planes:
    """`frame`'s yuv420p planes (see `why_not_planes`) as views, turned upright with `orientation`."""
    width, height = frame.width, frame.height
    planes = (_plane(frame, 0, width, height), _plane(frame, 1, width // 2, height // 2),
              _plane(frame, 2, width // 2, height // 2))
    return Yuv420Planes(*(_upright(plane, orientation) for plane in planes))


class PlaneKeeper:
    """Keeps the planes of each decoded frame of one stream when they can serve; logs the path taken."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._last_reason: str | None = ""

    def planes_of(self, frame: av.VideoFrame, orientation: Orientation) -> Yuv420Planes | None:
        reason = why_not_planes(frame)
        if reason != self._last_reason:
            if reason is None:
                logger.info("%s: original faces are sealed from the decoded %s planes", self.name, PLANES_FORMAT)
            else:
                logger.warning("%s: frames %s: original faces are sealed from BGR pixels converted back to "
                               "YUV (less exact)", self.name, reason)
            self._last_reason = reason
        return None if reason is not None else upright_planes(frame, orientation)
