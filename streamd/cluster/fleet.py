"""`streamd run CONFIG --cluster ...`: every camera of the config as a Ray actor, for as long as this runs.

This process is the fleet's driver. It starts one `CameraActor` per camera, with the camera's
resources, `max_restarts` (Ray restarts an actor whose process or node was lost, on a node that has
room) and SPREAD placement (cameras go to different nodes while they can). It then watches them once
per `service.status_interval_s`, serves the fleet's metrics, reloads the config on SIGHUP (new
cameras start, removed ones stop, changed ones restart, unchanged ones are not touched) and stops
every camera on SIGTERM/SIGINT. The actors belong to this driver: when it ends, they end.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from streamd import __version__
from streamd.cluster.camera_actor import CameraActor, bind_on_node
from streamd.cluster.fleet_metrics import render_fleet_metrics
from streamd.cluster.ray_runtime import NAMESPACE, ClusterError
from streamd.cluster.registry import actor_name
from streamd.cluster.resources import task_resources
from streamd.config import CameraConfig, StreamdConfig, load_config
from streamd.errors import ConfigError, StreamdError
from streamd.service.metrics import MetricsServer, ServiceSnapshot
from streamd.service.daemon import select_cameras
from streamd.service.supervisor import CameraSnapshot, CameraState

logger = logging.getLogger(__name__)

#: Ray restarts a camera's actor this many times (-1: without end) after its process or node is lost.
ACTOR_MAX_RESTARTS = -1
#: How long one round of questions to the actors may take before a silent one counts as restarting.
POLL_TIMEOUT_S = 2.0
#: How long a stopped camera's name may stay taken before its replacement gives up.
NAME_RELEASE_TIMEOUT_S = 15.0


@dataclasses.dataclass
class _Camera:
    config: CameraConfig
    actor: Any
    snapshot: CameraSnapshot | None = None
    placement: dict[str, Any] | None = None
    moves: int = 0


class FleetService:
    """Runs a config's cameras as actors until stopped; see the module doc."""

    def __init__(self, ray: ModuleType, config: StreamdConfig, config_path: Path | None = None,
                 camera_ids: Sequence[str] | None = None) -> None:
        self.ray = ray
        self.config = config
        self.config_path = config_path
        self.camera_ids = list(camera_ids) if camera_ids else None
        self.cameras: dict[str, _Camera] = {}
        self.config_reloads: dict[str, int] = {}
        self.metrics_server: MetricsServer | None = None
        self.ready = threading.Event()
        self._selected = select_cameras(config, self.camera_ids, str(config_path or "the config"))
        for camera in self._selected:
            bind_on_node(camera, "0.0.0.0")  # an output that cannot bind on a node fails here, not in an actor
        self._remote_class = ray.remote(CameraActor)
        self._stop_requested = threading.Event()
        self._reload_requested = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # cameras are changed by the main loop and read by the metrics thread
        self._started_monotonic = time.monotonic()
        self._started_wallclock = time.time()

    @property
    def camera_count(self) -> int:
        return len(self._selected)

    # ------------------------------------------------------------ requests
    def request_stop(self) -> None:
        self._stop_requested.set()
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop the fleet; SIGHUP: reload the config. Call from the main thread."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    # ------------------------------------------------------------ cameras
    def _wait_for_name_release(self, camera_id: str) -> None:
        deadline = time.monotonic() + NAME_RELEASE_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                self.ray.get_actor(actor_name(camera_id), namespace=NAMESPACE)
            except ValueError:
                return
            time.sleep(0.1)
        raise ClusterError(f"camera {camera_id}: the previous actor's name was not released")

    def _start_camera(self, camera: CameraConfig) -> None:
        self._wait_for_name_release(camera.id)
        actor = self._remote_class.options(
            name=actor_name(camera.id), namespace=NAMESPACE, max_restarts=ACTOR_MAX_RESTARTS,
            scheduling_strategy="SPREAD", **task_resources(camera),
        ).remote(camera.model_dump(mode="json"), self.config.service.model_dump(mode="json"))
        with self._lock:
            self.cameras[camera.id] = _Camera(camera, actor)
        logger.info("camera %s submitted to the cluster", camera.id)

    def _stop_cameras(self, camera_ids: Sequence[str]) -> list[str]:
        """Stop the cameras (outputs finished), then end their actors; the ids that did not stop in time."""
        timeout_s = self.config.service.stop_timeout_s
        with self._lock:
            stopping = {camera_id: self.cameras.pop(camera_id) for camera_id in camera_ids}
        refs = {camera_id: camera.actor.stop.remote(timeout_s) for camera_id, camera in stopping.items()}
        stuck = []
        for camera_id, ref in refs.items():
            try:
                if not self.ray.get(ref, timeout=timeout_s + POLL_TIMEOUT_S):
                    stuck.append(camera_id)
            except self.ray.exceptions.RayError as exc:
                logger.warning("camera %s did not answer stop (%s); ending its actor", camera_id, exc)
            self.ray.kill(stopping[camera_id].actor, no_restart=True)
        return stuck

    def reload(self) -> None:
        """Read the config again and apply the camera changes across the fleet; keep running on a bad file."""
        if self.config_path is None:
            logger.warning("reload asked, but the fleet was not started from a config file")
            self.config_reloads["failed"] = self.config_reloads.get("failed", 0) + 1
            return
        try:
            config = load_config(self.config_path)
            cameras = select_cameras(config, self.camera_ids, str(self.config_path))
            for camera in cameras:
                bind_on_node(camera, "0.0.0.0")
        except (ConfigError, StreamdError) as exc:
            logger.error("reload failed, keeping the running cameras: %s", exc)
            self.config_reloads["failed"] = self.config_reloads.get("failed", 0) + 1
            return
        wanted = {camera.id: camera for camera in cameras}
        running = {camera_id: camera.config for camera_id, camera in self.cameras.items()}
        removed = [camera_id for camera_id in running if camera_id not in wanted]
        changed = [camera_id for camera_id in wanted if camera_id in running and running[camera_id] != wanted[camera_id]]
        added = [camera_id for camera_id in wanted if camera_id not in running]
        logger.info("reload: %d added, %d removed, %d changed, %d unchanged", len(added), len(removed), len(changed),
                    len(wanted) - len(added) - len(changed))
        self._stop_cameras(removed + changed)
        for camera_id in changed + added:
            self._start_camera(wanted[camera_id])
        self.config = config.model_copy(update={"service": self.config.service, "metrics": self.config.metrics})
        self.config_reloads["ok"] = self.config_reloads.get("ok", 0) + 1

    # ------------------------------------------------------------ observation
    def poll(self) -> None:
        """Ask every actor where it runs and how its camera does; a silent one counts as restarting."""
        with self._lock:
            cameras = dict(self.cameras)
        asked = {camera_id: (camera.actor.placement.remote(), camera.actor.snapshot.remote())
                 for camera_id, camera in cameras.items()}
        deadline = time.monotonic() + POLL_TIMEOUT_S
        for camera_id, (placement_ref, snapshot_ref) in asked.items():
            camera = cameras[camera_id]
            try:
                placement, snapshot = self.ray.get([placement_ref, snapshot_ref],
                                                   timeout=max(0.05, deadline - time.monotonic()))
            except (self.ray.exceptions.RayError, self.ray.exceptions.GetTimeoutError) as exc:
                logger.debug("camera %s did not answer: %s", camera_id, exc)
                if camera.snapshot is not None:
                    camera.snapshot = dataclasses.replace(camera.snapshot, state=CameraState.RESTARTING, up=False,
                                                          fps=0.0)
                continue
            if camera.placement is not None and placement["started_at"] != camera.placement["started_at"]:
                camera.moves += 1
                logger.warning("camera %s restarted by Ray on node %s (%s), was on %s", camera_id,
                               placement["node_id"], placement["node_ip"], camera.placement["node_id"])
            camera.placement, camera.snapshot = placement, snapshot

    def snapshot(self) -> ServiceSnapshot:
        with self._lock:
            snapshots = [camera.snapshot for camera in self.cameras.values() if camera.snapshot is not None]
        return ServiceSnapshot(version=__version__, uptime_s=time.monotonic() - self._started_monotonic,
                               start_time_s=self._started_wallclock, healthy=self.healthy(),
                               config_reloads=dict(self.config_reloads), cameras=snapshots)

    def placements(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {camera_id: {**camera.placement, "moves": camera.moves}
                    for camera_id, camera in self.cameras.items() if camera.placement is not None}

    def healthy(self) -> bool:
        with self._lock:
            return all(camera.snapshot is None or camera.snapshot.healthy for camera in self.cameras.values())

    def render_metrics(self) -> str:
        return render_fleet_metrics(self.snapshot(), self.placements())

    def _all_finished(self) -> bool:
        with self._lock:
            cameras = list(self.cameras.values())
        return bool(cameras) and all(camera.snapshot is not None and camera.snapshot.state == CameraState.FINISHED
                                     for camera in cameras)

    # ------------------------------------------------------------ run
    def run(self) -> int:
        """Start the fleet, watch it until stopped (or every camera's file ended), stop it; the exit code."""
        metrics = self.config.metrics
        try:
            if metrics.enabled:
                self.metrics_server = MetricsServer(metrics.listen, self.render_metrics, self.healthy)
                self.metrics_server.start()
            for camera in self._selected:
                self._start_camera(camera)
            while not self._stop_requested.is_set():
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    self.reload()
                self.poll()
                if not self.ready.is_set() and all(camera.placement for camera in self.cameras.values()):
                    self.ready.set()
                    logger.info("fleet of %d cameras up", len(self.cameras))
                if self._all_finished():
                    logger.info("every camera's source has ended")
                    break
                self._wake.wait(self.config.service.status_interval_s)
                self._wake.clear()
            stuck = self._stop_cameras(list(self.cameras))
            if stuck:
                logger.error("cameras %s did not stop within %.0f s", ", ".join(stuck),
                             self.config.service.stop_timeout_s)
            return 1 if stuck else 0
        finally:
            if self.metrics_server is not None:
                self.metrics_server.close()
