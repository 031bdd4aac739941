"""The latest anonymized frame of one camera, handed from the pipeline to live viewers.

The pipeline's output thread only stores a reference (`publish` never waits and never copies);
viewers wait for a newer frame and do their own scaling and encoding, so a slow viewer costs the
pipeline nothing and simply sees fewer frames.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class LiveFrame:
    """One anonymized frame as the outputs got it."""

    sequence: int  # 1, 2, ... per feed, across pipeline restarts
    bgr: np.ndarray
    frame_index: int
    wallclock: float  # time.time() when the pipeline handed it to its outputs


def scaled_even(bgr: np.ndarray, max_width: int) -> np.ndarray:
    """`bgr` no wider than `max_width`, keeping aspect, with even width and height (for H.264 4:2:0)."""
    height, width = bgr.shape[:2]
    scale = min(1.0, max_width / width)
    target_w = max(2, int(round(width * scale)) // 2 * 2)
    target_h = max(2, int(round(height * scale)) // 2 * 2)
    if (target_w, target_h) == (width, height):
        return bgr
    return cv2.resize(bgr, (target_w, target_h), interpolation=cv2.INTER_AREA)


class LiveFeed:
    """Latest frame of one camera plus a JPEG of it encoded at most once."""

    def __init__(self, camera_id: str, max_width: int, jpeg_quality: int) -> None:
        self.camera_id = camera_id
        self.max_width = max_width
        self.jpeg_quality = jpeg_quality
        self._condition = threading.Condition()
        self._latest: LiveFrame | None = None
        self._sequence = 0
        self._closed = False
        self._jpeg_lock = threading.Lock()
        self._jpeg: tuple[int, bytes] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def latest(self) -> LiveFrame | None:
        return self._latest

    def publish(self, bgr: np.ndarray, frame_index: int) -> None:
        """Called by the pipeline's output stage with an anonymized frame."""
        with self._condition:
            self._sequence += 1
            self._latest = LiveFrame(self._sequence, bgr, frame_index, time.time())
            self._condition.notify_all()

    def wait_newer(self, sequence: int, timeout_s: float) -> LiveFrame | None:
        """The latest frame if it is newer than `sequence`, waiting up to `timeout_s`; None otherwise or when closed."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while not self._closed and (self._latest is None or self._latest.sequence <= sequence):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)
            return None if self._closed else self._latest

    def jpeg(self, frame: LiveFrame) -> bytes:
        """`frame` scaled to the live width as JPEG; the latest one is cached for every viewer."""
        with self._jpeg_lock:
            if self._jpeg is not None and self._jpeg[0] == frame.sequence:
                return self._jpeg[1]
            scaled = scaled_even(frame.bgr, self.max_width)
            ok, encoded = cv2.imencode(".jpg", scaled, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise RuntimeError(f"camera {self.camera_id}: JPEG encoding of frame {frame.frame_index} failed")
            data = encoded.tobytes()
            self._jpeg = (frame.sequence, data)
            return data

    def close(self) -> None:
        """Wake every waiting viewer; they end their streams."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
