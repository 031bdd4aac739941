"""What an archive job has to do: the inputs of a folder, their outputs, and how each one is cut.

Videos are cut into segments at key frames (`video_index`); a restorable output (recipients set) is
one recording per input with its own stream keys, so it runs as one task from the first frame to the
last. Images are one task each.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from streamd.cluster.video_index import Segment, VideoIndex, plan_segments, read_video_index
from streamd.errors import SinkError, SourceError
from streamd.oneshot import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mts", ".mpg", ".mpeg"})
#: Outputs keep the input's container when streamd writes it, and are Matroska otherwise.
OUTPUT_VIDEO_SUFFIXES = frozenset({".mp4", ".mkv"})
WORK_DIR_NAME = ".streamd-work"
#: Default segment length: a minute at 25 fps, long against the seam's warm-up and model loading.
DEFAULT_SEGMENT_FRAMES = 1500
#: Frames before each seam that are detected and tracked again (not written) so that tracks that
#: cross the seam are running when the segment's first frame comes; see docs/scaling.md.
DEFAULT_WARMUP_FRAMES = 12


@dataclass(frozen=True)
class ArchiveInput:
    name: str  # path relative to the input folder, the manifest's key
    path: Path
    output_path: Path
    kind: str  # "video" or "image"


@dataclass
class VideoPlan:
    index: VideoIndex
    segments: list[Segment]
    work_dir: Path
    segment_paths: list[Path] = field(default_factory=list)


def output_path_for(relative: Path, output_dir: Path) -> Path:
    suffix = relative.suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix in OUTPUT_VIDEO_SUFFIXES:
        return output_dir / relative
    return output_dir / relative.with_suffix(".mkv")


def discover_inputs(input_dir: Path, output_dir: Path) -> list[ArchiveInput]:
    """Every video and image under `input_dir` (recursively, hidden files skipped), sorted by path."""
    if not input_dir.is_dir():
        raise SourceError(f"{input_dir}: archive mode takes a folder of videos and images")
    if output_dir.resolve() == input_dir.resolve():
        raise SinkError(f"{output_dir}: output folder must differ from the input folder")
    output_resolved = output_dir.resolve()
    inputs = []
    for path in sorted(input_dir.rglob("*")):
        relative = path.relative_to(input_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if output_resolved in path.resolve().parents:
            continue
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            kind = "video"
        elif suffix in IMAGE_SUFFIXES:
            kind = "image"
        else:
            logger.info("%s: neither a video nor an image by its name; left out", path)
            continue
        inputs.append(ArchiveInput(str(relative), path, output_path_for(relative, output_dir), kind))
    if not inputs:
        raise SourceError(f"{input_dir}: no video ({', '.join(sorted(VIDEO_SUFFIXES))}) or image in this folder")
    return inputs


def work_dir_for(output_dir: Path, item: ArchiveInput, input_sha256: str, settings: str) -> Path:
    """Where the segments of one input under one set of settings go until they are joined."""
    key = hashlib.sha256(f"{item.name}\0{input_sha256}\0{settings}".encode()).hexdigest()[:24]
    return output_dir / WORK_DIR_NAME / key


def plan_video(item: ArchiveInput, work_dir: Path, segment_frames: int, warmup_frames: int) -> VideoPlan:
    index = read_video_index(item.path)
    segments = plan_segments(index, segment_frames, warmup_frames)
    plan = VideoPlan(index, segments, work_dir)
    plan.segment_paths = [work_dir / f"segment-{segment.number:05d}{item.output_path.suffix}" for segment in segments]
    return plan


def finished_segment_frames(path: Path) -> int | None:
    """Frames of a segment file a previous run finished (moved into place), or None when there is none."""
    if not path.exists():
        return None
    try:
        return read_video_index(path).frame_count
    except SourceError as exc:
        logger.warning("%s: unreadable segment from an earlier run, redoing it: %s", path, exc)
        return None
