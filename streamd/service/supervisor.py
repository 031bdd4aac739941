"""One camera under supervision: its pipeline runs in a worker thread that restarts it when it fails.

A failure of one camera (an exception from any stage, a source that cannot be opened, an output that
cannot be bound) restarts that camera after a delay that doubles with every failure in a row, from
`service.restart_initial_s` up to `service.restart_max_s`; a camera that ran `healthy_after_s`
without failing starts again from the shortest delay. The other cameras are not touched.

The worker also watches its own progress (`check`, called by the service once per status tick): a
camera whose source delivers (a connected camera, a file) but whose pipeline has put out no frame
for `stall_timeout_s` is asked to stop and is restarted. If it does not stop within
`stop_timeout_s`, something is wedged beyond what a thread can undo, and `check` reports it
unhealthy: the service then stops feeding the systemd watchdog, and systemd restarts the process.

Counters are cumulative over restarts (Prometheus counters never go back): the pipeline's
`PipelineStats` lives as long as the worker, and the counters of a source or publisher that is
closed at a restart are added to a base kept here.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ContextManager

from streamd.config import CameraConfig, ServiceConfig
from streamd.sources.files import FileVideoSource
from streamd.pipeline import StreamPipeline
from streamd.sources.rtsp import RtspVideoSource
from streamd.stats import LatencyHistogram, PipelineStats
from streamd.sinks.zmq_sink import ZmqSink

logger = logging.getLogger(__name__)

#: Seconds of frame counts behind the reported frame rate.
FPS_WINDOW_S = 5.0

#: Counters read from the source and the publisher of the current run (see `_run_counters`).
RUN_COUNTERS = (
    "decode_errors",
    "reconnects",
    "disconnects",
    "connect_failures",
    "publish_dropped",
    "publish_events_dropped",
    "published",
)

StreamOpener = Callable[[CameraConfig, PipelineStats], ContextManager[StreamPipeline]]


def open_camera_stream(camera: CameraConfig, stats: PipelineStats) -> ContextManager[StreamPipeline]:
    """The default opener: `streamd.app.open_stream` with the worker's long-lived stats."""
    from streamd.app import open_stream

    return open_stream(camera, stats=stats)


class CameraState:
    """Names of the states a camera worker reports (the `state` label in metrics)."""

    STARTING = "starting"  # loading models, opening the source and outputs
    UP = "up"  # frames flow
    DOWN = "down"  # running, but the live source is not connected (reconnecting)
    RESTARTING = "restarting"  # the pipeline failed; waiting before the next attempt
    STOPPING = "stopping"
    STOPPED = "stopped"
    FINISHED = "finished"  # a file source reached its end
    FAILED = "failed"  # a permanent error (a missing file, a setting that cannot work): not restarted

    ALL = (STARTING, UP, DOWN, RESTARTING, STOPPING, STOPPED, FINISHED, FAILED)
    #: States in which the worker's thread has ended.
    ENDED = (STOPPED, FINISHED, FAILED)


@dataclass(frozen=True)
class CameraSnapshot:
    """Everything the metrics endpoint and STATUS= say about one camera, at one moment."""

    camera_id: str
    source_type: str
    state: str
    up: bool
    healthy: bool
    fps: float
    frames_in: int
    frames_out: int
    frames_masked: int
    faces: int
    faces_predicted: int
    tracks_started: int
    drops: dict[str, int]
    errors: dict[str, int]
    restarts: int
    stalls: int
    latency: LatencyHistogram
    counters: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None


class CameraWorker:
    """Runs `camera` in a thread named camera-<id>, restarting it on failure until `stop()`."""

    def __init__(self, camera: CameraConfig, service: ServiceConfig, opener: StreamOpener = open_camera_stream) -> None:
        self.camera = camera
        self.service = service
        self.stats = PipelineStats()
        self.restarts = 0
        self.stalls = 0
        self.last_error: str | None = None
        self.state = CameraState.STARTING
        self.opened = threading.Event()  # the first attempt has opened its stream, or failed
        self._opener = opener
        self._log = logger.getChild(camera.id)
        self._stop = threading.Event()
        self._pipeline: StreamPipeline | None = None
        self._pipeline_lock = threading.Lock()
        self._source_up = False
        self._base_counters: collections.Counter[str] = collections.Counter()
        self._frames_out_seen = 0
        self._progress_at = time.monotonic()
        self._state_since = time.monotonic()
        self._stall_stop_at: float | None = None
        self._stall_restart = False
        self._fps_samples: collections.deque[tuple[float, int]] = collections.deque()
        self._fps_lock = threading.Lock()  # check() appends from the service thread, metrics read from theirs
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera.id}", daemon=True)

    # ------------------------------------------------------------ control
    def start(self) -> None:
        self._thread.start()

    def _stop_pipeline(self) -> None:
        """Ask the current pipeline to end; a live source is closed too, as it may be waiting for its camera."""
        with self._pipeline_lock:
            pipeline = self._pipeline
            if pipeline is not None:
                pipeline.stop()
                if pipeline.source.is_live:
                    pipeline.source.close()

    def stop(self) -> None:
        """Ask the camera to finish its outputs and end; returns at once (see `join`)."""
        self._stop.set()
        if self.state not in CameraState.ENDED:
            self._set_state(CameraState.STOPPING)
        self._stop_pipeline()

    def join(self, timeout_s: float) -> bool:
        """Wait for the worker thread; True when it has ended."""
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return self.state == CameraState.FINISHED

    # ------------------------------------------------------------ worker thread
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self._log.debug("state %s -> %s", self.state, state)
            self.state = state
            self._state_since = time.monotonic()

    def _on_source_state(self, pipeline: StreamPipeline, up: bool, reason: str) -> None:
        self._source_up = up
        if self.state in (CameraState.UP, CameraState.DOWN):
            self._set_state(CameraState.UP if up else CameraState.DOWN)
        pipeline.report_source_state(up, reason)

    def _attach(self, pipeline: StreamPipeline) -> None:
        source = pipeline.source
        if isinstance(source, RtspVideoSource):
            self._source_up = False
            source.on_state = lambda up, reason: self._on_source_state(pipeline, up, reason)
            initial_state = CameraState.DOWN
        else:
            self._source_up = True
            initial_state = CameraState.UP
        with self._pipeline_lock:
            self._pipeline = pipeline
        if self._stop.is_set():
            self._stop_pipeline()
        self._progress_at = time.monotonic()
        if not self._stop.is_set():
            self._set_state(initial_state)

    def _detach(self) -> None:
        with self._pipeline_lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            self._base_counters.update(self._run_counters(pipeline))
        self._source_up = False

    @staticmethod
    def _run_counters(pipeline: StreamPipeline) -> dict[str, int]:
        counters = dict.fromkeys(RUN_COUNTERS, 0)
        source = pipeline.source
        if isinstance(source, RtspVideoSource):
            counters.update(decode_errors=source.decode_errors, reconnects=source.reconnects,
                            disconnects=source.disconnects, connect_failures=source.connect_failures)
        elif isinstance(source, FileVideoSource):
            counters["decode_errors"] = source.decode_errors
        for sink in pipeline.sinks:
            if isinstance(sink, ZmqSink):
                counters["publish_dropped"] += sink.publisher.dropped
                counters["publish_events_dropped"] += sink.publisher.events_dropped
                counters["published"] += sink.publisher.sent
        return counters

    def _run(self) -> None:
        failures_in_row = 0
        while not self._stop.is_set():
            self._set_state(CameraState.STARTING)
            attempt_started = time.monotonic()
            self._stall_restart = False
            failure: str | None = None
            try:
                with self._opener(self.camera, self.stats) as pipeline:
                    self._attach(pipeline)
                    self.opened.set()
                    pipeline.run()
            except Exception as exc:  # one camera's failure restarts that camera only
                failure = f"{type(exc).__name__}: {exc}"
                if getattr(exc, "permanent", False) and not self._stop.is_set():
                    self.last_error = str(exc)
                    self._log.error("camera %s failed: %s; not restarting it (retrying cannot help: fix the "
                                    "config or the file, then restart the service)", self.camera.id, exc)
                    self._set_state(CameraState.FAILED)
                    return
            finally:
                self._detach()
                self.opened.set()
            if self._stop.is_set():
                break
            if failure is None and not self._stall_restart and self.camera.source.type != "rtsp":
                self._log.info("camera %s finished: %d frames out", self.camera.id, self.stats.frames_out)
                self._set_state(CameraState.FINISHED)
                return
            if failure is None:
                failure = "stalled, restarted" if self._stall_restart else "stream ended"
            self.last_error = failure
            if time.monotonic() - attempt_started >= self.service.healthy_after_s:
                failures_in_row = 0
            failures_in_row += 1
            delay_s = min(self.service.restart_max_s, self.service.restart_initial_s * 2.0 ** (failures_in_row - 1))
            self._log.error("camera %s failed (%s); restarting in %.1f s", self.camera.id, failure, delay_s)
            self._set_state(CameraState.RESTARTING)
            if self._stop.wait(delay_s):
                break
            self.restarts += 1
        self._set_state(CameraState.STOPPED)

    # ------------------------------------------------------------ observation (service thread)
    def check(self, now: float | None = None) -> bool:
        """Update progress and the frame rate; False when the camera is wedged (see module doc)."""
        now = time.monotonic() if now is None else now
        frames_out = self.stats.frames_out
        with self._fps_lock:
            self._fps_samples.append((now, frames_out))
            while len(self._fps_samples) > 2 and now - self._fps_samples[0][0] > FPS_WINDOW_S:
                self._fps_samples.popleft()
        if frames_out != self._frames_out_seen or self.state != CameraState.UP:
            self._frames_out_seen = frames_out
            self._progress_at = now
            self._stall_stop_at = None
        if not self._thread.is_alive():
            # A failed camera is not wedged (restarting the process cannot help); its state says it is down.
            return self.state in CameraState.ENDED
        if self.state == CameraState.STARTING and now - self._state_since > self.service.stall_timeout_s:
            self._log.error("camera %s has been starting for %.0f s", self.camera.id, now - self._state_since)
            return False
        if self.state == CameraState.UP and now - self._progress_at > self.service.stall_timeout_s:
            if self._stall_stop_at is None:
                self._stall_stop_at = now
                self.stalls += 1
                self._stall_restart = True
                self._log.error("camera %s put out no frame for %.0f s; restarting it",
                                self.camera.id, now - self._progress_at)
                self._stop_pipeline()
            elif now - self._stall_stop_at > self.service.stop_timeout_s:
                return False
        return True

    def fps(self) -> float:
        with self._fps_lock:
            if len(self._fps_samples) < 2:
                return 0.0
            (first_t, first_count), (last_t, last_count) = self._fps_samples[0], self._fps_samples[-1]
        return (last_count - first_count) / (last_t - first_t) if last_t > first_t else 0.0

    def snapshot(self, healthy: bool = True) -> CameraSnapshot:
        counters = collections.Counter(self._base_counters)
        with self._pipeline_lock:
            pipeline = self._pipeline
        if pipeline is not None:
            counters.update(self._run_counters(pipeline))
        stats = self.stats.snapshot()
        return CameraSnapshot(
            camera_id=self.camera.id,
            source_type=self.camera.source.type,
            state=self.state,
            up=self.state == CameraState.UP,
            healthy=healthy,
            fps=self.fps(),
            frames_in=int(stats["frames_in"]),
            frames_out=int(stats["frames_out"]),
            frames_masked=int(stats["frames_masked"]),
            faces=int(stats["faces_out"]),
            faces_predicted=int(stats["faces_predicted"]),
            tracks_started=int(stats["tracks_started"]),
            drops=dict(stats["drops"]),
            errors=dict(stats["errors"]),
            restarts=self.restarts,
            stalls=self.stalls,
            latency=self.stats.latency_histogram(),
            counters={name: counters[name] for name in RUN_COUNTERS},
            last_error=self.last_error,
        )


def stop_workers(workers: list[CameraWorker], timeout_s: float) -> list[str]:
    """Stop every worker at once and wait up to `timeout_s` in all; the ids of those still running."""
    for worker in workers:
        worker.stop()
    deadline = time.monotonic() + timeout_s
    stuck = []
    for worker in workers:
        if not worker.join(max(0.0, deadline - time.monotonic())):
            stuck.append(worker.camera.id)
    return stuck

