"""Where frames come from: video files and RTSP cameras, turned upright (`orientation`)."""

from __future__ import annotations

from streamd.config import FileSourceConfig, RtspSourceConfig
from streamd.sources.base import FrameSource
from streamd.sources.files import FileVideoSource

__all__ = ["FileVideoSource", "FrameSource", "open_source"]


def open_source(config: FileSourceConfig | RtspSourceConfig) -> FrameSource:
    """The source a camera's `source:` section describes."""
    if isinstance(config, FileSourceConfig):
        return FileVideoSource(config.path, loop=config.loop, realtime=config.realtime, rotation=config.rotation)
    if isinstance(config, RtspSourceConfig):
        from streamd.sources.rtsp import RtspVideoSource

        return RtspVideoSource(config)
    raise TypeError(f"unknown source config {type(config).__name__}")
