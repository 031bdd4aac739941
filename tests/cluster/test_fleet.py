"""Fleet mode on a two-node Ray cluster: cameras as actors, their addresses for tail and record,
status, metrics per node, and reload on SIGHUP."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from cluster_clips import fleet_config_text, write_gop_clip
from cluster_fixtures import local_cluster
from fleet_helpers import CheckingSubscriber, FleetProcess, fleet_up, placements, wait_for
from streamd.cluster.registry import fleet_camera_ids

CAMERAS = ["gate", "yard"]
START_TIMEOUT_S = 90


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and one worker node, each with 1 CPU, for this module's tests."""
    with local_cluster(head_cpus=1, worker_cpus=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def fleet(ray_cluster, tmp_path_factory: pytest.TempPathFactory):
    import ray

    folder = tmp_path_factory.mktemp("fleet")
    clip = folder / "clip.mp4"
    truth = write_gop_clip(clip, 40, gop=10, fps=10)
    metrics_port = _free_port()
    config = folder / "fleet.yaml"
    config.write_text(fleet_config_text(clip, CAMERAS, metrics_port))
    with FleetProcess(config, ray_cluster.address, folder / "fleet.log") as process:
        wait_for(lambda: fleet_up(ray, CAMERAS), START_TIMEOUT_S, "both cameras bound their outputs")
        yield {"process": process, "config": config, "clip": clip, "truth": truth, "metrics_port": metrics_port,
               "address": ray_cluster.address, "folder": folder}


def _cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamd.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_each_camera_runs_on_its_own_node_and_binds_there(fleet, ray_cluster) -> None:
    import ray

    found = fleet_up(ray, CAMERAS)
    assert found is not None
    assert len({entry["node_id"] for entry in found.values()}) == 2
    for entry in found.values():
        assert entry["endpoint"].startswith(f"tcp://{entry['node_ip']}:")


def test_tail_and_record_resolve_a_camera_by_name(fleet, tmp_path: Path) -> None:
    tail = _cli("tail", "gate", "--cluster", "--ray-address", fleet["address"], "--count", "5", "--seconds", "30")
    assert tail.returncode == 0, tail.stderr
    assert "camera gate publishes on tcp://" in tail.stderr
    assert "gate" in tail.stdout
    record = _cli("record", "yard", "--cluster", "--ray-address", fleet["address"], "--out", str(tmp_path),
                  "--duration", "4")
    assert record.returncode == 0, record.stderr
    files = list(tmp_path.glob("*.mkv"))
    assert files, record.stderr
    assert all("yard" in path.name for path in files)


def test_an_unknown_camera_is_one_clear_line(fleet) -> None:
    tail = _cli("tail", "nowhere", "--cluster", "--ray-address", fleet["address"], "--count", "1")
    assert tail.returncode == 1
    assert tail.stderr.strip().splitlines()[-1].startswith("streamd: error: no camera 'nowhere' runs on this Ray")
    assert "Traceback" not in tail.stderr


def test_status_and_metrics_cover_the_whole_fleet(fleet) -> None:
    import ray

    wait_for(lambda: all(snapshot.state == "up" for snapshot in ray.get(
        [ray.get_actor(f"camera:{camera}").snapshot.remote() for camera in CAMERAS])), 60, "both cameras up")
    status = _cli("status", "--cluster", "--ray-address", fleet["address"])
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split()[:2] == ["CAMERA", "STATE"]
    assert sorted(line.split()[0] for line in lines[1:]) == CAMERAS
    assert all(line.split()[1] == "up" for line in lines[1:])
    found = placements(ray, CAMERAS)

    def metrics() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{fleet['metrics_port']}/metrics", timeout=5) as answer:
            return answer.read().decode()

    text = wait_for(lambda: (lambda body: body if all(f'camera="{c}"' in body for c in CAMERAS) else None)(metrics()),
                    30, "metrics of both cameras")
    for camera_id, entry in found.items():
        assert (f'streamd_camera_node_info{{camera="{camera_id}",node_id="{entry["node_id"]}",'
                f'node_ip="{entry["node_ip"]}"}} 1') in text
        assert f'streamd_frames_out_total{{camera="{camera_id}"}}' in text


def test_sighup_reload_stops_removed_restarts_changed_and_keeps_the_rest(fleet) -> None:
    import ray

    before = placements(ray, CAMERAS)
    original = fleet["config"].read_text()
    try:
        fleet["config"].write_text(fleet_config_text(fleet["clip"], ["gate"], fleet["metrics_port"]))
        fleet["process"].reload()
        wait_for(lambda: fleet_camera_ids(ray) == ["gate"], 60, "yard stopped")
        changed = original.replace("method: solid}", "method: solid, margin: 0.3}", 1)  # changes gate only
        fleet["config"].write_text(changed)
        fleet["process"].reload()
        after = wait_for(lambda: (lambda found: found if found and found["gate"]["started_at"] != before["gate"][
            "started_at"] and "yard" in found else None)(fleet_up(ray, CAMERAS)), 90, "gate restarted, yard back")
        assert after["yard"]["started_at"] != before["yard"]["started_at"]
    finally:
        fleet["config"].write_text(original)
    fleet["process"].reload()
    wait_for(lambda: (lambda found: found if found and found["gate"]["started_at"] != after["gate"]["started_at"]
                      else None)(fleet_up(ray, CAMERAS)), 90, "fleet back to the original config")


def test_frames_on_the_wire_are_anonymized(fleet) -> None:
    import ray

    def resolve() -> str | None:
        found = fleet_up(ray, CAMERAS)
        return found["gate"]["endpoint"] if found else None

    subscriber = CheckingSubscriber(resolve, fleet["truth"])
    try:
        wait_for(lambda: subscriber.frames >= 20, 60, "20 frames from gate")
    finally:
        subscriber.close()
    assert subscriber.unmasked == []
