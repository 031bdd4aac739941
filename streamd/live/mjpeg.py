"""MJPEG over HTTP (`multipart/x-mixed-replace`): what an <img> tag, VLC, ffplay and most NVRs play.

Each part is one JPEG of the camera's latest anonymized frame, at most `mjpeg_fps` a second per
viewer; a viewer that reads slowly gets the newest frame when it is ready again, never a backlog.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from streamd.live.feed import LiveFeed

BOUNDARY = "streamd-frame"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
#: How long a viewer waits for a frame before checking whether it should end.
WAIT_SLICE_S = 0.5


def part(jpeg: bytes, frame_index: int, wallclock: float) -> bytes:
    """One multipart part: headers (size, frame index, time the pipeline put the frame out) and the JPEG."""
    header = (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
        f"X-Frame-Index: {frame_index}\r\nX-Timestamp: {wallclock:.6f}\r\n\r\n"
    )
    return header.encode("ascii") + jpeg + b"\r\n"


def mjpeg_parts(feed: LiveFeed, max_fps: float, should_stop: Callable[[], bool]) -> Iterator[bytes]:
    """Parts for one viewer until the feed closes or `should_stop()`; the caller writes them out."""
    interval_s = 1.0 / max_fps
    sequence = 0
    next_at = 0.0
    while not should_stop():
        wait_s = next_at - time.monotonic()
        if wait_s > 0:
            time.sleep(min(wait_s, WAIT_SLICE_S))
            continue
        frame = feed.wait_newer(sequence, WAIT_SLICE_S)
        if feed.closed:
            return
        if frame is None:
            continue
        sequence = frame.sequence
        next_at = time.monotonic() + interval_s
        yield part(feed.jpeg(frame), frame.frame_index, frame.wallclock)
