"""The interface every per-face anonymizer implements (classical and neural alike)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from streamd.types import TrackedFace


class TrackSecrets(Protocol):
    """Per-track secret material a keyed anonymizer draws on (derived from the track's key)."""

    def password_bits(self, track_id: int, n_bits: int) -> np.ndarray:
        """(n_bits,) float32 0/1, the same for every call with the same track."""


class FaceAnonymizer(abc.ABC):
    """Replaces every given face in a frame.

    `apply` returns a new frame and never modifies its input. It raises on failure; the pipeline then
    fails closed (the frame is not published as it came in).
    """

    method: str
    #: True when the surrogate depends on a per-track secret (see `use_track_secrets`).
    keyed: bool = False

    @abc.abstractmethod
    def region_of(self, face: TrackedFace, frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
        """Integer xyxy region of the frame that `apply` may change for `face` (sealing saves it)."""

    def method_details(self) -> dict[str, object]:
        """What a reader needs to know about this method beyond its name (model, attributes)."""
        return {}

    def use_track_secrets(self, secrets: TrackSecrets) -> None:
        """Draw per-track secrets from `secrets` (the stream's key ring) instead of private ones.

        Methods that are not keyed have no use for secrets and keep none.
        """

    @abc.abstractmethod
    def apply(self, bgr: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
        """Return a copy of `bgr` with each face in `faces` replaced."""

    def start_track(self, track_id: int) -> None:
        """Called when a track begins (neural methods pick the track's secret here)."""

    def end_track(self, track_id: int) -> None:
        """Called when a track ends; forget its per-track state."""

    def close(self) -> None:
        """Release models or sessions."""
