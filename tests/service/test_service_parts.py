"""Small parts of the service: sd_notify addressing, metrics text round trip, JSON logs, config bounds."""

from __future__ import annotations

import json
import logging
import os
import socket

import pytest

from streamd.config import parse_config
from streamd.errors import ConfigError
from streamd.service.health import CameraHealth
from streamd.service.logs import JsonLineFormatter
from streamd.service.metrics import ServiceSnapshot, camera_status_rows, format_status_table, parse_metrics, render_metrics
from streamd.service.sdnotify import SystemdNotifier, socket_address, watchdog_period_s
from streamd.stats import LatencyHistogram
from streamd.service.supervisor import CameraSnapshot


def test_notifier_sends_to_an_abstract_socket() -> None:
    name = f"streamd-parts-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(b"\0" + name.encode())
    receiver.settimeout(2)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "2000000"})
        assert notifier.enabled and notifier.watchdog_interval_s == 1.0
        assert notifier.ready(status="1/1 cameras up, 25.0 fps")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=1/1 cameras up, 25.0 fps"
        assert notifier.watchdog()
        assert receiver.recv(4096) == b"WATCHDOG=1"
        notifier.close()
    finally:
        receiver.close()


def test_notifier_without_systemd_is_disabled() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    assert not notifier.ready()


def test_notify_addresses_and_watchdog_pid() -> None:
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    with pytest.raises(ValueError, match="neither an absolute path"):
        socket_address("relative/path")
    assert watchdog_period_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=1) == 30.0
    assert watchdog_period_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    with pytest.raises(ValueError, match="positive"):
        watchdog_period_s({"WATCHDOG_USEC": "0"})


def camera_snapshot(camera_id: str, up: bool) -> CameraSnapshot:
    return CameraSnapshot(
        camera_id=camera_id, source_type="rtsp", state="up" if up else "down", up=up, healthy=True,
        fps=24.5 if up else 0.0, frames_in=120, frames_out=118, frames_masked=1, faces=40, faces_predicted=3,
        tracks_started=2, drops={"queue_full": 2}, errors={"detector": 1}, restarts=0, stalls=0,
        latency=LatencyHistogram((0.05, 0.1), (100, 118), 118, 4.2),
        counters={"decode_errors": 0, "reconnects": 3, "disconnects": 3, "connect_failures": 1,
                  "publish_dropped": 5, "publish_events_dropped": 0, "published": 113},
        last_error=None,
    )


def test_metrics_text_round_trips_into_the_status_table() -> None:
    snapshot = ServiceSnapshot(version="0.1.0", uptime_s=12.5, start_time_s=1.7e9, healthy=True,
                               config_reloads={"ok": 1}, cameras=[camera_snapshot('lobby "1"', True),
                                                                  camera_snapshot("parking", False)])
    text = render_metrics(snapshot)
    samples = parse_metrics(text)
    values = {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}
    assert values[("streamd_frame_latency_seconds_bucket", (("camera", "parking"), ("le", "+Inf")))] == 118
    assert values[("streamd_model_errors_total", (("camera", "parking"), ("stage", "anonymizer")))] == 0
    assert values[("streamd_drops_total", (("camera", "parking"), ("reason", "queue_full")))] == 2
    rows = {row.camera_id: row for row in camera_status_rows(samples)}
    assert rows['lobby "1"'].state == "up" and rows["parking"].state == "down"
    assert rows["parking"].drops == 2 + 5 and rows["parking"].reconnects == 3
    table = format_status_table(list(rows.values()))
    assert table.splitlines()[0].split() == ["CAMERA", "STATE", "HEALTH", "FPS", "FRAMES", "FACES", "DROPS", "DROP%",
                                             "RECONNECTS", "RESTARTS"]


def test_camera_health_round_trips_into_the_status_table() -> None:
    health = {"parking": CameraHealth("parking", ("down", "drops"), 0.25, "reconnecting to its source for 9 s")}
    snapshot = ServiceSnapshot(version="0.1.0", uptime_s=1.0, start_time_s=1.7e9, healthy=True, config_reloads={},
                               cameras=[camera_snapshot("lobby", True), camera_snapshot("parking", False)],
                               health=health, max_drop_share=0.05)
    samples = parse_metrics(render_metrics(snapshot))
    rows = {row.camera_id: row for row in camera_status_rows(samples)}
    assert rows["lobby"].healthy and rows["lobby"].drop_share == 0
    assert rows["parking"].problems == ("down", "drops") and rows["parking"].drop_share == 0.25
    line = format_status_table([rows["parking"]]).splitlines()[1].split()
    assert line[:3] == ["parking", "down", "down,drops"] and line[7] == "25.0"


def test_json_log_lines_name_the_camera() -> None:
    formatter = JsonLineFormatter(frozenset({"lobby"}))
    record = logging.LogRecord("streamd.pipeline.lobby", logging.WARNING, __file__, 1, "detector failed on frame %d",
                               (7,), None)
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "detector failed on frame 7" and entry["camera"] == "lobby"
    assert entry["level"] == "WARNING" and entry["time"].endswith("+00:00")


CAMERA = "cameras:\n  - id: a\n    source: {type: file, path: a.mp4}\n"


def test_service_settings_parse_with_bounds() -> None:
    config = parse_config("log_format: json\nmetrics: {listen: '127.0.0.1:0'}\nservice: {restart_max_s: 5}\n" + CAMERA)
    assert config.log_format == "json" and config.metrics.listen == "127.0.0.1:0"
    assert config.service.restart_max_s == 5 and config.service.stall_timeout_s == 30
    assert parse_config("metrics: {listen: '[::1]:9108'}\n" + CAMERA).metrics.listen == "[::1]:9108"
    with pytest.raises(ConfigError, match=r"<config>:1: metrics.listen: .*loopback"):
        parse_config("metrics: {listen: '0.0.0.0:9108'}\n" + CAMERA)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_config("metrics: {listen: '127.0.0.1'}\n" + CAMERA)
    with pytest.raises(ConfigError, match="service.restart_initial_s"):
        parse_config("service: {restart_initial_s: 0}\n" + CAMERA)
