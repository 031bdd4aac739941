"""Anonymize one segment of a video into its own file, with the same encoder settings as a whole-file run."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamd.anonymize import build_anonymizer
from streamd.cluster.segment_source import SegmentSource
from streamd.cluster.video_index import Segment, VideoIndex
from streamd.config import CameraConfig, FileOutputConfig
from streamd.detect import build_detector
from streamd.errors import SinkError
from streamd.sinks.file_sink import VideoFileSink
from streamd.pipeline import StreamPipeline
from streamd.sinks.base import FrameSink
from streamd.types import AnonymizedFrame

logger = logging.getLogger(__name__)


class SeamTrimSink(FrameSink):
    """Passes on the frames from `start_pts` on; the warm-up frames before it belong to the previous segment."""

    def __init__(self, inner: VideoFileSink, start_pts: int) -> None:
        self.inner = inner
        self.start_pts = start_pts
        self.stage = inner.stage
        self.warmup_frames_dropped = 0

    def write(self, anonymized: AnonymizedFrame) -> None:
        if anonymized.frame.pts is not None and anonymized.frame.pts < self.start_pts:
            self.warmup_frames_dropped += 1
            return
        self.inner.write(anonymized)

    def finish(self) -> None:
        self.inner.finish()

    def abort(self) -> None:
        # A failed segment is redone whole; what it wrote stays in the job's work folder only.
        self.inner.abort()


@dataclass(frozen=True)
class SegmentResult:
    path: Path
    frames: int
    faces: int
    frames_masked: int


def anonymize_segment(
    input_path: Path,
    segment: Segment,
    index: VideoIndex,
    camera: CameraConfig,
    output_path: Path,
    on_frames: Callable[[int], None] | None = None,
) -> SegmentResult:
    """Run detection, tracking and anonymization over `segment`; write its frames to `output_path`."""
    rotation = getattr(camera.source, "rotation", "auto")
    totals = {"faces": 0, "masked": 0}

    def count(anonymized: AnonymizedFrame) -> None:
        if anonymized.frame.pts is None or anonymized.frame.pts < segment.start_pts:
            return
        totals["faces"] += len(anonymized.faces)
        totals["masked"] += int(anonymized.status != "ok")
        if on_frames is not None:
            on_frames(1)

    with contextlib.ExitStack() as stack:
        detector = build_detector(camera.detector)
        stack.callback(detector.close)
        anonymizer = build_anonymizer(camera.anonymizer)
        stack.callback(anonymizer.close)
        source = SegmentSource(input_path, segment, index, rotation=rotation)
        stack.callback(source.close)
        file_sink = VideoFileSink(FileOutputConfig(path=output_path), source)
        sink = SeamTrimSink(file_sink, segment.start_pts)
        pipeline = StreamPipeline(camera, source, detector, anonymizer, [sink], on_frame=count)
        pipeline.run()
    written = file_sink.frames_written
    if written != segment.frame_count and camera.pipeline.on_error == "mask":
        output_path.unlink(missing_ok=True)
        raise SinkError(f"{input_path}: segment {segment.number} wrote {written} frames, expected {segment.frame_count}")
    return SegmentResult(output_path, written, totals["faces"], totals["masked"])
