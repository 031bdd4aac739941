"""Wiring: turn one camera's configuration into a running pipeline and release everything after."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from streamd.anonymize import build_anonymizer
from streamd.config import CameraConfig
from streamd.detect import build_detector
from streamd.detect.shared import SharedDetectorPool
from streamd.sinks.file_sink import VideoFileSink
from streamd.sources import FrameSource, open_source
from streamd.pipeline import StreamPipeline
from streamd.protocol import new_stream_epoch
from streamd.reversible.sealing.stream_sealer import build_stream_sealer
from streamd.sinks.base import FrameSink
from streamd.stats import PipelineStats
from streamd.types import AnonymizedFrame

logger = logging.getLogger(__name__)


def build_sinks(camera: CameraConfig, source: FrameSource, stream_epoch: str | None = None) -> list[FrameSink]:
    """The sinks of `camera`; a reversible camera's file output is written in the recording format."""
    sinks: list[FrameSink] = []
    if camera.outputs.file is not None and camera.reversible is not None:
        from streamd.reversible.keys.host_keys import default_host_key_ref
        from streamd.reversible.recording.recording_format import RecordingFileSink

        sinks.append(RecordingFileSink(camera.outputs.file, camera.id, stream_epoch or new_stream_epoch(), source,
                                       host_key_ref=camera.reversible.host_key or default_host_key_ref()))
    elif camera.outputs.file is not None:
        sinks.append(VideoFileSink(camera.outputs.file, source))
    if camera.outputs.zmq is not None:
        from streamd.sinks.zmq_sink import ZmqSink

        sinks.append(ZmqSink(camera.outputs.zmq, camera.id, stream_epoch=stream_epoch))
    return sinks


@contextlib.contextmanager
def open_stream(
    camera: CameraConfig,
    on_frame: Callable[[AnonymizedFrame], None] | None = None,
    extra_sinks: list[FrameSink] | None = None,
    stats: PipelineStats | None = None,
    detector_pool: SharedDetectorPool | None = None,
) -> Iterator[StreamPipeline]:
    """Open source, detector, anonymizer and sinks for `camera`; close them all on exit.

    With `detector_pool`, the camera uses the pool's detector for its configuration (shared with the
    other cameras of the same configuration, frames batched) instead of a detector of its own.
    The model and the source are opened before any output, so a missing model or an unreadable
    input fails before anything is written.
    """
    with contextlib.ExitStack() as stack:
        if detector_pool is not None:
            detector = detector_pool.acquire(camera.detector)
            stack.callback(detector_pool.release, camera.detector)
        else:
            detector = build_detector(camera.detector)
            stack.callback(detector.close)
        anonymizer = build_anonymizer(camera.anonymizer)
        stack.callback(anonymizer.close)
        stream_epoch = new_stream_epoch()
        sealer = build_stream_sealer(camera, stream_epoch, anonymizer.region_of)
        if sealer is not None and anonymizer.keyed:
            anonymizer.use_track_secrets(sealer)
        source = open_source(camera.source, keep_yuv420=sealer is not None and sealer.sealed_payloads)
        stack.callback(source.close)
        sinks = build_sinks(camera, source, stream_epoch) + list(extra_sinks or [])
        for sink in sinks:
            closer = getattr(sink, "close", None)
            if closer is not None:
                stack.callback(closer)
        yield StreamPipeline(
            camera, source, detector, anonymizer, sinks, stats=stats, on_frame=on_frame, sealer=sealer
        )
