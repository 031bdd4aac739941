"""The interface every per-face anonymizer implements (classical and neural alike)."""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from streamd.types import TrackedFace


class FaceAnonymizer(abc.ABC):
    """Replaces every given face in a frame.

    `apply` returns a new frame and never modifies its input. It raises on failure; the pipeline then
    fails closed (the frame is not published as it came in).
    """

    method: str

    @abc.abstractmethod
    def apply(self, bgr: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
        """Return a copy of `bgr` with each face in `faces` replaced."""

    def start_track(self, track_id: int) -> None:
        """Called when a track begins (neural methods pick the track's secret here)."""

    def end_track(self, track_id: int) -> None:
        """Called when a track ends; forget its per-track state."""

    def close(self) -> None:
        """Release models or sessions."""
