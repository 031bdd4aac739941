"""The benchmark's scenes: who moves where, how large, how tilted, and what light and poles they meet.

Each scene is a pure description (functions of time in seconds); `hard_clip` draws it. Motion is
defined in absolute time, so a shorter clip shows the first part of the same scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamd.truth.faces import SourceFace

Pose = tuple[float, float, float, float]  # centre x, centre y, face box width (px), tilt (degrees)
SCENE_NAMES = ("sizes", "dark", "occlusion", "crowd", "phone")
LANDSCAPE_WH = (1280, 720)
PORTRAIT_WH = (720, 1280)
MIN_FACE_PX = 16.0
POLE_BGR = (52, 58, 66)


@dataclass(frozen=True)
class Actor:
    id: int
    face: SourceFace
    pose: Callable[[float], Pose]
    crowd: bool = False


@dataclass(frozen=True)
class Scene:
    """`resolution_wh` is the upright (displayed) size; `display_rotation` is the clockwise turn a player
    gives the stored frames (90 for a phone held upright), 0 for an ordinary clip."""

    name: str
    resolution_wh: tuple[int, int]
    actors: list[Actor]
    background_seed: int
    gain: Callable[[float], float] = lambda t: 1.0
    noise_sigma: Callable[[float], float] = lambda t: 0.0
    poles: Callable[[float], list[tuple[float, float]]] = field(default=lambda t: [])
    display_rotation: int = 0


def _log_size(low: float, high: float, period: float, phase: float) -> Callable[[float], float]:
    """Width sweeping geometrically between `low` and `high` px."""
    return lambda t: low * (high / low) ** (0.5 + 0.5 * math.sin(2 * math.pi * (t / period + phase)))


def _triangle(t: float, period: float, phase: float) -> float:
    """0 -> 1 -> 0 over one period."""
    u = (t / period + phase) % 1.0
    return 2 * u if u < 0.5 else 2 - 2 * u


def _clamped(face: SourceFace, width: float) -> float:
    return max(MIN_FACE_PX, min(width, face.max_width_px))


def _pick(faces: Sequence[SourceFace], count: int, rng: np.random.Generator,
          widths: Sequence[float] | None = None) -> list[SourceFace]:
    """`count` faces, each used about as often; with `widths`, the i-th face is one that may be drawn at
    least 80% of widths[i] wide when the split has one (low-resolution faces stay small)."""
    picked: list[SourceFace] = []
    uses = {id(face): 0 for face in faces}
    for index in range(count):
        wanted = 0.8 * widths[index] if widths is not None else 0.0
        fitting = [face for face in faces if face.max_width_px >= wanted]
        pool = fitting or [max(faces, key=lambda face: face.max_width_px)]
        fewest = min(uses[id(face)] for face in pool)
        least_used = [face for face in pool if uses[id(face)] == fewest]
        face = least_used[int(rng.integers(len(least_used)))]
        uses[id(face)] += 1
        picked.append(face)
    return picked


def _highs(ranges: Sequence[tuple[float, float]]) -> list[float]:
    return [high for _, high in ranges]


def _sizes(faces: Sequence[SourceFace]) -> Scene:
    """Faces from 16 to 200 px wide, tilting up to 35 degrees; two cross the frame fast (motion blur)."""
    rng = np.random.default_rng(101)
    width, height = LANDSCAPE_WH
    ranges = [(16, 60), (20, 100), (40, 200), (16, 40), (24, 140), (30, 200), (16, 28), (60, 180)]
    tilts = [0, 35, 20, -30, -35, 10, 25, -15]
    actors = []
    for index, (face, (low, high), tilt) in enumerate(zip(_pick(faces, len(ranges), rng, _highs(ranges)), ranges, tilts)):
        size = _log_size(low, high, rng.uniform(5, 9), rng.uniform(0, 1))
        column = (index % 4 + 0.5) / 4
        row = 0.28 if index < 4 else 0.72
        phase, tilt_period = rng.uniform(0, 1), rng.uniform(3, 6)
        fast = index in (3, 6)
        speed_period = rng.uniform(2.2, 3.0)

        def pose(t: float, face=face, size=size, column=column, row=row, phase=phase, tilt=tilt,
                 tilt_period=tilt_period, fast=fast, speed_period=speed_period) -> Pose:
            w = _clamped(face, size(t))
            if fast:
                cx = 60 + (width - 120) * _triangle(t, speed_period, phase)
            else:
                cx = width * column + 0.07 * width * math.sin(2 * math.pi * (t / 6 + phase))
            cy = height * row + 0.06 * height * math.cos(2 * math.pi * (t / 5 + phase))
            return cx, cy, w, tilt * math.sin(2 * math.pi * (t / tilt_period + phase))

        actors.append(Actor(index + 1, face, pose))
    return Scene("sizes", LANDSCAPE_WH, actors, background_seed=11)


def _dark(faces: Sequence[SourceFace]) -> Scene:
    """Lit, then a long dark stretch (gain 0.15-0.3 with sensor noise), then lit again."""
    rng = np.random.default_rng(202)
    width, height = LANDSCAPE_WH
    ranges = [(24, 60), (40, 140), (20, 48), (60, 160), (28, 90), (18, 36)]
    actors = []
    for index, (face, (low, high)) in enumerate(zip(_pick(faces, len(ranges), rng, _highs(ranges)), ranges)):
        size = _log_size(low, high, rng.uniform(5, 8), rng.uniform(0, 1))
        column = (index % 3 + 0.5) / 3
        row = 0.3 if index < 3 else 0.7
        phase, tilt = rng.uniform(0, 1), rng.uniform(-20, 20)

        def pose(t: float, face=face, size=size, column=column, row=row, phase=phase, tilt=tilt) -> Pose:
            cx = width * column + 0.1 * width * math.sin(2 * math.pi * (t / 7 + phase))
            cy = height * row + 0.05 * height * math.sin(2 * math.pi * (t / 4 + phase))
            return cx, cy, _clamped(face, size(t)), tilt * math.sin(2 * math.pi * (t / 5 + phase))

        actors.append(Actor(index + 1, face, pose))

    def gain(t: float) -> float:
        # full light for 0.5 s, down over 0.5 s, dark for 6 s (gain wandering in 0.15-0.3), up again
        dark = 0.225 + 0.075 * math.sin(2 * math.pi * t / 2.5)
        if t < 0.5 or t >= 7.5:
            return 1.0
        if t < 1.0:
            return 1.0 + (dark - 1.0) * (t - 0.5) / 0.5
        if t >= 7.0:
            return dark + (1.0 - dark) * (t - 7.0) / 0.5
        return dark

    def noise(t: float) -> float:
        return 7.0 * (1.0 - gain(t))

    return Scene("dark", LANDSCAPE_WH, actors, background_seed=22, gain=gain, noise_sigma=noise)


def _occlusion(faces: Sequence[SourceFace]) -> Scene:
    """Faces walking sideways while opaque poles sweep across them."""
    rng = np.random.default_rng(303)
    width, height = LANDSCAPE_WH
    ranges = [(40, 120), (30, 70), (60, 160), (24, 50), (50, 110), (36, 90)]
    actors = []
    for index, (face, (low, high)) in enumerate(zip(_pick(faces, len(ranges), rng, _highs(ranges)), ranges)):
        size = _log_size(low, high, rng.uniform(6, 9), rng.uniform(0, 1))
        row = (index % 3 + 0.5) / 3
        period, phase = rng.uniform(5, 8), rng.uniform(0, 1)

        def pose(t: float, face=face, size=size, row=row, period=period, phase=phase) -> Pose:
            cx = 100 + (width - 200) * _triangle(t, period, phase)
            return cx, height * row, _clamped(face, size(t)), 0.0

        actors.append(Actor(index + 1, face, pose))
    poles_spec = [(rng.uniform(40, 70), rng.uniform(1.5, 2.5), rng.uniform(0, 1)) for _ in range(3)]

    def poles(t: float) -> list[tuple[float, float]]:
        return [(-w + (width + w) * _triangle(t, period, phase), w) for w, period, phase in poles_spec]

    return Scene("occlusion", LANDSCAPE_WH, actors, background_seed=33, poles=poles)


def _crowd(faces: Sequence[SourceFace]) -> Scene:
    """A crowd of 8 to 15 small faces (16-40 px) swaying in place, some tilted."""
    rng = np.random.default_rng(404)
    width, height = LANDSCAPE_WH
    count = int(rng.integers(8, 16))
    columns = 5
    actors = []
    for index, face in enumerate(_pick(faces, count, rng, [40.0] * count)):
        base_w = rng.uniform(16, 40)
        cx0 = width * (0.15 + 0.7 * ((index % columns) + rng.uniform(-0.2, 0.2)) / (columns - 1))
        cy0 = height * (0.45 + 0.13 * (index // columns) + rng.uniform(-0.03, 0.03))
        phase, tilt = rng.uniform(0, 1), rng.choice([0.0, 0.0, 20.0, -25.0])

        def pose(t: float, face=face, base_w=base_w, cx0=cx0, cy0=cy0, phase=phase, tilt=tilt) -> Pose:
            sway = math.sin(2 * math.pi * (t / 3 + phase))
            return (cx0 + 12 * sway, cy0 + 4 * math.cos(2 * math.pi * (t / 2 + phase)),
                    _clamped(face, base_w * (1 + 0.1 * sway)), tilt + 8 * sway)

        actors.append(Actor(index + 1, face, pose, crowd=True))
    return Scene("crowd", LANDSCAPE_WH, actors, background_seed=44)


def _phone(faces: Sequence[SourceFace]) -> Scene:
    """A portrait phone clip: upright 720x1280, stored turned (display rotation 90)."""
    rng = np.random.default_rng(505)
    width, height = PORTRAIT_WH
    ranges = [(60, 200), (24, 60), (16, 36), (40, 120), (30, 90)]
    tilts = [10, -30, 0, 25, -15]
    actors = []
    for index, (face, (low, high), tilt) in enumerate(zip(_pick(faces, len(ranges), rng, _highs(ranges)), ranges, tilts)):
        size = _log_size(low, high, rng.uniform(5, 8), rng.uniform(0, 1))
        row = (index + 0.5) / len(ranges)
        phase = rng.uniform(0, 1)
        fast = index == 3

        def pose(t: float, face=face, size=size, row=row, phase=phase, tilt=tilt, fast=fast) -> Pose:
            if fast:
                cx = 80 + (width - 160) * _triangle(t, 1.8, phase)
            else:
                cx = width * (0.5 + 0.25 * math.sin(2 * math.pi * (t / 6 + phase)))
            cy = height * row + 30 * math.sin(2 * math.pi * (t / 4 + phase))
            return cx, cy, _clamped(face, size(t)), tilt * math.sin(2 * math.pi * (t / 4.5 + phase))

        actors.append(Actor(index + 1, face, pose))
    return Scene("phone", PORTRAIT_WH, actors, background_seed=55, display_rotation=90)


_BUILDERS: dict[str, Callable[[Sequence[SourceFace]], Scene]] = {
    "sizes": _sizes, "dark": _dark, "occlusion": _occlusion, "crowd": _crowd, "phone": _phone,
}


def build_scene(name: str, faces: Sequence[SourceFace]) -> Scene:
    return _BUILDERS[name](faces)
