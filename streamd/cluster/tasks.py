"""The bodies of the archive job's Ray tasks. Plain functions: `archive` wraps them with `ray.remote`.

Arguments and results are plain data (config dicts, paths, counts), so they pickle small; frames
never travel through Ray, only through the shared input and output folders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from streamd.cluster.join import join_segments
from streamd.cluster.progress import BatchedReporter
from streamd.cluster.segment_run import anonymize_segment
from streamd.cluster.video_index import Segment, VideoIndex
from streamd.config import CameraConfig
from streamd.errors import SourceError

logger = logging.getLogger(__name__)


def task_camera(camera_settings: dict[str, Any], cpus: float) -> CameraConfig:
    """The camera settings of a task, with the detector using as many threads as the task reserved."""
    camera = CameraConfig.model_validate(camera_settings)
    if hasattr(camera.detector, "intra_op_threads"):
        detector = camera.detector.model_copy(update={"intra_op_threads": max(1, int(cpus))})
        camera = camera.model_copy(update={"detector": type(camera.detector).model_validate(detector.model_dump())})
    return camera


def _reporter(counter: Any) -> BatchedReporter | None:
    if counter is None:
        return None
    return BatchedReporter(lambda frames: counter.add.remote(frames))


def segment_task(input_path: str, segment: Segment, index: VideoIndex, camera_settings: dict[str, Any],
                 output_path: str, counter: Any, cpus: float) -> dict[str, int]:
    """Anonymize one segment into `output_path`; frames, faces and masked frames written."""
    reporter = _reporter(counter)
    result = anonymize_segment(Path(input_path), segment, index, task_camera(camera_settings, cpus),
                               Path(output_path), on_frames=reporter)
    if reporter is not None:
        reporter.flush()
    return {"frames": result.frames, "faces": result.faces, "frames_masked": result.frames_masked}


def join_task(segment_paths: list[str], output_path: str, *segment_results: dict[str, int]) -> dict[str, int]:
    """Join the finished segments (their results are passed so Ray runs this after all of them)."""
    frames = join_segments([Path(path) for path in segment_paths], Path(output_path))
    expected = sum(result["frames"] for result in segment_results)
    return {
        "frames": frames,
        "expected_frames": expected,
        "faces": sum(result["faces"] for result in segment_results),
        "frames_masked": sum(result["frames_masked"] for result in segment_results),
    }


def whole_video_task(input_path: str, output_path: str, camera_settings: dict[str, Any], counter: Any,
                     cpus: float) -> dict[str, int]:
    """A file that is not cut (a restorable recording): one pipeline from its first frame to its last."""
    from streamd.oneshot import anonymize_video

    reporter = _reporter(counter)

    class _Progress:
        total = None

        def update(self, frames: int) -> None:
            if reporter is not None:
                reporter(frames)

    result = anonymize_video(Path(input_path), Path(output_path), task_camera(camera_settings, cpus), _Progress())
    if reporter is not None:
        reporter.flush()
    snapshot = result.stats.snapshot() if result.stats is not None else {}
    return {"frames": int(snapshot.get("frames_out", 0)), "expected_frames": int(snapshot.get("frames_out", 0)),
            "faces": int(snapshot.get("faces_out", 0)), "frames_masked": int(snapshot.get("frames_masked", 0))}


def image_task(input_path: str, output_path: str, camera_settings: dict[str, Any], cpus: float) -> dict[str, int]:
    """One still image."""
    from streamd.oneshot import anonymize_images

    result = anonymize_images([(Path(input_path), Path(output_path))], task_camera(camera_settings, cpus))
    if result.failures:
        raise SourceError(next(iter(result.failures.values())))
    return {"frames": 1, "expected_frames": 1, "faces": result.faces, "frames_masked": 0}
