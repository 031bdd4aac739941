"""LiveFeed and MJPEG parts without a server: waiting, caching, scaling, closing."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from streamd.live.feed import LiveFeed, scaled_even
from streamd.live.mjpeg import BOUNDARY, mjpeg_parts


def picture(value: int, width: int = 64, height: int = 48) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def test_wait_newer_returns_only_newer_frames() -> None:
    feed = LiveFeed("cam", max_width=960, jpeg_quality=80)
    assert feed.wait_newer(0, timeout_s=0.05) is None
    feed.publish(picture(10), frame_index=7)
    first = feed.wait_newer(0, timeout_s=1)
    assert first is not None and first.frame_index == 7 and first.sequence == 1
    assert feed.wait_newer(first.sequence, timeout_s=0.05) is None
    threading.Timer(0.05, feed.publish, args=(picture(20), 8)).start()
    second = feed.wait_newer(first.sequence, timeout_s=5)
    assert second is not None and second.frame_index == 8 and int(second.bgr[0, 0, 0]) == 20


def test_jpeg_is_encoded_once_per_frame_and_decodes_to_it() -> None:
    feed = LiveFeed("cam", max_width=960, jpeg_quality=90)
    feed.publish(picture(100), frame_index=0)
    frame = feed.latest
    assert frame is not None
    data = feed.jpeg(frame)
    assert feed.jpeg(frame) is data
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (48, 64, 3) and abs(int(decoded.mean()) - 100) <= 2


def test_scaled_even_keeps_aspect_and_even_sizes() -> None:
    assert scaled_even(picture(0, 1280, 720), 960).shape == (540, 960, 3)
    assert scaled_even(picture(0, 641, 361), 960).shape == (360, 640, 3)
    small = picture(0, 320, 240)
    assert scaled_even(small, 960) is small


def test_close_wakes_a_waiting_viewer_and_ends_its_stream() -> None:
    feed = LiveFeed("cam", max_width=960, jpeg_quality=80)
    feed.publish(picture(50), frame_index=0)
    parts = mjpeg_parts(feed, max_fps=50, should_stop=lambda: False)
    first = next(parts)
    assert first.startswith(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n".encode())
    assert b"X-Frame-Index: 0\r\n" in first and first.endswith(b"\r\n")
    threading.Timer(0.1, feed.close).start()
    assert list(parts) == []
    assert feed.wait_newer(0, timeout_s=1) is None


def test_mjpeg_sends_each_frame_once() -> None:
    feed = LiveFeed("cam", max_width=960, jpeg_quality=80)
    feed.publish(picture(1), frame_index=0)
    stop = threading.Event()
    parts = mjpeg_parts(feed, max_fps=50, should_stop=stop.is_set)
    assert b"X-Frame-Index: 0" in next(parts)
    feed.publish(picture(2), frame_index=1)
    assert b"X-Frame-Index: 1" in next(parts)
    stop.set()
    assert list(parts) == [], "no frame repeated, and the stream ends when asked"
