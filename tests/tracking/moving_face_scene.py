"""A real face photo moving across a textured background, with its true face box per frame."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from streamd.detect.base import FaceDetector
from streamd.sample_faces import astronaut_bgr
from streamd.types import Detections

# The astronaut photo's face, and the head-and-shoulders crop pasted into the scene around it.
CROP_XYXY = (150, 20, 300, 220)
FACE_XYXY_IN_CROP = np.array([30, 40, 120, 160], np.float64)
# Landmark positions as shares of the face box (ArcFace-like layout).
KPS5_IN_BOX = np.array([[0.34, 0.46], [0.66, 0.46], [0.5, 0.64], [0.37, 0.82], [0.63, 0.82]])


@functools.lru_cache(maxsize=4)
def _background(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR), (5, 5), 0)


def textured_background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smoothed colour noise: texture everywhere, as in a real scene."""
    return _background(width, height, seed).copy()


@dataclass(frozen=True)
class MovingFace:
    """Frames of the face photo moving at constant velocity; `present(i)` False removes it from frame i."""

    width: int = 640
    height: int = 360
    start_xy: tuple[float, float] = (40.0, 60.0)
    velocity_xy: tuple[float, float] = (4.0, 1.0)

    def crop_xy(self, index: int) -> tuple[int, int]:
        return (round(self.start_xy[0] + self.velocity_xy[0] * index),
                round(self.start_xy[1] + self.velocity_xy[1] * index))

    def face_xyxy(self, index: int) -> np.ndarray:
        x, y = self.crop_xy(index)
        return FACE_XYXY_IN_CROP + np.array([x, y, x, y], np.float64)

    def frame(self, index: int, present: bool = True, canvas: np.ndarray | None = None) -> np.ndarray:
        """Frame `index`: the face pasted on the background (or on `canvas`, in place)."""
        if canvas is None:
            canvas = textured_background(self.width, self.height)
        if present:
            x0, y0, x1, y1 = CROP_XYXY
            crop = astronaut_bgr()[y0:y1, x0:x1]
            x, y = self.crop_xy(index)
            canvas[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
        return canvas


def detections_of(*boxes: np.ndarray, score: float = 0.9) -> Detections:
    """Detections of the given face boxes, with landmarks placed inside them."""
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    kps5 = xyxy[:, None, :2] + KPS5_IN_BOX[None].astype(np.float32) * wh[:, None, :]
    return Detections(xyxy=xyxy, kps5=kps5.astype(np.float32), scores=np.full(len(xyxy), score, np.float32))


def covered_share(face_xyxy: np.ndarray, box_xyxy: np.ndarray) -> float:
    """Share of the face box's area inside the reported box."""
    top_left = np.maximum(face_xyxy[:2], box_xyxy[:2])
    bottom_right = np.minimum(face_xyxy[2:], box_xyxy[2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None))
    return float(inter / np.prod(face_xyxy[2:] - face_xyxy[:2]))


class ScriptedDetector(FaceDetector):
    """Finds the scene's true face box on the frames of `seen_frames`, nothing on the others."""

    def __init__(self, scene: MovingFace, seen_frames: set[int]) -> None:
        self.scene = scene
        self.seen_frames = seen_frames
        self.calls = 0

    def detect(self, bgr: np.ndarray) -> Detections:
        index = self.calls
        self.calls += 1
        if index not in self.seen_frames:
            return Detections.empty()
        return detections_of(self.scene.face_xyxy(index))
