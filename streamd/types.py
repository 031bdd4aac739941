"""Typed containers passed between pipeline stages.

Arrays are validated on construction so a wrong shape fails where it is made, not three stages later.
An empty detection set is a (0, 4) box array, never None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class Yuv420Planes:
    """A decoded frame's own yuv420p planes (limited range), turned upright like its BGR pixels: luma
    H x W and two chroma planes H/2 x W/2 (width and height even). They may be views into the decoder's
    picture, so they are read, never written into."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    def __post_init__(self) -> None:
        height, width = self.y.shape[:2] if self.y.ndim == 2 else (0, 0)
        if self.y.ndim != 2 or height % 2 or width % 2 or height == 0 or width == 0:
            raise ValueError(f"Yuv420Planes.y must be a 2-D plane of even width and height, got {self.y.shape}")
        for name, plane in (("u", self.u), ("v", self.v)):
            if plane.shape != (height // 2, width // 2):
                raise ValueError(f"Yuv420Planes.{name} must be {height // 2}x{width // 2} for a {height}x{width} "
                                 f"luma plane, got {plane.shape}")
        if any(plane.dtype != np.uint8 for plane in (self.y, self.u, self.v)):
            raise ValueError("Yuv420Planes planes must be uint8")


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: BGR pixels plus its position in the stream, and, when the source was asked to
    keep them (a camera that seals original faces), the decoded yuv420p planes the BGR pixels came from."""

    bgr: np.ndarray
    index: int
    pts: int | None
    time_base: Fraction | None
    wallclock: float
    yuv420: Yuv420Planes | None = None

    def __post_init__(self) -> None:
        if self.bgr.ndim != 3 or self.bgr.shape[2] != 3 or self.bgr.dtype != np.uint8:
            raise ValueError(f"VideoFrame.bgr must be HxWx3 uint8, got {self.bgr.shape} {self.bgr.dtype}")
        if self.yuv420 is not None and self.yuv420.y.shape != self.bgr.shape[:2]:
            raise ValueError(f"VideoFrame.yuv420 luma is {self.yuv420.y.shape}, the BGR pixels {self.bgr.shape[:2]}")

    @property
    def resolution_wh(self) -> tuple[int, int]:
        return int(self.bgr.shape[1]), int(self.bgr.shape[0])

    @property
    def seconds(self) -> float | None:
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)


@dataclass(frozen=True)
class Detections:
    """Faces found in one frame: boxes (N, 4) xyxy pixels, landmarks (N, 5, 2), scores (N,)."""

    xyxy: np.ndarray
    kps5: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        n = self.xyxy.shape[0]
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"Detections.xyxy must be (N, 4), got {self.xyxy.shape}")
        if self.kps5.shape != (n, 5, 2):
            raise ValueError(f"Detections.kps5 must be ({n}, 5, 2), got {self.kps5.shape}")
        if self.scores.shape != (n,):
            raise ValueError(f"Detections.scores must be ({n},), got {self.scores.shape}")

    @classmethod
    def empty(cls) -> "Detections":
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            kps5=np.zeros((0, 5, 2), np.float32),
            scores=np.zeros((0,), np.float32),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])


@dataclass(frozen=True)
class TrackedFace:
    """A face the tracker holds in this frame.

    `detected` is False when the box is a prediction because the detector missed the face in this
    frame; such faces are masked all the same.
    """

    track_id: int
    xyxy: np.ndarray
    kps5: np.ndarray
    score: float
    detected: bool
    age_frames: int

    def __post_init__(self) -> None:
        if self.xyxy.shape != (4,):
            raise ValueError(f"TrackedFace.xyxy must be (4,), got {self.xyxy.shape}")
        if self.kps5.shape != (5, 2):
            raise ValueError(f"TrackedFace.kps5 must be (5, 2), got {self.kps5.shape}")

    @property
    def area(self) -> float:
        w = max(0.0, float(self.xyxy[2] - self.xyxy[0]))
        h = max(0.0, float(self.xyxy[3] - self.xyxy[1]))
        return w * h


@dataclass(frozen=True)
class TrackUpdate:
    """What the tracker reports for one frame: the faces to mask and which tracks began or ended."""

    faces: list[TrackedFace]
    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)


@dataclass
class AnonymizedFrame:
    """A frame after anonymization, ready for the sinks.

    `status` is "ok", or "masked" when processing failed and the whole frame was blanked (fail closed).
    """

    frame: VideoFrame
    bgr: np.ndarray
    faces: list[TrackedFace]
    method: str
    status: str = "ok"
    method_details: dict[str, object] = field(default_factory=dict)
    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    extras: dict[str, object] = field(default_factory=dict)
