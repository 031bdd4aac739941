"""Deterministic hard clips with exact ground truth: small, tilted, dark, blurred, occluded and crowded
faces, and a sideways phone clip, written as H.264 with MOTChallenge ground truth.

Layout of a benchmark folder (one entry per clip, MOTChallenge style):

    OUT/<split>-<scene>.mp4                  the clip
    OUT/<split>-<scene>/gt/gt.txt            frame,id,left,top,width,height,conf,class,visibility
    OUT/<split>-<scene>/gt/conditions.csv    frame,id,tags (tags joined by |)
    OUT/<split>-<scene>/seqinfo.ini          name, frame rate, length, size
    OUT/benchmark.json                       the clips, split, and how they were made

Boxes are in upright (displayed) pixels, also for the phone clip, whose frames are stored turned.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamd.errors import TruthError
from streamd.truth.faces import SPLITS, SourceFace, load_split_faces
from streamd.truth.mot import GtBox, write_conditions, write_gt
from streamd.truth.render import draw_poles, draw_sprite, low_light, textured_background
from streamd.truth.scenes import POLE_BGR, SCENE_NAMES, Scene, build_scene
from streamd.sinks.video_out import GENERATED_CLIP_ENCODING, VideoFileWriter

logger = logging.getLogger(__name__)

FPS = 25
DEFAULT_SECONDS = 4.0
CRF = 18
# The shutter is open for this share of the frame interval (motion blur length = speed x this).
SHUTTER_SHARE = 0.5
# Condition tags and their thresholds.
SMALL_PX = 32
TILTED_DEG = 15.0
DARK_GAIN = 0.4
BLUR_MIN_PX = 3.0
BLUR_MIN_SHARE = 0.12
OCCLUDED_BELOW = 0.95
# An instance with less than this share of its box inside the frame is marked ignore (conf 0).
MIN_INSIDE_SHARE = 0.3
POLE_LABEL = 10_000
BACKGROUND_LABEL = -1
TAGS = ("small", "tilted", "dark", "blur", "occluded", "crowd", "rotated-video", "clear")


@dataclass(frozen=True)
class RenderedFrame:
    index: int  # 1-based, as in gt.txt
    bgr: np.ndarray  # upright
    boxes: list[GtBox]
    tags: dict[tuple[int, int], frozenset[str]]


@dataclass(frozen=True)
class ClipTruth:
    name: str
    video: Path
    gt: Path
    conditions: Path
    frames: int
    resolution_wh: tuple[int, int]  # upright
    instances: int


def _instance_tags(scene: Scene, crowd: bool, width: float, angle: float, gain: float, blur_px: float,
                   visibility: float) -> frozenset[str]:
    tags = set()
    if width < SMALL_PX:
        tags.add("small")
    if abs(angle) >= TILTED_DEG:
        tags.add("tilted")
    if gain < DARK_GAIN:
        tags.add("dark")
    if blur_px >= max(BLUR_MIN_PX, BLUR_MIN_SHARE * width):
        tags.add("blur")
    if visibility < OCCLUDED_BELOW:
        tags.add("occluded")
    if crowd:
        tags.add("crowd")
    if scene.display_rotation:
        tags.add("rotated-video")
    return frozenset(tags or {"clear"})


def render_scene(scene: Scene, frame_count: int, fps: int = FPS) -> Iterator[RenderedFrame]:
    """Draw every frame of a scene (upright) with its ground truth."""
    width, height = scene.resolution_wh
    backdrop = textured_background(scene.resolution_wh, scene.background_seed)
    shutter_s = SHUTTER_SHARE / fps
    for index in range(frame_count):
        t = index / fps
        frame = backdrop.copy()
        owner = np.full((height, width), BACKGROUND_LABEL, np.int16)
        drawn = []
        for order, actor in enumerate(scene.actors):
            cx, cy, w, angle = actor.pose(t)
            px, py, _, _ = actor.pose(t - shutter_s)
            blur_xy = (cx - px, cy - py)
            box = draw_sprite(frame, actor.face.sprite, w, (cx, cy), angle, blur_xy, owner=owner, label=order)
            drawn.append((order, actor, box, w, angle, math.hypot(*blur_xy)))
        poles = scene.poles(t)
        if poles:
            draw_poles(frame, poles, POLE_BGR, owner=owner, label=POLE_LABEL)
        gain = scene.gain(t)
        if gain < 1.0 or scene.noise_sigma(t) > 0:
            frame = low_light(frame, gain, scene.noise_sigma(t), np.random.default_rng(scene.background_seed * 100_003 + index))
        boxes, tags = [], {}
        for order, actor, box, w, angle, blur_px in drawn:
            x0, y0, x1, y1 = (float(v) for v in box)
            area = (x1 - x0) * (y1 - y0)
            cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            inside = (cx1 - cx0) * (cy1 - cy0) / area
            ix0, iy0, ix1, iy1 = int(math.floor(cx0)), int(math.floor(cy0)), int(math.ceil(cx1)), int(math.ceil(cy1))
            cover = owner[iy0:iy1, ix0:ix1]
            hidden = float(np.count_nonzero(cover > order)) / max(cover.size, 1)
            visibility = max(0.0, min(1.0, inside * (1.0 - hidden)))
            gt = GtBox(index + 1, actor.id, cx0, cy0, cx1 - cx0, cy1 - cy0,
                       conf=1.0 if inside >= MIN_INSIDE_SHARE else 0.0, cls=1, visibility=round(visibility, 3))
            boxes.append(gt)
            tags[(gt.frame, gt.id)] = _instance_tags(scene, actor.crowd, w, angle, gain, blur_px, visibility)
        yield RenderedFrame(index + 1, frame, boxes, tags)


def _write_seqinfo(path: Path, name: str, frames: int, fps: int, resolution_wh: tuple[int, int]) -> None:
    path.write_text(
        "[Sequence]\n"
        f"name={name}\nimDir=../{name}.mp4\nframeRate={fps}\nseqLength={frames}\n"
        f"imWidth={resolution_wh[0]}\nimHeight={resolution_wh[1]}\nimExt=.mp4\n"
    )


def write_clip(scene: Scene, out_dir: Path, name: str, seconds: float, fps: int = FPS) -> ClipTruth:
    """Render a scene into `out_dir/<name>.mp4` with its gt.txt, conditions.csv and seqinfo.ini."""
    frame_count = max(1, int(round(seconds * fps)))
    video = out_dir / f"{name}.mp4"
    gt_dir = out_dir / name / "gt"
    gt_dir.mkdir(parents=True, exist_ok=True)
    boxes: list[GtBox] = []
    tags: dict[tuple[int, int], frozenset[str]] = {}

    def upright_frames() -> Iterator[np.ndarray]:
        for rendered in render_scene(scene, frame_count, fps):
            boxes.extend(rendered.boxes)
            tags.update(rendered.tags)
            yield rendered.bgr

    if scene.display_rotation:
        from streamd.sources.orientation import write_rotated_clip

        write_rotated_clip(upright_frames(), video, scene.display_rotation, fps=fps, crf=CRF)
    else:
        writer = VideoFileWriter(video, scene.resolution_wh, Fraction(1, fps), Fraction(fps), crf=CRF,
                                 **GENERATED_CLIP_ENCODING)
        try:
            for index, frame in enumerate(upright_frames()):
                writer.write(frame, pts=index)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    write_gt(gt_dir / "gt.txt", boxes)
    write_conditions(gt_dir / "conditions.csv", tags)
    _write_seqinfo(out_dir / name / "seqinfo.ini", name, frame_count, fps, scene.resolution_wh)
    logger.info("%s: %d frames, %d face instances", video, frame_count, len(boxes))
    return ClipTruth(name, video, gt_dir / "gt.txt", gt_dir / "conditions.csv", frame_count,
                     scene.resolution_wh, len(boxes))


def build_benchmark(out_dir: Path, split: str = "tune", seconds: float = DEFAULT_SECONDS,
                    scenes: Sequence[str] | None = None, faces: Sequence[SourceFace] | None = None) -> list[ClipTruth]:
    """Write every scene of a split into `out_dir`, plus benchmark.json listing them."""
    if split not in SPLITS:
        raise TruthError(f"unknown split {split!r} (choose {', '.join(SPLITS)})")
    scenes = list(scenes or SCENE_NAMES)
    unknown = [name for name in scenes if name not in SCENE_NAMES]
    if unknown:
        raise TruthError(f"unknown scene {unknown[0]!r} (choose {', '.join(SCENE_NAMES)})")
    if seconds <= 0:
        raise TruthError(f"--seconds must be positive, got {seconds:g}")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TruthError(f"{out_dir}: cannot create the benchmark folder: {exc.strerror}") from None
    faces = list(faces) if faces is not None else load_split_faces(split)
    clips = [write_clip(build_scene(scene, faces), out_dir, f"{split}-{scene}", seconds) for scene in scenes]
    manifest = {
        "split": split,
        "faces": [face.name for face in faces],
        "fps": FPS,
        "seconds": seconds,
        "clips": [
            {"name": clip.name, "video": clip.video.name, "gt": str(clip.gt.relative_to(out_dir)),
             "conditions": str(clip.conditions.relative_to(out_dir)), "frames": clip.frames,
             "resolution_wh": list(clip.resolution_wh), "instances": clip.instances}
            for clip in clips
        ],
    }
    (out_dir / "benchmark.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return clips
