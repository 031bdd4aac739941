"""Face detector backends, chosen by the `type:` key of the detector config."""

from __future__ import annotations

from streamd.config import CenterFaceConfig, InsightFaceConfig
from streamd.detect.base import FaceDetector

__all__ = ["FaceDetector", "build_backend", "build_detector", "camera_detector"]


def build_detector(config: CenterFaceConfig | InsightFaceConfig) -> FaceDetector:
    """The detector for one stream: the backend `config.type` names, loaded, behind the pass schedule
    of `config.profile` (CenterFace)."""
    return camera_detector(build_backend(config), config)


def camera_detector(backend: FaceDetector, config: CenterFaceConfig | InsightFaceConfig) -> FaceDetector:
    """The per-stream front of a loaded backend (which may be shared between streams)."""
    if config.type == "centerface":
        from streamd.detect.schedule import ScheduledDetector

        return ScheduledDetector(backend, config)
    return backend


def build_backend(config: CenterFaceConfig | InsightFaceConfig) -> FaceDetector:
    """The model that `config.type` names, loaded and ready to run."""
    if config.type == "centerface":
        from streamd.detect.centerface import CenterFaceDetector

        return CenterFaceDetector(config)
    if config.type == "insightface":
        from streamd.detect.insightface_scrfd import InsightFaceDetector

        return InsightFaceDetector(config)
    raise ValueError(f"unknown detector type {config.type!r}")
