"""Training samples for the robust CenterFace (export/finetune_centerface.py).

Two kinds of square crops:
- Composites: face sprites of the benchmark's `tune` split (streamd/truth/faces.py: scikit-image's
  astronaut and the six faces of insightface's t1.jpg; never a held-out face) drawn 10-170 px wide,
  tilted, motion-blurred, darkened with sensor noise, grey, JPEG-compressed or crossed by a bar, over
  textured backdrops and face-free natural photos, with exact centres, boxes and five landmarks.
- Natural photos: crops of photos at random scales, for distillation: the original CenterFace's
  outputs on the clean crop are the targets of the trained model on the same crop, clean or degraded,
  so it keeps what it knew (large faces, no faces on text, stars or gravel).

The natural photos are split in two halves by a hash of their names: one trains, the other only
measures false detections (export/centerface_robust_checks.py, tests/detect/test_centerface_robust.py).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamd.demo_clip import FaceSprite
from streamd.truth.faces import load_split_faces
from streamd.truth.render import _apply, _sprite_transform, draw_sprite, low_light, textured_background

#: scikit-image photos used as natural images (no download needed).
SKIMAGE_PHOTOS = ("coffee", "chelsea", "rocket", "astronaut", "camera", "hubble_deep_field", "immunohistochemistry",
                  "logo", "brick", "grass", "gravel", "retina", "cat", "text", "page", "moon", "coins", "clock",
                  "colorwheel", "horse")
#: OpenCV's sample images (Debian package opencv-doc); its two face photos are held-out benchmark faces.
OPENCV_SAMPLES_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
HELD_OUT_PHOTOS = frozenset({"messi5.jpg", "face_swapped.jpg"})
MIN_PHOTO_SIDE = 200
#: Landmark order is left eye, right eye, nose, left and right mouth corner: a mirror swaps the pairs.
MIRRORED_LANDMARKS = [1, 0, 2, 4, 3]
FACE_WIDTH_RANGE_PX = (10.0, 170.0)
MAX_FACES_PER_CROP = 4
GAMMA_LIFT = 0.5


@dataclass(frozen=True)
class FaceTruth:
    """One drawn face: axis-aligned xyxy box and (5, 2) landmarks, in crop pixels."""

    box: np.ndarray
    landmarks: np.ndarray


def skimage_photos() -> dict[str, np.ndarray]:
    import skimage.data

    photos = {}
    for name in SKIMAGE_PHOTOS:
        image = getattr(skimage.data, name)()
        if isinstance(image, tuple):
            image = image[0]
        if image.dtype != np.uint8:
            image = (image * 255 if image.max() <= 1 else image).astype(np.uint8)
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        photos[f"skimage:{name}"] = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2BGR)
    return photos


def folder_photos(folder: Path) -> dict[str, np.ndarray]:
    """Every readable .jpg/.png of a folder at least MIN_PHOTO_SIDE on each side, held-out faces left out."""
    photos = {}
    for path in sorted([*folder.glob("*.jpg"), *folder.glob("*.png")]):
        if path.name in HELD_OUT_PHOTOS:
            continue
        image = cv2.imread(str(path))
        if image is not None and min(image.shape[:2]) >= MIN_PHOTO_SIDE:
            photos[f"{folder.name}:{path.name}"] = image
    return photos


def in_training_half(name: str) -> bool:
    """Whether a natural photo trains (else it only checks): by a hash of its name, so a photo's half
    does not depend on which other photos are present; the astronaut (a tune face) always trains."""
    return name == "skimage:astronaut" or hashlib.sha256(name.encode()).digest()[0] % 2 == 0


def natural_photo_halves(extra_folders: list[Path]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(training half, checking half) of scikit-image's photos and those of `extra_folders`."""
    photos = skimage_photos()
    for folder in extra_folders:
        photos.update(folder_photos(folder))
    training = {name: image for name, image in sorted(photos.items()) if in_training_half(name)}
    checking = {name: image for name, image in sorted(photos.items()) if not in_training_half(name)}
    return training, checking


def degrade_photometric(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey, dark with sensor noise (sometimes gamma-lifted as the detector's low-light pass does) and
    JPEG loss, each at random."""
    if rng.random() < 0.25:
        frame = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < 0.35:
        frame = low_light(frame, float(rng.uniform(0.12, 0.5)), float(rng.uniform(1, 8)), rng)
        if rng.random() < 0.5:
            lut = (np.linspace(0, 1, 256) ** GAMMA_LIFT * 255).astype(np.uint8)
            frame = cv2.LUT(frame, lut)
    if rng.random() < 0.4:
        quality = int(rng.integers(25, 90))
        frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
    return frame


def _sprite_landmarks(sprites: list[FaceSprite], teacher) -> list[np.ndarray]:
    """Five landmarks of each sprite's face in sprite pixels, from the original detector."""
    landmarks = []
    for sprite in sprites:
        found = teacher.detect_native([sprite.bgr])[0]
        centre = (sprite.face_xyxy[:2] + sprite.face_xyxy[2:]) / 2
        centres = (found.xyxy[:, :2] + found.xyxy[:, 2:]) / 2
        landmarks.append(found.kps5[int(np.argmin(((centres - centre) ** 2).sum(axis=1)))].astype(np.float64))
    return landmarks


def _mirrored(sprite: FaceSprite, landmarks: np.ndarray) -> tuple[FaceSprite, np.ndarray]:
    width = sprite.bgr.shape[1]
    x0, y0, x1, y1 = sprite.face_xyxy
    mirrored = FaceSprite(bgr=np.ascontiguousarray(sprite.bgr[:, ::-1]), alpha=np.ascontiguousarray(sprite.alpha[:, ::-1]),
                          face_xyxy=np.array([width - x1, y0, width - x0, y1], np.float32))
    points = landmarks.copy()
    points[:, 0] = width - points[:, 0]
    return mirrored, points[MIRRORED_LANDMARKS]


class CompositeSampler:
    """Crops with tune-split faces drawn hard, and their truth."""

    def __init__(self, teacher, backdrops: list[np.ndarray], crop_px: int, seed: int) -> None:
        sprites = [face.sprite for face in load_split_faces("tune")]
        landmarks = _sprite_landmarks(sprites, teacher)
        self.sprites = list(zip(sprites, landmarks)) + [_mirrored(s, k) for s, k in zip(sprites, landmarks)]
        self.rng = np.random.default_rng(seed)
        self.crop_px = crop_px
        self.backdrops = [textured_background((512, 512), int(self.rng.integers(1 << 30))) for _ in range(40)]
        self.backdrops += [cv2.resize(image, (512, 512), interpolation=cv2.INTER_AREA) for image in backdrops]

    def sample(self) -> tuple[np.ndarray, list[FaceTruth]]:
        rng, size = self.rng, self.crop_px
        backdrop = self.backdrops[rng.integers(len(self.backdrops))]
        x0, y0 = rng.integers(0, backdrop.shape[1] - size + 1), rng.integers(0, backdrop.shape[0] - size + 1)
        frame = backdrop[y0:y0 + size, x0:x0 + size].copy()
        if rng.random() < 0.5:
            frame = np.ascontiguousarray(frame[:, ::-1])
        clean = rng.random() < 0.25
        faces: list[FaceTruth] = []
        for _ in range(int(rng.integers(0, MAX_FACES_PER_CROP + 1))):
            faces.extend(self._draw_face(frame, faces, clean))
        if not clean:
            if rng.random() < 0.2:
                self._draw_bar(frame)
            frame = degrade_photometric(frame, rng)
        return frame, faces

    def _draw_face(self, frame: np.ndarray, faces: list[FaceTruth], clean: bool) -> list[FaceTruth]:
        rng, size = self.rng, self.crop_px
        sprite, landmarks = self.sprites[rng.integers(len(self.sprites))]
        width = float(math.exp(rng.uniform(*np.log(FACE_WIDTH_RANGE_PX))))
        cx, cy = rng.uniform(0.1 * size, 0.9 * size), rng.uniform(0.1 * size, 0.9 * size)
        for other in faces:  # sprites must not cover each other's faces
            other_cx, other_cy = (other.box[:2] + other.box[2:]) / 2
            if math.hypot(cx - other_cx, cy - other_cy) < 1.1 * (width + other.box[2] - other.box[0]):
                return []
        angle = 0.0 if rng.random() < 0.4 else float(rng.uniform(-40, 40))
        blur = (0.0, 0.0)
        if not clean and rng.random() < 0.45:
            length = rng.uniform(0.1, 0.7) * width + rng.uniform(0, 4)
            direction = rng.normal(0, 0.35) + (0.0 if rng.random() < 0.7 else rng.uniform(0, math.pi))
            blur = (length * math.cos(direction), length * math.sin(direction))
        box = draw_sprite(frame, sprite, width, (cx, cy), angle, blur)
        points = _apply(_sprite_transform(sprite, width, (cx, cy), angle), landmarks)
        return [FaceTruth(box=np.asarray(box, np.float64), landmarks=points)]

    def _draw_bar(self, frame: np.ndarray) -> None:
        rng, size = self.rng, self.crop_px
        thickness = int(rng.integers(3, 20))
        start = int(rng.integers(0, size - thickness))
        colour = rng.integers(0, 255, 3)
        if rng.random() < 0.5:
            frame[:, start:start + thickness] = colour
        else:
            frame[start:start + thickness, :] = colour


class NaturalSampler:
    """(clean crop, crop the trained model sees) pairs from natural photos at random scales."""

    def __init__(self, photos: list[np.ndarray], crop_px: int, seed: int) -> None:
        if not photos:
            raise ValueError("no natural photos to sample from")
        self.photos = photos
        self.crop_px = crop_px
        self.rng = np.random.default_rng(seed)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        rng, size = self.rng, self.crop_px
        photo = self.photos[rng.integers(len(self.photos))]
        scale = rng.uniform(0.25, 1.3) * 512 / max(photo.shape[:2])
        image = cv2.resize(photo, None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        canvas = np.zeros((max(size, image.shape[0]), max(size, image.shape[1]), 3), np.uint8)
        canvas[:image.shape[0], :image.shape[1]] = image
        y0, x0 = rng.integers(0, canvas.shape[0] - size + 1), rng.integers(0, canvas.shape[1] - size + 1)
        crop = np.ascontiguousarray(canvas[y0:y0 + size, x0:x0 + size])
        if rng.random() < 0.5:
            crop = np.ascontiguousarray(crop[:, ::-1])
        seen = degrade_photometric(crop.copy(), rng) if rng.random() < 0.5 else crop
        return crop, seen


def face_free(photos: dict[str, np.ndarray], teacher) -> list[np.ndarray]:
    """The photos in which the original detector finds no face (safe backdrops for composites)."""
    return [image for image in photos.values() if len(teacher.detect(image).scores) == 0]


def batches(sampler: CompositeSampler, count: int) -> Iterator[tuple[np.ndarray, list[FaceTruth]]]:
    for _ in range(count):
        yield sampler.sample()
