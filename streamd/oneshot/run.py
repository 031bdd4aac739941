"""One-shot anonymization of files people already have: a video, an image, or a folder of images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from streamd.anonymize import build_anonymizer
from streamd.app import open_stream
from streamd.config import CameraConfig, FileOutputConfig, FileSourceConfig, OutputsConfig
from streamd.detect import build_detector
from streamd.errors import SinkError, SourceError, StreamdError
from streamd.stats import PipelineStats
from streamd.tracking import FaceTracker
from streamd.video_out import read_image, write_image

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass
class OneShotResult:
    kind: str
    files_written: list[Path] = field(default_factory=list)
    failures: dict[Path, str] = field(default_factory=dict)
    stats: PipelineStats | None = None
    faces: int = 0


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def anonymize_video(input_path: Path, output_path: Path, camera: CameraConfig, progress=None) -> OneShotResult:
    """Every frame of `input_path` anonymized into `output_path`, same frame count and timestamps.

    With `camera.reversible` set the output is a recording (docs/recording.md): .mkv with wrapped
    track keys and, unless switched off, sealed payloads.
    """
    camera = camera.model_copy(
        update={
            "source": FileSourceConfig(path=input_path, rotation=getattr(camera.source, "rotation", "auto")),
            "outputs": OutputsConfig(file=FileOutputConfig(path=output_path)),
        }
    )
    camera = CameraConfig.model_validate(camera.model_dump())
    on_frame = (lambda _frame: progress.update(1)) if progress is not None else None
    with open_stream(camera, on_frame=on_frame) as pipeline:
        if progress is not None:
            hint = getattr(pipeline.source, "frame_count_hint", None)
            if hint:
                progress.total = hint
        stats = pipeline.run()
    return OneShotResult(kind="video", files_written=[output_path], stats=stats, faces=stats.faces_out)


def anonymize_images(pairs: list[tuple[Path, Path]], camera: CameraConfig, progress=None) -> OneShotResult:
    """Each (input, output) image pair on its own; unreadable images are reported, the rest written."""
    result = OneShotResult(kind="images")
    detector = build_detector(camera.detector)
    anonymizer = build_anonymizer(camera.anonymizer)
    try:
        for input_path, output_path in pairs:
            try:
                bgr = read_image(input_path)
            except (SourceError, OSError) as exc:
                result.failures[input_path] = str(exc)
                logger.warning("%s", exc)
                continue
            tracker = FaceTracker(camera.tracker)
            update = tracker.update(detector.detect_still(bgr), frame_wh=(bgr.shape[1], bgr.shape[0]))
            write_image(output_path, anonymizer.apply(bgr, update.faces))
            result.files_written.append(output_path)
            result.faces += len(update.faces)
            if progress is not None:
                progress.update(1)
    finally:
        anonymizer.close()
        detector.close()
    return result


def plan_image_pairs(input_path: Path, output_path: Path) -> list[tuple[Path, Path]]:
    if input_path.is_dir():
        images = sorted(p for p in input_path.iterdir() if p.is_file() and is_image_path(p))
        if not images:
            raise SourceError(f"{input_path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        if output_path.exists() and not output_path.is_dir():
            raise SinkError(f"{output_path}: exists and is not a folder")
        if output_path.resolve() == input_path.resolve():
            raise SinkError(f"{output_path}: output folder must differ from the input folder")
        try:
            output_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"{output_path}: cannot create output folder: {exc.strerror}") from None
        return [(image, output_path / image.name) for image in images]
    if not is_image_path(output_path):
        raise SinkError(f"{output_path}: output of an image must be an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [(input_path, output_path)]


def anonymize_path(input_path: Path, output_path: Path, camera: CameraConfig, progress=None) -> OneShotResult:
    """Dispatch on what `input_path` is. Raises StreamdError with a one-line message on bad input."""
    if not input_path.exists():
        raise SourceError(f"{input_path}: no such file or folder")
    if input_path.resolve() == output_path.resolve():
        raise SinkError(f"{output_path}: output must not overwrite the input")
    if input_path.is_dir() or is_image_path(input_path):
        if camera.reversible is not None:
            raise StreamdError(
                f"{input_path}: restore recipients apply to videos only; images are anonymized irreversibly"
            )
        result = anonymize_images(plan_image_pairs(input_path, output_path), camera, progress)
        if not result.files_written:
            raise StreamdError(f"{input_path}: no image could be read ({len(result.failures)} failed)")
        return result
    return anonymize_video(input_path, output_path, camera, progress)
