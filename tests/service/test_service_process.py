"""`streamd run` as a real process: systemd notifications on a fake NOTIFY_SOCKET, signals, and a
file output that SIGTERM must leave finished and playable."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest
import yaml
from rtsp_server import make_h264_clip
from service_helpers import FPS, HEIGHT, WIDTH, free_tcp_port, wait_until

from streamd.service.metrics import fetch_metrics, parse_metrics

pytestmark = pytest.mark.timeout(120)

STREAMD = [sys.executable, "-m", "streamd.cli"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_h264_clip(tmp_path_factory.mktemp("process") / "clip.mp4", WIDTH, HEIGHT, FPS, seconds=2.0, gop=10)


def write_config(path: Path, clip: Path, metrics_port: int, output: Path | None = None) -> Path:
    camera: dict = {"id": "cam", "source": {"type": "file", "path": str(clip), "loop": True, "realtime": True},
                    "detector": {"type": "centerface", "input_width": WIDTH, "input_height": HEIGHT}}
    if output is not None:
        camera["outputs"] = {"file": {"path": str(output)}}
    document = {"log_format": "json", "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
                "service": {"status_interval_s": 0.5}, "cameras": [camera]}
    path.write_text(yaml.safe_dump(document))
    return path


def frames_out(metrics_url: str) -> float:
    try:
        samples = parse_metrics(fetch_metrics(metrics_url, timeout_s=5))
    except Exception:  # not serving yet: counts as no frames  # noqa: BLE001
        return 0
    return next(value for name, labels, value in samples if name == "streamd_frames_out_total")


class NotifyReceiver:
    """A bound AF_UNIX datagram socket in the abstract namespace, as systemd's notify socket."""

    def __init__(self) -> None:
        self.address = f"@streamd-test-{os.getpid()}-{time.monotonic_ns()}"
        self.messages: list[tuple[float, list[str]]] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(b"\0" + self.address[1:].encode())
        self._socket.settimeout(0.05)
        self._running = True
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while self._running:
            try:
                payload = self._socket.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), payload.decode().split("\n")))

    def times_of(self, line: str) -> list[float]:
        return [at for at, lines in self.messages if line in lines]

    def close(self) -> None:
        self._running = False
        self._thread.join(1)
        self._socket.close()


def test_watchdog_notifications_ready_pings_reload_stopping(clip: Path, tmp_path: Path) -> None:
    metrics_port = free_tcp_port()
    config = write_config(tmp_path / "streamd.yaml", clip, metrics_port)
    receiver = NotifyReceiver()
    environment = {**os.environ, "NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "2000000"}
    process = subprocess.Popen([*STREAMD, "run", str(config)], env=environment, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: receiver.times_of("READY=1"), 20, "READY=1")
        time.sleep(3.5)
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: receiver.times_of("RELOADING=1"), 20, "RELOADING=1 after SIGHUP")
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        receiver.close()
    stderr = process.stderr.read()
    ready_at = receiver.times_of("READY=1")[0]
    pings = receiver.times_of("WATCHDOG=1")
    stopping = receiver.times_of("STOPPING=1")
    assert pings and min(pings) >= ready_at, "a WATCHDOG=1 came before READY=1"
    # WatchdogSec=2: pings every second or so; a loaded machine may delay one by most of a second.
    assert len(pings) >= 3, f"only {len(pings)} pings in about 4 s with WatchdogSec=2"
    gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
    assert max(gaps) < 2.0, f"longest gap between pings {max(gaps):.2f} s, the watchdog period is 2 s"
    assert len(receiver.times_of("READY=1")) == 2, "READY=1 again after the reload"
    assert stopping and stopping[0] >= max(pings), "STOPPING=1 must be the last word"
    statuses = [line for _, lines in receiver.messages for line in lines if line.startswith("STATUS=")]
    assert any(status.startswith("STATUS=1/1 cameras up, ") and status.endswith(" fps") for status in statuses), statuses
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert any(record.get("camera") == "cam" for record in records)


def test_sigterm_during_file_output_leaves_a_finished_playable_file(clip: Path, tmp_path: Path) -> None:
    metrics_port = free_tcp_port()
    output = tmp_path / "recording.mkv"
    config = write_config(tmp_path / "streamd.yaml", clip, metrics_port, output=output)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    process = subprocess.Popen([*STREAMD, "run", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: frames_out(metrics_url) >= 40, 30, "40 frames written", poll_s=0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        decoded = [frame for frame in container.decode(stream)]
        duration_s = float(decoded[-1].pts * stream.time_base)
    assert len(decoded) >= 40
    assert (decoded[0].width, decoded[0].height) == (WIDTH, HEIGHT)
    assert duration_s > 1.0
    assert not list(tmp_path.glob("*.part*")), "a temporary output was left behind"
