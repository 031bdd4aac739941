"""Helpers for the service tests: configs, a service running in a thread, a ZeroMQ listener, waits."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from streamd.config import StreamdConfig
from streamd.service.metrics import fetch_metrics, parse_metrics
from streamd.protocol import decode_event, decode_frame_message
from streamd.service.daemon import StreamService
from streamd.service.supervisor import StreamOpener, open_camera_stream

WIDTH, HEIGHT, FPS = 320, 240, 25
DETECTOR = {"type": "centerface", "input_width": WIDTH, "input_height": HEIGHT}


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.02) -> float:
    """Seconds until `condition()` held; fails the test after `timeout_s`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(poll_s)
    return time.monotonic() - start


def rtsp_camera(camera_id: str, url: str, zmq_endpoint: str | None = None, **source: Any) -> dict[str, Any]:
    """A camera section reading `url`, with fast reconnects unless overridden."""
    # Timeouts well above the stalls a loaded machine causes, so only the tests that freeze the server see one.
    settings = {"open_timeout_s": 3.0, "read_timeout_s": 3.0, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.3}
    settings.update(source)
    camera: dict[str, Any] = {"id": camera_id, "source": {"type": "rtsp", "url": url, **settings},
                              "detector": DETECTOR}
    if zmq_endpoint is not None:
        camera["outputs"] = {"zmq": {"endpoint": zmq_endpoint}}
    return camera


def service_config(cameras: list[dict[str, Any]], **service: Any) -> StreamdConfig:
    settings = {"restart_initial_s": 0.2, "restart_max_s": 1.0, "status_interval_s": 0.2}
    settings.update(service)
    return StreamdConfig.model_validate(
        {"cameras": cameras, "metrics": {"listen": "127.0.0.1:0"}, "service": settings}
    )


class RunningService:
    """`StreamService.run()` in a thread, stopped (and checked to stop) on exit."""

    def __init__(self, config: StreamdConfig, opener: StreamOpener = open_camera_stream,
                 config_path: Path | None = None, environ: dict[str, str] | None = None) -> None:
        self.service = StreamService(config, config_path=config_path, opener=opener, environ=environ or {})
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="service-under-test", daemon=True)

    def _run(self) -> None:
        try:
            self.exit_code = self.service.run()
        except BaseException as exc:  # kept for the test to report
            self.error = exc
            raise

    def __enter__(self) -> "RunningService":
        self._thread.start()
        wait_until(lambda: self.service.ready.is_set() or self.error is not None, 20, "service ready")
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 20) -> int | None:
        self.service.request_stop()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "service did not stop"
        assert self.error is None, self.error
        return self.exit_code

    def worker(self, camera_id: str):
        return self.service.workers[camera_id]

    def frames_out(self, camera_id: str) -> int:
        return self.worker(camera_id).stats.frames_out

    def wait_frames(self, camera_id: str, count: int, timeout_s: float) -> float:
        target = self.frames_out(camera_id) + count
        return wait_until(lambda: self.frames_out(camera_id) >= target, timeout_s,
                          f"{count} more frames out of {camera_id}")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The metrics endpoint's samples keyed by (name, sorted labels)."""
        assert self.service.metrics_server is not None
        samples = parse_metrics(fetch_metrics(self.service.metrics_server.url))
        return {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics()[(name, tuple(sorted(labels.items())))]


class ZmqListener:
    """Subscribes to a streamd publisher and keeps decoded frame headers and events, from a thread."""

    def __init__(self, endpoint: str, rcvhwm: int = 1000) -> None:
        self.headers: list[dict[str, Any]] = []
        self.images: dict[int, Any] = {}
        self.events: list[dict[str, Any]] = []
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, rcvhwm)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(50):
                continue
            parts = self._socket.recv_multipart()
            if parts[0].startswith(b"event."):
                self.events.append(decode_event(parts))
            else:
                header, bgr, _ = decode_frame_message(parts)
                self.headers.append(header)
                if header["status"] != "ok":
                    self.images[header["frame_index"]] = bgr

    def event_types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._socket.close()
        self._context.term()
