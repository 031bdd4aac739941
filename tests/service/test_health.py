"""Health: a camera down, failing or dropping frames turns /healthz and `streamd status` unhealthy;
status reads a running service from its address alone, and from a config file with a bad edit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from live_helpers import http_get, live_config, write_face_clip
from rtsp_server import RtspTestServer, make_h264_clip
from service_helpers import FPS, HEIGHT, WIDTH, RunningService, free_tcp_port, rtsp_camera, wait_until

from streamd.cli import main as cli_main
from streamd.config import HealthConfig, StreamdConfig
from streamd.service.health import HealthMonitor
from streamd.stats import LatencyHistogram
from streamd.service.status import base_url
from streamd.service.supervisor import CameraSnapshot, CameraState

pytestmark = pytest.mark.timeout(120)


def snapshot(state: str = CameraState.UP, frames_in: int = 0, queue_drops: int = 0, publish_dropped: int = 0,
             last_error: str | None = None) -> CameraSnapshot:
    return CameraSnapshot(
        camera_id="cam", source_type="rtsp", state=state, up=state == CameraState.UP, healthy=True, fps=25.0,
        frames_in=frames_in, frames_out=frames_in - queue_drops, frames_masked=0, faces=0, faces_predicted=0,
        tracks_started=0, drops={"queue_full": queue_drops}, errors={}, restarts=0, stalls=0,
        latency=LatencyHistogram((0.1,), (0,), 0, 0.0), counters={"publish_dropped": publish_dropped},
        last_error=last_error,
    )


def test_a_camera_not_up_is_down_after_the_grace_period() -> None:
    monitor = HealthMonitor(HealthConfig(down_grace_s=5.0))
    assert monitor.assess([snapshot(CameraState.DOWN)], {}, now=100.0)["cam"].healthy
    late = monitor.assess([snapshot(CameraState.DOWN, last_error="ConnectionRefused")], {}, now=106.0)["cam"]
    assert late.problems == ("down",)
    assert "reconnecting to its source for 6 s" in late.reason and "ConnectionRefused" in late.reason
    assert monitor.assess([snapshot(CameraState.UP)], {}, now=107.0)["cam"].healthy
    assert monitor.assess([snapshot(CameraState.RESTARTING)], {}, now=108.0)["cam"].healthy, "a new grace period"


@pytest.mark.parametrize("state", [CameraState.RESTARTING, CameraState.STOPPED, "failed"])
def test_any_state_but_up_or_finished_counts_as_down(state: str) -> None:
    monitor = HealthMonitor(HealthConfig(down_grace_s=0.0))
    assert monitor.assess([snapshot(state)], {}, now=1.0)["cam"].problems == ("down",)
    assert HealthMonitor(HealthConfig(down_grace_s=0.0)).assess(
        [snapshot(CameraState.FINISHED)], {}, now=1.0)["cam"].healthy


def test_drops_over_the_window_above_the_limit_are_unhealthy() -> None:
    monitor = HealthMonitor(HealthConfig(max_drop_share=0.10, window_s=10.0, min_frames=100))
    monitor.assess([snapshot(frames_in=1000, queue_drops=500)], {}, now=0.0)  # old drops, before the window
    steady = monitor.assess([snapshot(frames_in=1250, queue_drops=510)], {}, now=10.0)["cam"]
    assert steady.healthy and steady.drop_share == pytest.approx(10 / 250)
    # 3050 refused by ZeroMQ against 1051 delivered: as reported by operators, now unhealthy
    bad = monitor.assess([snapshot(frames_in=1250 + 4101, queue_drops=510, publish_dropped=3050)], {}, now=20.0)["cam"]
    assert bad.problems == ("drops",) and bad.drop_share == pytest.approx(3050 / 4101)
    assert "dropped 74% of its frames over the last 10 s (limit 10%)" in bad.reason


def test_counts_that_start_again_start_a_new_window() -> None:
    monitor = HealthMonitor(HealthConfig(max_drop_share=0.10, window_s=30.0, min_frames=100))
    monitor.assess([snapshot(frames_in=5000, queue_drops=10)], {}, now=0.0)
    replaced = monitor.assess([snapshot(frames_in=50, queue_drops=0)], {}, now=1.0)["cam"]
    assert replaced.healthy
    dropping = monitor.assess([snapshot(frames_in=250, queue_drops=100)], {}, now=5.0)["cam"]
    assert dropping.problems == ("drops",) and dropping.drop_share == pytest.approx(100 / 200)


def test_drops_are_not_judged_on_a_few_frames() -> None:
    monitor = HealthMonitor(HealthConfig(max_drop_share=0.05, min_frames=100))
    monitor.assess([snapshot(frames_in=0)], {}, now=0.0)
    warming_up = monitor.assess([snapshot(frames_in=18, queue_drops=6)], {}, now=1.0)["cam"]
    assert warming_up.healthy and warming_up.drop_share == 0.0
    assert monitor.assess([snapshot(frames_in=118, queue_drops=26)], {}, now=5.0)["cam"].problems == ("drops",)


def test_a_wedged_camera_is_unhealthy() -> None:
    monitor = HealthMonitor(HealthConfig())
    assert monitor.assess([snapshot()], {"cam": True}, now=0.0)["cam"].problems == ("wedged",)


@pytest.mark.parametrize("given, expected", [
    ("127.0.0.1:9100", "http://127.0.0.1:9100"),
    ("http://127.0.0.1:9100", "http://127.0.0.1:9100"),
    ("http://127.0.0.1:9100/", "http://127.0.0.1:9100"),
    ("http://127.0.0.1:9100/metrics", "http://127.0.0.1:9100"),
    ("http://[::1]:9100", "http://[::1]:9100"),
])
def test_status_addresses(given: str, expected: str) -> None:
    assert base_url(given) == expected


# ---------------------------------------------------------------- a running service
@pytest.fixture(scope="module")
def rtsp_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_h264_clip(tmp_path_factory.mktemp("health") / "clip.mp4", WIDTH, HEIGHT, FPS, seconds=2.0, gop=10)


def test_healthz_and_status_turn_unhealthy_when_a_camera_is_down(
    rtsp_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_url = f"rtsp://127.0.0.1:{free_tcp_port()}/nothing"
    with RtspTestServer(rtsp_clip) as server:
        config = StreamdConfig.model_validate({
            "cameras": [rtsp_camera("alive", server.url), rtsp_camera("dead", dead_url)],
            "metrics": {"listen": "127.0.0.1:0"}, "health": {"down_grace_s": 1.0},
            "service": {"restart_initial_s": 0.2, "restart_max_s": 1.0, "status_interval_s": 0.2},
        })
        with RunningService(config) as running:
            base = running.service.metrics_server.base_url
            running.wait_frames("alive", 10, timeout_s=20)
            wait_until(lambda: http_get(base + "/healthz")[0] == 503, 20, "/healthz 503", poll_s=0.2)
            _, _, body = http_get(base + "/healthz")
            assert running.metric("streamd_camera_problem", camera="dead", problem="down") == 1
            assert running.metric("streamd_camera_healthy", camera="dead") == 0
            assert running.metric("streamd_camera_healthy", camera="alive") == 1
            code = cli_main(["status", "--url", base])
            out = capsys.readouterr().out
    text = body.decode()
    assert text.startswith("unhealthy\n") and "dead: reconnecting to its source for" in text
    assert "alive" not in text
    assert code == 3
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["CAMERA", "STATE", "HEALTH"]
    rows = {line.split()[0]: line.split() for line in lines[1:3]}
    assert rows["alive"][1:3] == ["up", "ok"] and rows["dead"][1:3] == ["down", "down"]
    assert "UNHEALTHY" in out and "dead: reconnecting to its source" in out


def test_status_from_the_address_alone_and_from_a_config_with_a_bad_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_face_clip(tmp_path / "face.mp4", seconds=2.0)
    port = free_tcp_port()
    config = live_config(clip).model_copy(update={"metrics": live_config(clip).metrics.model_copy(
        update={"listen": f"127.0.0.1:{port}"})})
    config_path = tmp_path / "streamd.yaml"
    with RunningService(config) as running:
        running.wait_frames("lobby", 3, timeout_s=20)
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 20, "healthy", poll_s=0.2)
        assert cli_main(["status", "--url", f"http://127.0.0.1:{port}"]) == 0
        by_url = capsys.readouterr().out
        document = yaml.safe_load(config.model_dump_json())
        document["cameras"][0]["detector"]["treshold"] = 0.3  # an edit in progress: an unknown key
        config_path.write_text(yaml.safe_dump(document))
        by_bad_config = subprocess.run([sys.executable, "-m", "streamd.cli", "status", "--config", str(config_path)],
                                       capture_output=True, text=True, timeout=60)
    assert "lobby" in by_url and "healthy" in by_url and "UNHEALTHY" not in by_url
    assert by_bad_config.returncode == 0, by_bad_config.stderr
    assert "lobby" in by_bad_config.stdout
    assert "unknown key" in by_bad_config.stderr, "the problem in the file is still reported"
    assert "Traceback" not in by_bad_config.stderr


def test_status_of_nothing_running_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["status", "--url", f"127.0.0.1:{free_tcp_port()}"])
    err = capsys.readouterr().err
    assert code != 0 and "cannot read metrics from" in err and "Traceback" not in err
