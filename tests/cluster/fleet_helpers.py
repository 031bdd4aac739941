"""A `streamd run --cluster` process for the fleet tests, and a subscriber that checks every frame it gets."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from cluster_clips import dark_share_of_face_centres
from streamd.protocol import FRAME_TOPIC_PREFIX, decode_frame_message


def wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(poll_s)


def placements(ray, camera_ids: list[str]) -> dict[str, dict]:
    """Where each camera runs now; cameras that do not answer (yet) are left out."""
    from streamd.cluster.ray_runtime import ClusterError
    from streamd.cluster.registry import camera_actor

    found = {}
    for camera_id in camera_ids:
        try:
            found[camera_id] = ray.get(camera_actor(ray, camera_id).placement.remote(), timeout=2)
        except (ClusterError, ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            continue  # not created yet, restarting, or just killed: absent for this round
    return found


def fleet_up(ray, camera_ids: list[str]) -> dict[str, dict] | None:
    found = placements(ray, camera_ids)
    ready = len(found) == len(camera_ids) and all(entry["endpoint"] for entry in found.values())
    return found if ready else None


class FleetProcess:
    """`streamd run CONFIG --cluster ADDRESS` in a subprocess; stopped with SIGTERM on exit."""

    def __init__(self, config_path: Path, address: str, log_path: Path) -> None:
        self._log = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "streamd.cli", "run", str(config_path), "--cluster",
                                         address], stdout=self._log, stderr=subprocess.STDOUT)

    def reload(self) -> None:
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            self._log.close()

    def __enter__(self) -> "FleetProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.stop()
            if self.process.poll() is None:
                self.process.kill()


class CheckingSubscriber:
    """Subscribes to one camera, following it when it moves, and checks each frame's faces are masked.

    `truth` holds the truth boxes of the looping clip by frame index; a frame counts as unanonymized
    when any truth face's centre is not masked solid black.
    """

    def __init__(self, resolve, truth: list[np.ndarray]) -> None:
        self._resolve = resolve
        self._truth = truth
        self.frames = 0
        self.unmasked: list[int] = []
        self.endpoints: list[str] = []
        self.last_frame_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        context = zmq.Context()
        socket = None
        silent_since = time.monotonic()
        try:
            while not self._stop.is_set():
                if socket is None or time.monotonic() - silent_since > 1.0:
                    endpoint = self._resolve()
                    if endpoint is not None and (not self.endpoints or endpoint != self.endpoints[-1] or socket is None):
                        if socket is not None:
                            socket.close(linger=0)
                        socket = context.socket(zmq.SUB)
                        socket.setsockopt(zmq.SUBSCRIBE, FRAME_TOPIC_PREFIX)
                        socket.connect(endpoint)
                        self.endpoints.append(endpoint)
                    silent_since = time.monotonic()
                if socket is None or not socket.poll(100):
                    continue
                header, bgr, _ = decode_frame_message(socket.recv_multipart())
                silent_since = time.monotonic()
                self.last_frame_at = time.monotonic()
                self.frames += 1
                boxes = self._truth[header["frame_index"] % len(self._truth)]
                shares = dark_share_of_face_centres(bgr, boxes)
                if not shares or min(shares) < 0.5:
                    self.unmasked.append(int(header["frame_index"]))
        finally:
            if socket is not None:
                socket.close(linger=0)
            context.term()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
