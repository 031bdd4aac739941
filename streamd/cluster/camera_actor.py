"""One camera of a fleet as a Ray actor: the single-host `CameraWorker`, on whichever node Ray chose.

The actor binds its ZeroMQ output on its own node's address (the configured port, or any free one
for `*`) and tells anyone who asks (`placement`) where that is. Failures inside the camera (a source
gone, a stage that raised) are restarted by the worker as on one host; the loss of the actor's
process or node is Ray's to handle: the actor is created with `max_restarts`, and Ray starts it
again on a node that has the resources, where `__init__` opens everything afresh. The pipeline
publishes only anonymized frames, so a camera that comes back publishes nothing else either.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from streamd.cluster.ray_runtime import ClusterError, import_ray, node_ip
from streamd.config import CameraConfig, ServiceConfig
from streamd.pipeline import StreamPipeline
from streamd.stats import PipelineStats
from streamd.service.supervisor import CameraSnapshot, CameraWorker, open_camera_stream, stop_workers
from streamd.sinks.zmq_sink import ZmqSink

logger = logging.getLogger(__name__)


def bind_on_node(camera: CameraConfig, ip: str) -> CameraConfig:
    """`camera` with its ZeroMQ endpoint's host replaced by this node's address (port kept, `*` allowed)."""
    zmq = camera.outputs.zmq
    if zmq is None:
        return camera
    parts = urlsplit(zmq.endpoint)
    if parts.scheme != "tcp" or not parts.netloc or ":" not in parts.netloc:
        raise ClusterError(f"camera {camera.id}: on a cluster the ZeroMQ output must be tcp://HOST:PORT "
                           f"(PORT may be *), not {zmq.endpoint}")
    port = parts.netloc.rsplit(":", 1)[1]
    outputs = camera.outputs.model_copy(update={"zmq": zmq.model_copy(update={"endpoint": f"tcp://{ip}:{port}"})})
    return camera.model_copy(update={"outputs": outputs})


class CameraActor:
    """Runs one camera until `stop`; the methods are the actor's remote calls."""

    def __init__(self, camera_settings: dict[str, Any], service_settings: dict[str, Any]) -> None:
        ray = import_ray()
        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        self.node_ip = node_ip()
        self.restarted = bool(context.was_current_actor_reconstructed)
        self.started_at = time.time()
        self.service = ServiceConfig.model_validate(service_settings)
        self.camera = bind_on_node(CameraConfig.model_validate(camera_settings), self.node_ip)
        self._endpoint: str | None = None
        self.worker = CameraWorker(self.camera, self.service, self._open)
        self.worker.start()
        self._stop = threading.Event()
        self._healthy = True
        self._checker = threading.Thread(target=self._check_loop, name=f"check-{self.camera.id}", daemon=True)
        self._checker.start()
        logger.info("camera %s %s on node %s (%s)", self.camera.id, "restarted" if self.restarted else "started",
                    self.node_id, self.node_ip)

    @contextlib.contextmanager
    def _open(self, camera: CameraConfig, stats: PipelineStats) -> Iterator[StreamPipeline]:
        with open_camera_stream(camera, stats) as pipeline:
            for sink in pipeline.sinks:
                if isinstance(sink, ZmqSink):
                    self._endpoint = sink.endpoint
            yield pipeline

    def _check_loop(self) -> None:
        while not self._stop.wait(self.service.status_interval_s):
            self._healthy = self.worker.check()

    # ------------------------------------------------------------ remote calls
    def placement(self) -> dict[str, Any]:
        """Where the camera runs and the address its publisher bound (None until it has)."""
        return {"camera": self.camera.id, "node_id": self.node_id, "node_ip": self.node_ip,
                "endpoint": self._endpoint, "restarted": self.restarted, "started_at": self.started_at,
                "pid": os.getpid()}

    def snapshot(self) -> CameraSnapshot:
        return self.worker.snapshot(healthy=self._healthy)

    def stop(self, timeout_s: float) -> bool:
        """Stop the camera, finishing its outputs; True when it stopped within `timeout_s`."""
        self._stop.set()
        return not stop_workers([self.worker], timeout_s)
