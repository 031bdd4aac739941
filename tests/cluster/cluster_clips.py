"""Test clips with short key-frame intervals (so they can be cut), built from the demo clip's faces."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from streamd.config import CameraConfig, FileSourceConfig
from streamd.demo_clip import write_keyframed_clip

WIDTH, HEIGHT, FPS = 640, 360, 25


def write_gop_clip(path: Path, frames: int, gop: int = 10, fps: int = FPS,
                   size_wh: tuple[int, int] = (WIDTH, HEIGHT)) -> list[np.ndarray]:
    """An H.264 clip with a key frame every `gop` frames (B-frames on); the truth boxes of each frame."""
    return write_keyframed_clip(path, frames, size_wh, fps, gop)


def clip_camera(path: Path, method: str = "blur") -> CameraConfig:
    return CameraConfig.model_validate({
        "id": "archive", "source": FileSourceConfig(path=path).model_dump(),
        "detector": {"type": "centerface", "input_width": WIDTH, "input_height": HEIGHT},
        "anonymizer": {"method": method},
    })


def frame_times(path: Path) -> list[tuple[int, float]]:
    """(pts, seconds) of every decoded frame of a video."""
    with av.open(str(path)) as container:
        return [(frame.pts, float(frame.time)) for frame in container.decode(video=0)]


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def dark_share_of_face_centres(bgr: np.ndarray, boxes: np.ndarray) -> list[float]:
    """For each truth box, the share of near-black pixels in its central half (solid method: ~1)."""
    shares = []
    for x0, y0, x1, y1 in boxes:
        w, h = x1 - x0, y1 - y0
        cx0, cy0 = int(max(0, x0 + w / 4)), int(max(0, y0 + h / 4))
        cx1, cy1 = int(min(bgr.shape[1], x1 - w / 4)), int(min(bgr.shape[0], y1 - h / 4))
        centre = bgr[cy0:cy1, cx0:cx1]
        if centre.size == 0:
            continue
        shares.append(float((centre.max(axis=2) < 40).mean()))
    return shares


def fleet_config_text(clip: Path, camera_ids: list[str], metrics_port: int, fps: int = 10) -> str:
    """A config whose cameras loop `clip` in real time, mask faces solid black and publish on any free port."""
    cameras = "".join(f"""
  - id: {camera_id}
    source: {{type: file, path: "{clip}", loop: true, realtime: true}}
    detector: {{type: centerface, input_width: {WIDTH}, input_height: {HEIGHT}, intra_op_threads: 1}}
    anonymizer: {{method: solid}}
    outputs: {{zmq: {{endpoint: "tcp://127.0.0.1:*"}}}}
    resources: {{num_cpus: 1}}
""" for camera_id in camera_ids)
    return f"""metrics: {{listen: "127.0.0.1:{metrics_port}"}}
service: {{status_interval_s: 0.5, restart_initial_s: 0.2, restart_max_s: 1.0}}
cameras:{cameras}"""
