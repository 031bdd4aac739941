"""Face detector backends, chosen by the `type:` key of the detector config."""

from __future__ import annotations

from streamd.config import CenterFaceConfig, InsightFaceConfig
from streamd.detect.base import FaceDetector

__all__ = ["FaceDetector", "build_detector"]


def build_detector(config: CenterFaceConfig | InsightFaceConfig) -> FaceDetector:
    """The detector backend that `config.type` names, loaded and ready to run."""
    if config.type == "centerface":
        from streamd.detect.centerface import CenterFaceDetector

        return CenterFaceDetector(config)
    if config.type == "insightface":
        from streamd.detect.insightface_scrfd import InsightFaceDetector

        return InsightFaceDetector(config)
    raise ValueError(f"unknown detector type {config.type!r}")
