"""One-shot anonymization of files people already have: a video, an image, or a folder of images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from streamd.anonymize import build_anonymizer
from streamd.app import open_stream
from streamd.config import CameraConfig, FileOutputConfig, FileSourceConfig, OutputsConfig
from streamd.detect import build_detector
from streamd.errors import SourceError, StreamdError
from streamd.oneshot.planning import check_output, is_image_path, plan_image_pairs
from streamd.sources.files import FileVideoSource
from streamd.stats import PipelineStats
from streamd.tracking import FaceTracker
from streamd.sinks.video_out import read_image, write_image

logger = logging.getLogger(__name__)


@dataclass
class OneShotResult:
    kind: str
    files_written: list[Path] = field(default_factory=list)
    failures: dict[Path, str] = field(default_factory=dict)
    stats: PipelineStats | None = None
    faces: int = 0
    #: Frames of the input that never reached the output: packets that did not decode, and frames a
    #: truncated file is short of what its container announces.
    frames_lost: int = 0
    frames_announced: int | None = None
    skipped_folders: list[Path] = field(default_factory=list)


def anonymize_video(input_path: Path, output_path: Path, camera: CameraConfig, progress=None) -> OneShotResult:
    """Every frame of `input_path` anonymized into `output_path`, same frame count and timestamps.

    The output takes its encoder settings (crf, preset, audio) from `camera.outputs.file` when it has
    one. With `camera.reversible` set the output is a recording (docs/recording.md): .mkv with
    wrapped track keys and, unless switched off, sealed payloads.
    """
    file_output = camera.outputs.file or FileOutputConfig(path=output_path)
    camera = camera.model_copy(
        update={
            "source": FileSourceConfig(path=input_path, rotation=getattr(camera.source, "rotation", "auto")),
            "outputs": OutputsConfig(file=file_output.model_copy(update={"path": output_path})),
        }
    )
    camera = CameraConfig.model_validate(camera.model_dump())
    on_frame = (lambda _frame: progress.update(1)) if progress is not None else None
    with open_stream(camera, on_frame=on_frame) as pipeline:
        source = pipeline.source
        announced = getattr(source, "frame_count_hint", None)
        if progress is not None and announced:
            progress.total = announced
        stats = pipeline.run()
    # Frames short of the announced count include those whose packets failed to decode.
    lost = max(source.decode_errors, source.frames_short) if isinstance(source, FileVideoSource) else 0
    return OneShotResult(kind="video", files_written=[output_path], stats=stats, faces=stats.faces_out,
                         frames_lost=lost, frames_announced=announced)


def anonymize_images(pairs: list[tuple[Path, Path]], camera: CameraConfig, progress=None) -> OneShotResult:
    """Each (input, output) image pair on its own; unreadable images are reported, the rest written."""
    result = OneShotResult(kind="images")
    detector = build_detector(camera.detector)
    anonymizer = build_anonymizer(camera.anonymizer)
    if progress is not None:
        progress.total = len(pairs)
    try:
        for input_path, output_path in pairs:
            try:
                bgr = read_image(input_path)
            except (SourceError, OSError) as exc:
                result.failures[input_path] = str(exc)
                logger.debug("skipped %s: %s", input_path, exc)
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


def anonymize_path(input_path: Path, output_path: Path, camera: CameraConfig, progress=None, *,
                   recursive: bool = False, force: bool = False) -> OneShotResult:
    """Dispatch on what `input_path` is. Raises StreamdError with a one-line message on bad input.

    An existing output is refused unless `force`; a folder's subfolders are searched with `recursive`
    and otherwise listed in `skipped_folders`.
    """
    if not input_path.exists():
        raise SourceError(f"{input_path}: no such file or folder")
    check_output(input_path, output_path, force)
    if input_path.is_dir() or is_image_path(input_path):
        if camera.reversible is not None:
            raise StreamdError(
                f"{input_path}: restore recipients apply to videos only; images are anonymized irreversibly"
            )
        plan = plan_image_pairs(input_path, output_path, recursive)
        result = anonymize_images(plan.pairs, camera, progress)
        result.skipped_folders = plan.skipped_folders
        if not result.files_written:
            raise StreamdError(f"{input_path}: no image could be read ({len(result.failures)} failed)")
        return result
    return anonymize_video(input_path, output_path, camera, progress)
