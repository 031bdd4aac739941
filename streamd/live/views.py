"""The live feeds of all cameras of a service, kept across pipeline restarts and config reloads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import ContextManager

from streamd.config import CameraConfig, LiveOutputConfig
from streamd.live.feed import LiveFeed
from streamd.live.hls import HlsStream
from streamd.live.sink import LiveSink
from streamd.pipeline import StreamPipeline
from streamd.stats import PipelineStats
from streamd.service.supervisor import StreamOpener


@contextlib.contextmanager
def _with_live_sink(opened: ContextManager[StreamPipeline], feed: LiveFeed | None) -> Iterator[StreamPipeline]:
    with opened as pipeline:
        if feed is not None:
            pipeline.sinks.append(LiveSink(feed))
        yield pipeline


class LiveViews:
    """One `LiveFeed` (and `HlsStream` when HLS is on) per camera with `outputs.live`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._configs: dict[str, LiveOutputConfig] = {}
        self._feeds: dict[str, LiveFeed] = {}
        self._hls: dict[str, HlsStream] = {}
        self.closed = False

    def configure(self, cameras: Sequence[CameraConfig]) -> None:
        """Make the feeds match `cameras`: new ones added, changed ones replaced, others closed."""
        wanted = {camera.id: camera.outputs.live for camera in cameras if camera.outputs.live is not None}
        with self._lock:
            for camera_id in list(self._feeds):
                if wanted.get(camera_id) != self._configs[camera_id]:
                    self._drop(camera_id)
            for camera_id, config in wanted.items():
                if camera_id not in self._feeds:
                    feed = LiveFeed(camera_id, config.max_width, config.jpeg_quality)
                    self._configs[camera_id] = config
                    self._feeds[camera_id] = feed
                    if config.hls:
                        self._hls[camera_id] = HlsStream(feed, config)

    def _drop(self, camera_id: str) -> None:
        self._feeds.pop(camera_id).close()
        self._configs.pop(camera_id)
        hls = self._hls.pop(camera_id, None)
        if hls is not None:
            hls.close()

    def config(self, camera_id: str) -> LiveOutputConfig | None:
        return self._configs.get(camera_id)

    def feed(self, camera_id: str) -> LiveFeed | None:
        return self._feeds.get(camera_id)

    def hls(self, camera_id: str) -> HlsStream | None:
        return self._hls.get(camera_id)

    def wrap(self, opener: StreamOpener) -> StreamOpener:
        """An opener that adds a `LiveSink` to the pipeline of each camera with a live view."""

        def open_with_live(camera: CameraConfig, stats: PipelineStats) -> ContextManager[StreamPipeline]:
            return _with_live_sink(opener(camera, stats), self.feed(camera.id))

        return open_with_live

    def close(self) -> None:
        """End every viewer's stream and stop HLS encoding."""
        with self._lock:
            self.closed = True
            for camera_id in list(self._feeds):
                self._drop(camera_id)
