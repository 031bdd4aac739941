"""The long-running service behind `streamd run`: many cameras, systemd, signals, metrics.

Each camera runs under a `CameraWorker` (its own threads, restarted on failure; see
`streamd.service.supervisor`). The main thread owns everything else, waking once per
`service.status_interval_s` (and at least twice per watchdog period):

- systemd: READY=1 once every camera's first start has been tried, WATCHDOG=1 while every camera
  is healthy (a wedged camera stops the pings, and systemd restarts the process), STATUS= with the
  cameras up and the total frame rate, STOPPING=1 when shutting down.
- signals: SIGTERM and SIGINT stop every camera so that outputs are finished (file segments closed,
  ZeroMQ sockets closed with their linger); SIGHUP reloads the camera list from the config file:
  new cameras start, removed ones stop, changed ones restart, unchanged ones are not touched.
- metrics: the Prometheus endpoint of `streamd.service.metrics`, /healthz judged by `streamd.service.health`, and
  the live view of `streamd.live` on the same HTTP server.

Signal handlers only set flags; all work happens in the main loop.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import replace
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ContextManager

from streamd import __version__
from streamd.config import CameraConfig, StreamdConfig, load_config
from streamd.detect.shared import SharedDetectorPool
from streamd.errors import ConfigError, StreamdError
from streamd.service.health import HealthMonitor, health_summary
from streamd.live.routes import LiveRoutes
from streamd.live.views import LiveViews
from streamd.service.metrics import MetricsServer, ServiceSnapshot, render_metrics
from streamd.pipeline import StreamPipeline
from streamd.service.sdnotify import SystemdNotifier
from streamd.stats import PipelineStats
from streamd.service.supervisor import CameraSnapshot, CameraState, CameraWorker, StreamOpener, open_camera_stream, stop_workers

logger = logging.getLogger(__name__)


def select_cameras(config: StreamdConfig, camera_ids: Sequence[str] | None, config_name: str) -> list[CameraConfig]:
    """The cameras of `config` to run: all, or those named in `camera_ids` (all must exist)."""
    if not camera_ids:
        return list(config.cameras)
    known = {camera.id for camera in config.cameras}
    missing = [camera_id for camera_id in camera_ids if camera_id not in known]
    if missing:
        raise StreamdError(f"no camera named {', '.join(missing)} in {config_name}")
    return [camera for camera in config.cameras if camera.id in camera_ids]


def status_line(cameras: Sequence[CameraSnapshot]) -> str:
    """The STATUS= text: cameras up, total frame rate, and the cameras that are not up."""
    up = [camera for camera in cameras if camera.up]
    fps = sum(camera.fps for camera in cameras)
    line = f"{len(up)}/{len(cameras)} cameras up, {fps:.1f} fps"
    not_up = [f"{camera.camera_id} {camera.state}" for camera in cameras if not camera.up]
    if not_up:
        line += f" ({', '.join(not_up)})"
    return line


def shared_detector_opener(pool: SharedDetectorPool) -> StreamOpener:
    """An opener whose cameras take their detector from `pool` (frames batched across cameras)."""
    from streamd.app import open_stream

    def open_with_pool(camera: CameraConfig, stats: PipelineStats) -> ContextManager[StreamPipeline]:
        return open_stream(camera, stats=stats, detector_pool=pool)

    return open_with_pool


class StreamService:
    """Runs the cameras of a config until stopped; see the module doc."""

    def __init__(
        self,
        config: StreamdConfig,
        config_path: Path | None = None,
        camera_ids: Sequence[str] | None = None,
        opener: StreamOpener = open_camera_stream,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.camera_ids = list(camera_ids) if camera_ids else None
        self.notifier = SystemdNotifier(os.environ if environ is None else environ)
        self.workers: dict[str, CameraWorker] = {}
        self.config_reloads: Counter[str] = Counter()
        self.metrics_server: MetricsServer | None = None
        self.healthy = True
        self.ready = threading.Event()
        self.detector_pool: SharedDetectorPool | None = None
        if config.service.shared_detector and opener is open_camera_stream:
            self.detector_pool = SharedDetectorPool(
                config.service.detector_batch_max, config.service.detector_batch_wait_ms / 1000.0
            )
            opener = shared_detector_opener(self.detector_pool)
        self._cameras = select_cameras(config, self.camera_ids, str(config_path or "the config"))
        self.health = HealthMonitor(config.health)
        self.live_views = LiveViews()
        self.live_views.configure(self._cameras)
        self._opener = self.live_views.wrap(opener)
        self._stop_requested = threading.Event()
        self._reload_requested = threading.Event()
        self._wake = threading.Event()
        self._started_monotonic = time.monotonic()
        self._started_wallclock = time.time()
        self._last_status = ""
        self._last_watchdog = 0.0

    # ------------------------------------------------------------ requests (any thread, signal handlers)
    def request_stop(self) -> None:
        self._stop_requested.set()
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested.set()
        self._wake.set()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self.request_reload()
        else:
            self.request_stop()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop; SIGHUP: reload. Call from the main thread."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    # ------------------------------------------------------------ observation
    def snapshot(self) -> ServiceSnapshot:
        workers = list(self.workers.values())
        health = self.health.latest()
        cameras = [worker.snapshot() for worker in workers]
        return ServiceSnapshot(
            version=__version__,
            uptime_s=time.monotonic() - self._started_monotonic,
            start_time_s=self._started_wallclock,
            healthy=self.healthy,
            config_reloads=dict(self.config_reloads),
            cameras=[replace(camera, healthy=health[camera.camera_id].healthy) if camera.camera_id in health
                     else camera for camera in cameras],
            health=health,
            max_drop_share=self.health.config.max_drop_share,
        )

    def render_metrics(self) -> str:
        return render_metrics(self.snapshot())

    def health_report(self) -> tuple[bool, str]:
        """(healthy, text) of /healthz: every camera healthy and the watchdog fed."""
        return health_summary(self.health.latest(), self.healthy)

    def camera_rows(self) -> list[dict[str, object]]:
        """Each camera for the live page: state, health, fps, faces, drops."""
        health = self.health.latest()
        rows: list[dict[str, object]] = []
        for camera in self.snapshot().cameras:
            entry = health.get(camera.camera_id)
            rows.append({"id": camera.camera_id, "state": camera.state, "healthy": entry is None or entry.healthy,
                         "problem": entry.reason if entry is not None else "", "fps": round(camera.fps, 2),
                         "faces": camera.faces, "frames_out": camera.frames_out,
                         "drops": sum(camera.drops.values()) + camera.counters.get("publish_dropped", 0)})
        return rows

    # ------------------------------------------------------------ cameras
    def _start_camera(self, camera: CameraConfig) -> None:
        worker = CameraWorker(camera, self.config.service, self._opener)
        self.workers[camera.id] = worker
        worker.start()
        logger.info("camera %s started (%s source)", camera.id, camera.source.type)

    def _stop_cameras(self, camera_ids: Sequence[str]) -> None:
        workers = [self.workers[camera_id] for camera_id in camera_ids]
        stuck = stop_workers(workers, self.config.service.stop_timeout_s)
        for camera_id in camera_ids:
            del self.workers[camera_id]
        if stuck:
            logger.error("cameras %s did not stop within %.0f s", ", ".join(stuck), self.config.service.stop_timeout_s)

    def reload(self) -> None:
        """Read the config file again and apply the camera changes; keep running on a bad file."""
        if self.config_path is None:
            logger.warning("reload asked, but the service was not started from a config file")
            self.config_reloads["failed"] += 1
            return
        self.notifier.reloading()
        try:
            config = load_config(self.config_path)
            cameras = select_cameras(config, self.camera_ids, str(self.config_path))
        except (ConfigError, StreamdError) as exc:
            logger.error("reload failed, keeping the running cameras: %s", exc)
            self.config_reloads["failed"] += 1
            self.notifier.ready(status=f"reload failed: {exc}")
            return
        for section in ("log_level", "log_format", "metrics", "service"):
            if getattr(config, section) != getattr(self.config, section):
                logger.warning("reload: %s changed; it takes effect at the next restart of the service", section)
        wanted = {camera.id: camera for camera in cameras}
        running = {camera_id: worker.camera for camera_id, worker in self.workers.items()}
        removed = [camera_id for camera_id in running if camera_id not in wanted]
        changed = [camera_id for camera_id, camera in wanted.items() if camera_id in running and running[camera_id] != camera]
        added = [camera_id for camera_id in wanted if camera_id not in running]
        unchanged = len(wanted) - len(changed) - len(added)
        logger.info("reload: %d added, %d removed, %d changed, %d unchanged", len(added), len(removed), len(changed),
                    unchanged)
        self.live_views.configure(cameras)  # before the restarts, which attach the live views
        self._stop_cameras(removed + changed)
        for camera_id in changed + added:
            self._start_camera(wanted[camera_id])
        kept = {section: getattr(self.config, section) for section in ("log_level", "log_format", "metrics", "service")}
        self.config = config.model_copy(update=kept)
        self._cameras = cameras
        self.health.config = config.health
        self.config_reloads["ok"] += 1
        self.notifier.ready(status=status_line(self.snapshot().cameras))

    # ------------------------------------------------------------ main loop
    def _tick_s(self) -> float:
        tick = self.config.service.status_interval_s
        interval = self.notifier.watchdog_interval_s
        return min(tick, interval) if interval else tick

    def _check(self, feed_watchdog: bool = True) -> None:
        """Check the cameras; feed the watchdog if all are healthy; update STATUS= when it changed."""
        now = time.monotonic()
        results = {camera_id: worker.check(now) for camera_id, worker in list(self.workers.items())}
        healthy = all(results.values())
        self.health.assess([worker.snapshot() for worker in list(self.workers.values())],
                           {camera_id: not ok for camera_id, ok in results.items()}, now)
        if self.healthy and not healthy:
            wedged = ", ".join(camera_id for camera_id, ok in results.items() if not ok)
            logger.error("cameras wedged: %s; no longer feeding the systemd watchdog", wedged)
        elif healthy and not self.healthy:
            logger.warning("all cameras healthy again; feeding the systemd watchdog again")
        self.healthy = healthy
        interval = self.notifier.watchdog_interval_s
        if feed_watchdog and healthy and interval is not None and now - self._last_watchdog >= interval * 0.9:
            self.notifier.watchdog()
            self._last_watchdog = now
        status = status_line([worker.snapshot() for worker in self.workers.values()])
        if status != self._last_status:
            self.notifier.status(status)
            self._last_status = status

    def _wait_until_started(self) -> None:
        """Wait until every camera's first attempt has opened its stream or failed."""
        while not self._stop_requested.is_set():
            if all(worker.opened.is_set() for worker in self.workers.values()):
                return
            self._check(feed_watchdog=False)  # systemd's watchdog starts at READY=1
            self._wake.wait(self._tick_s())
            self._wake.clear()

    def _all_finished(self) -> bool:
        """Every camera's source has ended, or the camera failed for good."""
        return all(worker.state in (CameraState.FINISHED, CameraState.FAILED) for worker in self.workers.values())

    def _failed_cameras(self) -> list[str]:
        return [camera_id for camera_id, worker in self.workers.items() if worker.state == CameraState.FAILED]

    def run(self) -> int:
        """Start, serve until stopped (or until every camera's file has ended), shut down; the exit code."""
        metrics = self.config.metrics
        try:
            if metrics.enabled:
                routes = LiveRoutes(self.live_views, self.camera_rows)
                self.metrics_server = MetricsServer(metrics.listen, self.render_metrics, self.health_report,
                                                    routes=routes.handle)
                self.metrics_server.start()
            for camera in self._cameras:
                self._start_camera(camera)
            self._wait_until_started()
            if not self._stop_requested.is_set():
                status = status_line(self.snapshot().cameras)
                self.notifier.ready(status=status)
                self.ready.set()
                logger.info("streamd %s ready: %s", __version__, status)
            while not self._stop_requested.is_set():
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    self.reload()
                self._check()
                if self._all_finished():
                    logger.info("every camera's source has ended or the camera failed")
                    break
                self._wake.wait(self._tick_s())
                self._wake.clear()
            failed = self._failed_cameras()
            code = self.shutdown()
            if failed:
                logger.error("cameras failed: %s", ", ".join(failed))
                return code or 1
            return code
        finally:
            self.live_views.close()
            if self.metrics_server is not None:
                self.metrics_server.close()
            self.notifier.close()

    def shutdown(self) -> int:
        """Stop every camera, waiting for outputs to finish; 0 when all stopped in time."""
        logger.info("stopping %d cameras", len(self.workers))
        self.notifier.stopping(status="stopping")
        stuck = stop_workers(list(self.workers.values()), self.config.service.stop_timeout_s)
        if stuck:
            logger.error("cameras %s did not stop within %.0f s", ", ".join(stuck), self.config.service.stop_timeout_s)
            return 1
        logger.info("stopped")
        return 0
