"""`streamd eval CLIP --truth gt.txt`: anonymize clips with streamd (per method and detector profile)
and optionally deface, then score every n-th frame against the ground truth (streamd.truth.misses).

Frames are compared upright: each decoded frame is turned as its display matrix says, and an output
that lost the metadata but kept the stored frame shape is turned like its input.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from streamd.config import AnonymizerConfig, CameraConfig, CenterFaceConfig, FileSourceConfig
from streamd.errors import SourceError, TruthError
from streamd.sources.orientation import FrameOrienter, to_upright
from streamd.truth.misses import (
    MISS_SSIM,
    false_mask_share,
    score_instance,
    size_bucket,
    to_grey,
)
from streamd.truth.mot import GtBox, read_conditions, read_gt

logger = logging.getLogger(__name__)

DEFAULT_FRAME_STEP = 5
DEFAULT_MIN_VISIBILITY = 0.5
# Missed instances kept (as crops) per run for the contact sheet.
MAX_KEPT_CROPS = 400
CROP_CONTEXT = 0.5


@dataclass(frozen=True)
class TruthClip:
    name: str
    video: Path
    gt: Path
    conditions: Path | None


@dataclass(frozen=True)
class RunSpec:
    """One way of anonymizing: streamd with a method and detector profile, or a baseline tool."""

    tool: str  # "streamd" or "deface"
    method: str
    profile: str | None = None

    @property
    def label(self) -> str:
        if self.tool == "streamd":
            return f"streamd {self.method} {self.profile}" if self.profile else f"streamd {self.method}"
        return f"{self.tool} {self.method}"

    @property
    def slug(self) -> str:
        return self.label.replace(" ", "-")


@dataclass
class InstanceRecord:
    clip: str
    frame: int
    id: int
    width_px: float
    visibility: float
    tags: frozenset[str]
    ssim: float
    missed: bool

    @property
    def bucket(self) -> str:
        return size_bucket(self.width_px)


@dataclass
class RunResult:
    spec: RunSpec
    frames: int = 0
    wall_s: float = 0.0
    frames_scored: int = 0
    instances: list[InstanceRecord] = field(default_factory=list)
    false_mask_shares: list[float] = field(default_factory=list)
    missed_crops: list[tuple[InstanceRecord, np.ndarray, np.ndarray]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- inputs
def find_clips(input_path: Path, truth_path: Path, conditions_path: Path | None = None) -> list[TruthClip]:
    """A clip with its gt.txt, or every clip of a benchmark folder (input and --truth both the folder)."""
    if input_path.is_dir():
        manifest_path = input_path / "benchmark.json"
        if not manifest_path.is_file():
            raise TruthError(f"{input_path}: a folder input must be a benchmark folder with benchmark.json "
                             "(streamd make-benchmark)")
        if truth_path.resolve() != input_path.resolve():
            raise TruthError(f"{input_path}: for a benchmark folder, --truth must name the same folder")
        try:
            manifest = json.loads(manifest_path.read_text())
            entries = manifest["clips"]
            return [TruthClip(entry["name"], input_path / entry["video"], input_path / entry["gt"],
                              input_path / entry["conditions"] if entry.get("conditions") else None)
                    for entry in entries]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TruthError(f"{manifest_path}: not a benchmark manifest ({exc})") from None
    if not input_path.is_file():
        raise SourceError(f"{input_path}: no such file")
    if not truth_path.is_file():
        what = "a folder; for one clip, --truth names its gt.txt" if truth_path.is_dir() else "no such file"
        raise TruthError(f"{truth_path}: {what}")
    if conditions_path is None and (truth_path.parent / "conditions.csv").is_file():
        conditions_path = truth_path.parent / "conditions.csv"
    return [TruthClip(input_path.stem, input_path, truth_path, conditions_path)]


# ---------------------------------------------------------------- anonymizing
def streamd_camera(video: Path, method: str, profile: str | None, base: CameraConfig | None = None) -> CameraConfig:
    """The camera that anonymizes `video`: `base`'s detector, tracker and anonymizer settings (defaults
    without it), with `method` and, when given, the detector `profile`."""
    if base is None:
        detector = CenterFaceConfig() if profile is None else CenterFaceConfig(profile=profile)
        return CameraConfig(id="truth", source=FileSourceConfig(path=video), detector=detector,
                            anonymizer=AnonymizerConfig(method=method))
    fields = base.model_dump()
    fields.update(id="truth", source={"type": "file", "path": video}, outputs={}, reversible=None)
    fields["anonymizer"]["method"] = method
    if profile is not None:
        if fields["detector"]["type"] != "centerface":
            raise TruthError(f"--profile applies to the centerface detector, not {fields['detector']['type']}")
        fields["detector"]["profile"] = profile
    return CameraConfig.model_validate(fields)


def run_anonymizer(spec: RunSpec, clip: TruthClip, output: Path,
                   base: CameraConfig | None = None) -> tuple[int, float, str]:
    """Anonymize one clip with settings from `base` (see `streamd_camera`); (frames, wall seconds
    including start-up, what ran)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if spec.tool == "streamd":
        from streamd.oneshot import anonymize_video

        camera = streamd_camera(clip.video, spec.method, spec.profile, base)
        started = time.perf_counter()
        result = anonymize_video(clip.video, output, camera)
        elapsed = time.perf_counter() - started
        frames = result.stats.frames_out if result.stats is not None else 0
        return frames, elapsed, (f"streamd anonymize --method {spec.method} "
                                 f"(detector profile {camera.detector.profile if camera.detector.type == 'centerface' else 'n/a'})")
    if spec.tool == "deface":
        from streamd.bench import run_deface

        frames, upright_wh = probe_video(clip.video)
        camera = streamd_camera(clip.video, "blur", None)
        if upright_wh[1] > upright_wh[0]:
            # deface scales every frame to --scale as given: keep a portrait clip portrait
            detector = camera.detector
            camera = camera.model_copy(update={"detector": detector.model_copy(
                update={"input_width": detector.input_height, "input_height": detector.input_width})})
        outcome = run_deface(clip.video, output, camera, frames)
        command = str(outcome["command"]).replace(str(clip.video), "CLIP").replace(str(output), "OUTPUT")
        return frames, float(outcome["wall_s"]), f"deface {command}"
    raise TruthError(f"unknown tool {spec.tool!r}")


# ---------------------------------------------------------------- decoding
def probe_video(path: Path) -> tuple[int, tuple[int, int]]:
    """(frame count, upright width and height) of a video, by decoding it."""
    count, upright_wh = 0, (0, 0)
    for bgr in upright_frames(path):
        count += 1
        upright_wh = (bgr.shape[1], bgr.shape[0])
    return count, upright_wh


def upright_frames(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a video as upright BGR."""
    try:
        container = av.open(str(path))
    except (OSError, av.FFmpegError) as exc:
        raise SourceError(f"{path}: cannot open video: {exc}") from None
    with container:
        orienter = FrameOrienter("auto", str(path))
        for frame in container.decode(video=0):
            yield orienter.upright_bgr(frame)


def _match_shape(output_bgr: np.ndarray, original_bgr: np.ndarray, original_orienter_turn) -> np.ndarray:
    if output_bgr.shape == original_bgr.shape:
        return output_bgr
    if output_bgr.shape[:2] == original_bgr.shape[1::-1]:
        return original_orienter_turn(output_bgr)
    raise TruthError(f"output frame is {output_bgr.shape[1]}x{output_bgr.shape[0]}, input "
                     f"{original_bgr.shape[1]}x{original_bgr.shape[0]}")


def _original_frames(path: Path) -> Iterator[tuple[np.ndarray, object]]:
    """(upright BGR, function turning a stored-shape frame the same way) for every frame."""
    with av.open(str(path)) as container:
        orienter = FrameOrienter("auto", str(path))
        for frame in container.decode(video=0):
            orientation = orienter.orientation_of(frame)
            yield to_upright(frame.to_ndarray(format="bgr24"), orientation), (
                lambda bgr, orientation=orientation: to_upright(bgr, orientation))


def _crop(bgr: np.ndarray, box: GtBox) -> np.ndarray:
    height, width = bgr.shape[:2]
    pad_x, pad_y = box.width * CROP_CONTEXT, box.height * CROP_CONTEXT
    x0, y0 = max(int(box.left - pad_x), 0), max(int(box.top - pad_y), 0)
    x1, y1 = min(int(box.left + box.width + pad_x) + 1, width), min(int(box.top + box.height + pad_y) + 1, height)
    return bgr[y0:y1, x0:x1].copy()


# ---------------------------------------------------------------- scoring
def score_outputs(clip: TruthClip, outputs: dict[RunSpec, Path], results: dict[RunSpec, RunResult],
                  frame_step: int, min_visibility: float, miss_ssim: float = MISS_SSIM) -> int:
    """Score every `frame_step`-th frame (frames 1, 1+step, ...) of each output; returns frames scored."""
    truth = read_gt(clip.gt)
    tags = read_conditions(clip.conditions) if clip.conditions is not None else {}
    by_frame: dict[int, list[GtBox]] = defaultdict(list)
    for box in truth:
        by_frame[box.frame].append(box)
    specs = list(outputs)
    readers = [upright_frames(outputs[spec]) for spec in specs]
    scored = 0
    for index, (original, turn) in enumerate(_original_frames(clip.video)):
        frame_number = index + 1
        decoded = [next(reader, None) for reader in readers]
        if (frame_number - 1) % frame_step:
            continue
        original_grey = to_grey(original)
        boxes = by_frame.get(frame_number, [])
        scored += 1
        for spec, output in zip(specs, decoded):
            result = results[spec]
            if output is None:
                logger.warning("%s: %s output ends before frame %d", clip.name, spec.label, frame_number)
                continue
            output = _match_shape(output, original, turn)
            output_grey = to_grey(output)
            result.frames_scored += 1
            result.false_mask_shares.append(false_mask_share(original_grey, output_grey, [b.xyxy for b in boxes]))
            for box in boxes:
                if box.ignore or box.visibility < min_visibility:
                    continue
                score = score_instance(original_grey, output_grey, frame_number, box.id, box.xyxy, miss_ssim)
                if score is None:
                    continue
                record = InstanceRecord(clip.name, frame_number, box.id, box.width, box.visibility,
                                        tags.get((box.frame, box.id), frozenset()), score.ssim, score.missed)
                result.instances.append(record)
                if record.missed and len(result.missed_crops) < MAX_KEPT_CROPS:
                    result.missed_crops.append((record, _crop(original, box), _crop(output, box)))
    for reader in readers:
        reader.close()
    return scored


def run_truth_benchmark(clips: Sequence[TruthClip], specs: Sequence[RunSpec], work_dir: Path,
                        frame_step: int = DEFAULT_FRAME_STEP, min_visibility: float = DEFAULT_MIN_VISIBILITY,
                        progress=None, base_camera: CameraConfig | None = None) -> list[RunResult]:
    """Run every spec on every clip (outputs under `work_dir/outputs/`), then score them. streamd runs
    take their settings from `base_camera` when given."""
    if frame_step < 1:
        raise TruthError(f"--frame-step must be at least 1, got {frame_step}")
    if not 0.0 <= min_visibility <= 1.0:
        raise TruthError(f"--min-visibility must be within 0..1, got {min_visibility:g}")
    results = {spec: RunResult(spec) for spec in specs}
    for clip in clips:
        if not clip.video.is_file():
            raise SourceError(f"{clip.video}: no such file")
        read_gt(clip.gt)  # fail on bad ground truth before spending minutes anonymizing
        outputs: dict[RunSpec, Path] = {}
        for spec in specs:
            output = work_dir / "outputs" / clip.name / f"{spec.slug}.mp4"
            frames, wall_s, command = run_anonymizer(spec, clip, output, base_camera)
            result = results[spec]
            result.frames += frames
            result.wall_s += wall_s
            result.outputs.append(output)
            if command not in result.commands:
                result.commands.append(command)
            outputs[spec] = output
            logger.info("%s: %s: %d frames in %.1f s", clip.name, spec.label, frames, wall_s)
            if progress is not None:
                progress(f"{clip.name}: {spec.label} {frames} frames, {frames / wall_s:.1f} fps")
        score_outputs(clip, outputs, results, frame_step, min_visibility)
    return list(results.values())
