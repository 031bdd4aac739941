"""`streamd anonymize INPUT_DIR -o OUTPUT_DIR --cluster ...`: a folder of footage as Ray tasks.

For each input not already done (see `manifest`): a video's segments run as tasks spread over the
cluster, and a join task that Ray starts once they all finished copies their packets into the output;
images and restorable recordings are one task each. A task lost with its node is run again by Ray
(`max_retries`); outputs are moved into place whole, so each exists once. An input that fails is
recorded in the manifest and reported; the others go on.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from streamd.cluster import tasks
from streamd.cluster.manifest import Manifest, ManifestEntry, settings_digest
from streamd.cluster.planner import (
    DEFAULT_SEGMENT_FRAMES,
    DEFAULT_WARMUP_FRAMES,
    WORK_DIR_NAME,
    ArchiveInput,
    discover_inputs,
    finished_segment_frames,
    plan_video,
    work_dir_for,
)
from streamd.cluster.progress import FrameCounter, JobProgress
from streamd.config import CameraConfig
from streamd.errors import StreamdError
from streamd.hashing import file_sha256

logger = logging.getLogger(__name__)

#: How often the driver wakes to collect finished files and report progress.
POLL_S = 0.5
#: Times Ray runs a task again after its worker or node was lost.
TASK_MAX_RETRIES = 4


@dataclass(frozen=True)
class ArchiveOptions:
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    warmup_frames: int = DEFAULT_WARMUP_FRAMES
    task_cpus: float = 1.0
    task_gpus: float = 0.0
    progress_interval_s: float = 2.0


@dataclass
class ArchiveReport:
    written: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    faces: int = 0
    frames_masked: int = 0
    segments_run: int = 0
    segments_reused: int = 0  # finished by an earlier, interrupted run of the same job
    wall_s: float = 0.0


@dataclass
class _Pending:
    item: ArchiveInput
    input_sha256: str
    work_dir: Path | None
    frames_planned: int


def _failure_text(exc: BaseException) -> str:
    """The message of the error inside a Ray task error, without Ray's traceback."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return str(cause) if isinstance(cause, StreamdError) else f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


class ArchiveJob:
    """One run over an input folder; `run` returns the report."""

    def __init__(self, ray: ModuleType, input_dir: Path, output_dir: Path, camera: CameraConfig,
                 options: ArchiveOptions = ArchiveOptions(),
                 on_progress: Callable[[JobProgress], None] | None = None) -> None:
        self.ray = ray
        self.input_dir = input_dir
        self.output_dir = output_dir
        self.camera = camera
        self.options = options
        self.on_progress = on_progress
        self.settings = settings_digest(camera)
        self.camera_settings = camera.model_dump(mode="json")
        self.report = ArchiveReport()
        self._pending: dict[Any, _Pending] = {}
        self._remote_functions: dict[Callable[..., Any], Any] = {}
        self._frames_total = 0
        self._frames_reused = 0
        self._files_total = 0
        self._started = time.monotonic()

    # ------------------------------------------------------------ submitting
    def _remote(self, function: Callable[..., Any], **extra: Any) -> Any:
        if function not in self._remote_functions:
            self._remote_functions[function] = self.ray.remote(function)
        options = {"num_cpus": self.options.task_cpus, "num_gpus": self.options.task_gpus,
                   "max_retries": TASK_MAX_RETRIES, "scheduling_strategy": "SPREAD", **extra}
        return self._remote_functions[function].options(**options)

    def _submit_video(self, item: ArchiveInput, input_sha256: str, counter: Any) -> None:
        work_dir = work_dir_for(self.output_dir, item, input_sha256, self.settings)
        if self.camera.reversible is not None:
            ref = self._remote(tasks.whole_video_task).remote(
                str(item.path), str(item.output_path), self.camera_settings, counter, self.options.task_cpus)
            self._pending[ref] = _Pending(item, input_sha256, None, 0)
            return
        plan = plan_video(item, work_dir, self.options.segment_frames, self.options.warmup_frames)
        work_dir.mkdir(parents=True, exist_ok=True)
        index_ref = self.ray.put(plan.index)  # every frame's pts: stored once, read by each segment task
        results = []
        for segment, path in zip(plan.segments, plan.segment_paths):
            if finished_segment_frames(path) == segment.frame_count:
                results.append({"frames": segment.frame_count, "faces": 0, "frames_masked": 0})
                self._frames_reused += segment.frame_count
                self.report.segments_reused += 1
                continue
            self.report.segments_run += 1
            results.append(self._remote(tasks.segment_task).remote(
                str(item.path), segment, index_ref, self.camera_settings, str(path), counter, self.options.task_cpus))
        ref = self._remote(tasks.join_task, num_cpus=0).remote(
            [str(path) for path in plan.segment_paths], str(item.output_path), *results)
        self._pending[ref] = _Pending(item, input_sha256, work_dir, plan.index.frame_count)
        self._frames_total += plan.index.frame_count
        logger.info("%s: %d frames in %d segments", item.name, plan.index.frame_count, len(plan.segments))

    def _submit(self, item: ArchiveInput, manifest: Manifest, counter: Any) -> None:
        input_sha256 = file_sha256(item.path)
        if manifest.is_done(item.name, input_sha256, self.settings, item.output_path):
            self.report.skipped.append(item.name)
            return
        item.output_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if item.kind == "video":
                self._submit_video(item, input_sha256, counter)
            else:
                ref = self._remote(tasks.image_task).remote(
                    str(item.path), str(item.output_path), self.camera_settings, self.options.task_cpus)
                self._pending[ref] = _Pending(item, input_sha256, None, 1)
                self._frames_total += 1
        except StreamdError as exc:
            self._fail(manifest, item, input_sha256, str(exc))

    # ------------------------------------------------------------ collecting
    def _fail(self, manifest: Manifest, item: ArchiveInput, input_sha256: str, reason: str) -> None:
        logger.info("%s failed: %s", item.name, reason)
        self.report.failed[item.name] = reason
        manifest.record(item.name, ManifestEntry(input_sha256, self.settings, str(item.output_path), "failed",
                                                 error=reason))

    def _collect(self, ref: Any, manifest: Manifest) -> None:
        pending = self._pending.pop(ref)
        item = pending.item
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            self._fail(manifest, item, pending.input_sha256, _failure_text(exc))
            return
        expected = pending.frames_planned or result["expected_frames"]
        if result["frames"] != result["expected_frames"] or result["frames"] != expected:
            self._fail(manifest, item, pending.input_sha256,
                       f"output has {result['frames']} frames, the input {expected}")
            return
        manifest.record(item.name, ManifestEntry(
            pending.input_sha256, self.settings, str(item.output_path), "done", frames=result["frames"],
            faces=result["faces"], output_sha256=file_sha256(item.output_path)))
        self.report.written[item.name] = item.output_path
        self.report.frames += result["frames"]
        self.report.faces += result["faces"]
        self.report.frames_masked += result["frames_masked"]
        if pending.work_dir is not None:
            shutil.rmtree(pending.work_dir, ignore_errors=True)

    def _progress(self, counter: Any, last_frames: int) -> int:
        try:
            frames = self.ray.get(counter.total.remote(), timeout=5.0)
        except self.ray.exceptions.RayError as exc:
            logger.debug("progress counter unavailable: %s", exc)
            frames = last_frames
        if self.on_progress is not None:
            self.on_progress(JobProgress(
                files_total=self._files_total, files_done=len(self.report.written),
                files_failed=len(self.report.failed), files_skipped=len(self.report.skipped),
                frames_total=self._frames_total, frames_done=frames + self._frames_reused,
                elapsed_s=time.monotonic() - self._started))
        return frames

    # ------------------------------------------------------------ run
    def run(self) -> ArchiveReport:
        inputs = discover_inputs(self.input_dir, self.output_dir)
        self._files_total = len(inputs)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        manifest = Manifest.load(self.output_dir)
        counter = self.ray.remote(FrameCounter).options(num_cpus=0, max_restarts=-1).remote()
        for item in inputs:
            self._submit(item, manifest, counter)
        frames_seen = 0
        last_report = 0.0
        while self._pending:
            ready, _ = self.ray.wait(list(self._pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                self._collect(ref, manifest)
            if time.monotonic() - last_report >= self.options.progress_interval_s:
                frames_seen = self._progress(counter, frames_seen)
                last_report = time.monotonic()
        self._progress(counter, frames_seen)
        self.ray.kill(counter)
        work_root = self.output_dir / WORK_DIR_NAME
        if work_root.exists() and not any(work_root.iterdir()):
            work_root.rmdir()
        self.report.wall_s = time.monotonic() - self._started
        return self.report
