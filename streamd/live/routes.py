"""URLs of the live view on the service's HTTP server.

    /                          the page (camera table and players)
    /live/cameras.json         each camera's state, health, fps, faces, drops and live URLs
    /live/<camera>/mjpeg       MJPEG (multipart/x-mixed-replace)
    /live/<camera>/snapshot.jpg  the latest frame
    /live/<camera>/index.m3u8  HLS playlist; /live/<camera>/segN.ts its segments
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from streamd.live import mjpeg
from streamd.live.hls import PLAYLIST_CONTENT_TYPE, PLAYLIST_NAME, SEGMENT_CONTENT_TYPE
from streamd.live.page import static_file
from streamd.live.views import LiveViews

logger = logging.getLogger(__name__)

#: How long a playlist request waits for the first segment of an encoder it just started.
PLAYLIST_WAIT_S = 8.0

CameraRows = Callable[[], list[dict[str, Any]]]


#: A viewer that leaves (closes the page, a player that seeks) while its answer is being written.
VIEWER_GONE = (BrokenPipeError, ConnectionResetError, TimeoutError)


def answer(handler: BaseHTTPRequestHandler, code: int, content_type: str, body: bytes) -> None:
    try:
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-cache, no-store")
        handler.end_headers()
        handler.wfile.write(body)
    except VIEWER_GONE:
        logger.debug("viewer left before the answer to %s was written", handler.path)


class LiveRoutes:
    """Answers the live view's URLs; `handle` returns False for a path that is not one of them."""

    def __init__(self, views: LiveViews, camera_rows: CameraRows) -> None:
        self.views = views
        self.camera_rows = camera_rows

    def handle(self, handler: BaseHTTPRequestHandler, path: str) -> bool:
        shipped = static_file(path)
        if shipped is not None:
            answer(handler, 200, shipped.content_type, shipped.body)
            return True
        if path == "/live/cameras.json":
            answer(handler, 200, "application/json", json.dumps(self._cameras()).encode())
            return True
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "live" or not parts[2]:
            return False
        camera_id, name = parts[2], parts[3]
        config = self.views.config(camera_id)
        if config is None:
            answer(handler, 404, "text/plain", f"no live view for camera {camera_id!r}\n".encode())
            return True
        if name == "mjpeg" and config.mjpeg:
            self._mjpeg(handler, camera_id, config.mjpeg_fps)
        elif name == "snapshot.jpg":
            self._snapshot(handler, camera_id)
        elif name == PLAYLIST_NAME and config.hls:
            self._playlist(handler, camera_id)
        elif name.endswith(".ts") and config.hls:
            self._segment(handler, camera_id, name)
        else:
            answer(handler, 404, "text/plain", f"camera {camera_id}: no {name} here\n".encode())
        return True

    def _cameras(self) -> list[dict[str, Any]]:
        rows = []
        for row in self.camera_rows():
            config = self.views.config(row["id"])
            base = f"/live/{row['id']}/"
            rows.append({**row,
                         "mjpeg": base + "mjpeg" if config is not None and config.mjpeg else None,
                         "hls": base + PLAYLIST_NAME if config is not None and config.hls else None})
        return rows

    def _mjpeg(self, handler: BaseHTTPRequestHandler, camera_id: str, max_fps: float) -> None:
        feed = self.views.feed(camera_id)
        if feed is None:
            answer(handler, 404, "text/plain", b"no live view\n")
            return
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", mjpeg.CONTENT_TYPE)
            handler.send_header("Cache-Control", "no-cache, no-store")
            handler.send_header("Connection", "close")
            handler.end_headers()
            for chunk in mjpeg.mjpeg_parts(feed, max_fps, lambda: self.views.closed):
                handler.wfile.write(chunk)
                handler.wfile.flush()
        except VIEWER_GONE:
            logger.debug("MJPEG viewer of camera %s left", camera_id)

    def _snapshot(self, handler: BaseHTTPRequestHandler, camera_id: str) -> None:
        feed = self.views.feed(camera_id)
        frame = feed.latest if feed is not None else None
        if feed is None or frame is None:
            answer(handler, 503, "text/plain", f"camera {camera_id} has put out no frame yet\n".encode())
            return
        answer(handler, 200, "image/jpeg", feed.jpeg(frame))

    def _playlist(self, handler: BaseHTTPRequestHandler, camera_id: str) -> None:
        hls = self.views.hls(camera_id)
        body = hls.playlist(PLAYLIST_WAIT_S) if hls is not None else None
        if body is None:
            answer(handler, 503, "text/plain", f"camera {camera_id}: no HLS segment yet (is it up?)\n".encode())
            return
        answer(handler, 200, PLAYLIST_CONTENT_TYPE, body)

    def _segment(self, handler: BaseHTTPRequestHandler, camera_id: str, name: str) -> None:
        hls = self.views.hls(camera_id)
        body = hls.segment(name) if hls is not None else None
        if body is None:
            answer(handler, 404, "text/plain", f"camera {camera_id}: no segment {name}\n".encode())
            return
        answer(handler, 200, SEGMENT_CONTENT_TYPE, body)
