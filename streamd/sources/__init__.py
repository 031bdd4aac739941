"""Where frames come from: video files and RTSP cameras, turned upright (`orientation`)."""

from __future__ import annotations

from streamd.config import FileSourceConfig, RtspSourceConfig
from streamd.sources.base import FrameSource
from streamd.sources.files import FileVideoSource

__all__ = ["FileVideoSource", "FrameSource", "open_source"]


def open_source(config: FileSourceConfig | RtspSourceConfig, keep_yuv420: bool = False) -> FrameSource:
    """The source a camera's `source:` section describes; `keep_yuv420` hands on each frame's decoded
    planes too (`streamd.sources.planes`), for a camera that seals original faces."""
    if isinstance(config, FileSourceConfig):
        return FileVideoSource(config.path, loop=config.loop, realtime=config.realtime, rotation=config.rotation,
                               keep_yuv420=keep_yuv420)
    if isinstance(config, RtspSourceConfig):
        from streamd.sources.rtsp import RtspVideoSource

        return RtspVideoSource(config, keep_yuv420=keep_yuv420)
    raise TypeError(f"unknown source config {type(config).__name__}")
