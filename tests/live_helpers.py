"""Helpers for the live view tests: a clip with a real face, a service showing it live, HTTP readers."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from streamd.config import CenterFaceConfig, StreamdConfig
from streamd.detect import build_detector
from streamd.sample_faces import astronaut_bgr

CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS = 640, 360, 10
#: The anonymizer's fill colour (BGR): pure green, which the astronaut photo does not hold.
FILL_BGR = (0, 255, 0)


def face_picture() -> np.ndarray:
    """A 640x360 picture: a textured backdrop with the astronaut's photo (one face) on it."""
    rows, columns = np.mgrid[0:CLIP_HEIGHT, 0:CLIP_WIDTH]
    backdrop = np.stack([(columns // 3) % 200, (rows // 2) % 180, ((rows + columns) // 4) % 160], axis=-1)
    picture = backdrop.astype(np.uint8)
    photo = cv2.resize(astronaut_bgr(), (330, 330), interpolation=cv2.INTER_AREA)
    picture[15:345, 155:485] = photo
    return picture


def write_face_clip(path: Path, seconds: float = 4.0, moving_block: bool = True) -> Path:
    """An H.264 clip of `face_picture()`; a small block moves along the bottom so frames differ."""
    picture = face_picture()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = CLIP_WIDTH, CLIP_HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(CLIP_FPS), "bf": "0"}
        for index in range(int(seconds * CLIP_FPS)):
            frame = picture.copy()
            if moving_block:
                x = (index * 12) % (CLIP_WIDTH - 20)
                frame[340:356, x:x + 20] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode(None))
    return path


def face_box(picture: np.ndarray) -> tuple[int, int, int, int]:
    """The face CenterFace finds in `picture` (the real model), as integer x0, y0, x1, y1."""
    detector = build_detector(CenterFaceConfig(input_width=CLIP_WIDTH, input_height=CLIP_HEIGHT))
    try:
        detections = detector.detect(picture)
    finally:
        detector.close()
    assert len(detections) == 1, f"expected the astronaut's one face, found {len(detections)}"
    x0, y0, x1, y1 = (int(v) for v in detections.xyxy[0])
    return x0, y0, x1, y1


def face_core_mean(bgr: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Mean BGR of the middle half of the face box (scaled to `bgr`'s size)."""
    scale_x, scale_y = bgr.shape[1] / CLIP_WIDTH, bgr.shape[0] / CLIP_HEIGHT
    x0, y0, x1, y1 = box
    cx0, cx1 = int((x0 + (x1 - x0) / 4) * scale_x), int((x1 - (x1 - x0) / 4) * scale_x)
    cy0, cy1 = int((y0 + (y1 - y0) / 4) * scale_y), int((y1 - (y1 - y0) / 4) * scale_y)
    return bgr[cy0:cy1, cx0:cx1].reshape(-1, 3).mean(axis=0)


def is_fill(mean_bgr: np.ndarray, tolerance: float = 40.0) -> bool:
    return bool(np.abs(mean_bgr - np.array(FILL_BGR)).max() < tolerance)


def live_config(clip: Path, live: dict[str, Any] | None = None, health: dict[str, Any] | None = None,
                camera_id: str = "lobby") -> StreamdConfig:
    """One camera looping `clip` in real time, masked with a solid fill, shown live; metrics on a free port."""
    camera = {
        "id": camera_id,
        "source": {"type": "file", "path": str(clip), "loop": True, "realtime": True},
        "detector": {"type": "centerface", "input_width": CLIP_WIDTH, "input_height": CLIP_HEIGHT,
                     "profile": "fast", "intra_op_threads": 1},
        "anonymizer": {"method": "solid", "solid_bgr": list(FILL_BGR), "feather": 0.0},
        "outputs": {"live": live or {}},
    }
    return StreamdConfig.model_validate({
        "cameras": [camera], "metrics": {"listen": "127.0.0.1:0"}, "health": health or {},
        "service": {"restart_initial_s": 0.2, "restart_max_s": 1.0, "status_interval_s": 0.2},
    })


def http_get(url: str, timeout_s: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@dataclass(frozen=True)
class MjpegPart:
    headers: dict[str, str]
    bgr: np.ndarray


def read_mjpeg(url: str, parts: int, timeout_s: float = 20.0) -> tuple[str, list[MjpegPart]]:
    """(content type, the first `parts` parts) of an MJPEG stream, each JPEG decoded."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        content_type = response.headers["Content-Type"]
        boundary = content_type.split("boundary=", 1)[1].encode()
        received: list[MjpegPart] = []
        while len(received) < parts:
            line = response.readline()
            assert line, "MJPEG stream ended early"
            if line.strip() != b"--" + boundary:
                continue
            headers: dict[str, str] = {}
            while (header := response.readline().strip()):
                name, _, value = header.decode("ascii").partition(":")
                headers[name.strip().lower()] = value.strip()
            jpeg = response.read(int(headers["content-length"]))
            bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert bgr is not None, "a part is not a JPEG"
            received.append(MjpegPart(headers, bgr))
        return content_type, received
