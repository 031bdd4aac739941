"""Held-out face instances for a frame-level evaluation: photos placed into 1280x720 frames, and
short H.264 clips of them, each face located by dlib on the original.

Faces are found once per photo by dlib's HOG detector (upsampled twice) and numbered left to right
(`photo.jpg:0`, ...). A photo frame scales the photo so one of its faces is a drawn width between
`min_face` and `max_face` pixels and places it on a smooth background; a clip zooms and pans the photo
over `clip_frames` frames, is encoded with libx264 through PyAV and decoded again, so the daemon sees
real video frames. Every face's box in a frame is its dlib box on the photo mapped by the same scale
and offset; dlib then places its landmarks inside that box on whatever image it judges.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from streamd.evaluation.errors import EvaluationError

logger = logging.getLogger(__name__)

FRAME_WH = (1280, 720)
DLIB_UPSAMPLE = 2


@dataclasses.dataclass(frozen=True)
class PhotoFace:
    face_id: str
    xyxy: np.ndarray  # dlib box on the photo


@dataclasses.dataclass
class Photo:
    name: str
    bgr: np.ndarray
    faces: list[PhotoFace]


@dataclasses.dataclass(frozen=True)
class FaceInstance:
    face_id: str
    xyxy: np.ndarray  # in the frame

    @property
    def width(self) -> float:
        return float(self.xyxy[2] - self.xyxy[0])


@dataclasses.dataclass
class EvaluationFrame:
    """One frame the daemon anonymizes; `judged` frames are scored, the others only keep tracks going."""

    kind: str  # "photo" or "video"
    sequence: str
    bgr: np.ndarray
    faces: list[FaceInstance]
    judged: bool = True


def parse_face_ids(values: Sequence[str]) -> set[str]:
    """'t1.jpg:0-3' and 'messi5.jpg:0' style ranges -> {'t1.jpg:0', ...}; 'x.png:*' stays as is."""
    ids: set[str] = set()
    for value in values:
        name, _, numbers = value.rpartition(":")
        if not name or not numbers:
            raise EvaluationError(f"face id {value!r} must be PHOTO:INDEX, PHOTO:FIRST-LAST or PHOTO:*")
        if numbers == "*":
            ids.add(value)
            continue
        first, _, last = numbers.partition("-")
        try:
            ids.update(f"{name}:{index}" for index in range(int(first), int(last or first) + 1))
        except ValueError:
            raise EvaluationError(f"face id {value!r}: {numbers!r} is not an index or a range") from None
    return ids


def is_excluded(face_id: str, excluded: set[str]) -> bool:
    return face_id in excluded or f"{face_id.rpartition(':')[0]}:*" in excluded


def load_photos(paths: Sequence[Path], excluded: set[str]) -> list[Photo]:
    """Each photo with its dlib faces, excluded faces dropped (they stay in the frames, unjudged)."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    photos = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EvaluationError(f"{path}: cannot be read as an image")
        rects = sorted(detector(np.ascontiguousarray(bgr[:, :, ::-1]), DLIB_UPSAMPLE), key=lambda r: r.left())
        faces = []
        for index, rect in enumerate(rects):
            face_id = f"{path.name}:{index}"
            if is_excluded(face_id, excluded):
                logger.info("%s: not for evaluation (used in training, tuning or calibration)", face_id)
                continue
            faces.append(PhotoFace(face_id, np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64)))
        if faces:
            photos.append(Photo(path.name, bgr, faces))
        else:
            logger.info("%s: no held-out face", path.name)
    if not photos:
        raise EvaluationError("no held-out face in the given photos")
    return photos


def background(rng: np.random.Generator) -> np.ndarray:
    width, height = FRAME_WH
    small = rng.integers(40, 215, (5, 9, 3)).astype(np.uint8)
    smooth = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(smooth, (0, 0), 25)


def place(photo: Photo, scale: float, offset: tuple[float, float], canvas: np.ndarray) -> tuple[np.ndarray, list[FaceInstance]]:
    """The photo scaled and put at `offset` (its top-left corner in the frame) on `canvas`."""
    matrix = np.array([[scale, 0, offset[0]], [0, scale, offset[1]]], np.float64)
    width, height = FRAME_WH
    warped = cv2.warpAffine(photo.bgr, matrix, (width, height), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    inside = cv2.warpAffine(np.full(photo.bgr.shape[:2], 255, np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST)
    frame = np.where(inside[..., None] > 0, warped, canvas)
    faces = []
    for face in photo.faces:
        box = face.xyxy * scale + np.array([offset[0], offset[1], offset[0], offset[1]])
        if box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height:
            faces.append(FaceInstance(face.face_id, box))
    return frame, faces


def photo_frames(photos: Sequence[Photo], per_face: int, size_range: tuple[int, int],
                 rng: np.random.Generator) -> Iterator[EvaluationFrame]:
    """`per_face` frames per held-out face, that face at a drawn width, somewhere in the frame."""
    width, height = FRAME_WH
    for photo in photos:
        for face in photo.faces:
            face_width = face.xyxy[2] - face.xyxy[0]
            for number in range(per_face):
                scale = rng.uniform(*size_range) / face_width
                box = face.xyxy * scale
                x = rng.uniform(-box[0] + 4, width - box[2] - 4)
                y = rng.uniform(-box[1] + 4, height - box[3] - 4)
                frame, faces = place(photo, scale, (x, y), background(rng))
                faces = [f for f in faces if size_range[0] * 0.9 <= f.width <= size_range[1] * 1.1]
                yield EvaluationFrame("photo", f"{face.face_id}#{number}", frame, faces)


def encode_decode_clip(frames: Sequence[np.ndarray], crf: int = 23) -> list[np.ndarray]:
    """The frames through libx264 (yuv420p) and back, as a camera's stream would arrive."""
    import av

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height = FRAME_WH
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            for bgr in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        with av.open(str(path)) as container:
            return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def clip_frames(photo: Photo, frames: int, judge_every: int, size_range: tuple[int, int],
                rng: np.random.Generator) -> list[EvaluationFrame]:
    """A zoom from the small to the large end of `size_range` (for the photo's widest face) with a pan."""
    width, height = FRAME_WH
    widest = max(face.xyxy[2] - face.xyxy[0] for face in photo.faces)
    start, end = size_range[0] / widest * 1.05, size_range[1] / widest * 0.95
    centre = np.mean([face.xyxy for face in photo.faces], axis=0)
    cx, cy = (centre[0] + centre[2]) / 2, (centre[1] + centre[3]) / 2
    drift = rng.uniform(-60, 60, 2)
    canvas = background(rng)
    rendered, instances = [], []
    for index in range(frames):
        t = index / max(1, frames - 1)
        scale = start * (end / start) ** t
        offset = (width / 2 + drift[0] * (t - 0.5) - cx * scale, height / 2 + drift[1] * (t - 0.5) - cy * scale)
        frame, faces = place(photo, scale, offset, canvas)
        rendered.append(frame)
        instances.append([f for f in faces if size_range[0] * 0.9 <= f.width <= size_range[1] * 1.1])
    decoded = encode_decode_clip(rendered)
    if len(decoded) != len(rendered):
        raise EvaluationError(f"clip of {photo.name}: {len(decoded)} frames decoded of {len(rendered)}")
    return [EvaluationFrame("video", f"{photo.name}/clip", bgr, faces, judged=index % judge_every == judge_every - 1)
            for index, (bgr, faces) in enumerate(zip(decoded, instances))]


def evaluation_frames(photos: Sequence[Photo], per_face: int, clip_length: int, judge_every: int,
                      size_range: tuple[int, int], rng: np.random.Generator) -> list[EvaluationFrame]:
    """Every frame of a frame-level evaluation: `per_face` photo frames per face, then one clip per photo
    (`clip_length` frames, every `judge_every`-th judged)."""
    frames = list(photo_frames(photos, per_face, size_range, rng))
    for photo in photos:
        frames.extend(clip_frames(photo, clip_length, judge_every, size_range, rng))
    judged = [frame for frame in frames if frame.judged]
    logger.info("%d frames (%d judged, %d face instances)", len(frames), len(judged),
                sum(len(frame.faces) for frame in judged))
    return frames
