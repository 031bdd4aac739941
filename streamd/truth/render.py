"""Drawing one benchmark frame: textured backdrop, face sprites (scaled, tilted, motion-blurred),
opaque poles in front, and low light with sensor noise.

Every drawing step returns the exact geometry it drew, so ground truth follows from it: a face's
box is the axis-aligned box of its (tilted) face box in the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from streamd.demo_clip import FaceSprite


def textured_background(resolution_wh: tuple[int, int], seed: int) -> np.ndarray:
    """A deterministic busy backdrop: colour noise at several scales, blocks and stripes."""
    width, height = resolution_wh
    rng = np.random.default_rng(seed)
    frame = np.zeros((height, width, 3), np.float32)
    base = rng.uniform(70, 170, 3).astype(np.float32)
    frame += base
    for cell, amplitude in ((160, 45.0), (40, 25.0), (8, 12.0)):
        # mostly brightness, a little colour: walls and streets rather than confetti
        grey = rng.standard_normal((max(2, height // cell), max(2, width // cell), 1)).astype(np.float32)
        tint = rng.standard_normal((max(2, height // cell), max(2, width // cell), 3)).astype(np.float32)
        small = 0.85 * grey + 0.3 * tint
        frame += amplitude * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(14):  # blocks: windows, doors, posters
        w, h = int(rng.uniform(40, 260)), int(rng.uniform(30, 200))
        x, y = int(rng.uniform(0, width - w)), int(rng.uniform(0, height - h))
        colour = rng.uniform(20, 235, 3)
        frame[y : y + h, x : x + w] = 0.6 * frame[y : y + h, x : x + w] + 0.4 * colour
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    angle = rng.uniform(0, math.pi)
    stripes = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / rng.uniform(12, 40))
    frame += 10.0 * stripes[:, :, None]
    return np.clip(frame, 0, 255).astype(np.uint8)


def _sprite_transform(sprite: FaceSprite, face_width_px: float, center_xy: tuple[float, float],
                      angle_deg: float) -> np.ndarray:
    """2x3 affine from sprite pixels to frame pixels: face box centre to `center_xy`, face box width to
    `face_width_px`, turned `angle_deg` (positive: counter-clockwise as seen)."""
    fx0, fy0, fx1, fy1 = (float(v) for v in sprite.face_xyxy)
    scale = face_width_px / (fx1 - fx0)
    rotation = cv2.getRotationMatrix2D(((fx0 + fx1) / 2, (fy0 + fy1) / 2), angle_deg, scale)
    rotation[0, 2] += center_xy[0] - (fx0 + fx1) / 2
    rotation[1, 2] += center_xy[1] - (fy0 + fy1) / 2
    return rotation


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def face_box_in_frame(sprite: FaceSprite, face_width_px: float, center_xy: tuple[float, float],
                      angle_deg: float) -> np.ndarray:
    """xyxy of the axis-aligned box around the sprite's face box as drawn."""
    matrix = _sprite_transform(sprite, face_width_px, center_xy, angle_deg)
    x0, y0, x1, y1 = (float(v) for v in sprite.face_xyxy)
    corners = _apply(matrix, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))
    return np.array([*corners.min(axis=0), *corners.max(axis=0)], np.float32)


def motion_kernel(vector_xy: tuple[float, float]) -> np.ndarray | None:
    """A normalised line kernel along `vector_xy` (pixels moved while the shutter was open)."""
    length = math.hypot(*vector_xy)
    if length < 1.5:
        return None
    size = int(math.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = vector_xy[0] / 2, vector_xy[1] / 2
    cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1,
             cv2.LINE_AA)
    return kernel / kernel.sum()


def draw_sprite(frame: np.ndarray, sprite: FaceSprite, face_width_px: float, center_xy: tuple[float, float],
                angle_deg: float = 0.0, blur_xy: tuple[float, float] = (0.0, 0.0),
                owner: np.ndarray | None = None, label: int = 0) -> np.ndarray:
    """Composite a sprite into `frame` in place; returns the face's axis-aligned xyxy box.

    With `owner` (an int map of the frame), pixels where the sprite is mostly opaque get `label`.
    """
    matrix = _sprite_transform(sprite, face_width_px, center_xy, angle_deg)
    size = sprite.bgr.shape[0]
    corners = _apply(matrix, np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64))
    pad = int(math.ceil(math.hypot(*blur_xy))) + 2
    height, width = frame.shape[:2]
    rx0 = max(int(math.floor(corners[:, 0].min())) - pad, 0)
    ry0 = max(int(math.floor(corners[:, 1].min())) - pad, 0)
    rx1 = min(int(math.ceil(corners[:, 0].max())) + pad, width)
    ry1 = min(int(math.ceil(corners[:, 1].max())) + pad, height)
    box = face_box_in_frame(sprite, face_width_px, center_xy, angle_deg)
    if rx1 <= rx0 or ry1 <= ry0:
        return box
    local = matrix.copy()
    local[0, 2] -= rx0
    local[1, 2] -= ry0
    roi_wh = (rx1 - rx0, ry1 - ry0)
    interpolation = cv2.INTER_AREA if face_width_px < (sprite.face_xyxy[2] - sprite.face_xyxy[0]) else cv2.INTER_LINEAR
    patch = cv2.warpAffine(sprite.bgr, local, roi_wh, flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(sprite.alpha, local, roi_wh, flags=cv2.INTER_LINEAR, borderValue=0)
    patch = patch.astype(np.float32) * alpha[:, :, None]
    kernel = motion_kernel(blur_xy)
    if kernel is not None:
        patch = cv2.filter2D(patch, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        alpha = cv2.filter2D(alpha, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    region = frame[ry0:ry1, rx0:rx1].astype(np.float32)
    frame[ry0:ry1, rx0:rx1] = np.clip(patch + region * (1.0 - alpha[:, :, None]), 0, 255).astype(np.uint8)
    if owner is not None:
        owner[ry0:ry1, rx0:rx1][alpha > 0.5] = label
    return box


def draw_poles(frame: np.ndarray, poles: Sequence[tuple[float, float]], colour_bgr: tuple[int, int, int],
               owner: np.ndarray | None = None, label: int = 0) -> None:
    """Opaque full-height poles, each (left x, width), drawn in front of everything; with a little shading."""
    height, width = frame.shape[:2]
    for left, pole_width in poles:
        x0, x1 = max(int(round(left)), 0), min(int(round(left + pole_width)), width)
        if x1 <= x0:
            continue
        shade = 0.75 + 0.25 * np.sin(np.linspace(0, math.pi, x1 - x0, dtype=np.float32))
        frame[:, x0:x1] = (np.array(colour_bgr, np.float32)[None, :] * shade[:, None])[None, :, :].astype(np.uint8)
        if owner is not None:
            owner[:, x0:x1] = label


def low_light(frame: np.ndarray, gain: float, noise_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Scale brightness by `gain` and add Gaussian sensor noise (grey-level sigma), in a new array."""
    dark = frame.astype(np.float32) * gain
    if noise_sigma > 0:
        dark += rng.standard_normal(frame.shape, dtype=np.float32) * noise_sigma
    return np.clip(dark, 0, 255).astype(np.uint8)
