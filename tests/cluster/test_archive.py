"""Archive mode on a two-node Ray cluster: exact joins, a failing input, the manifest, resuming after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from cluster_clips import HEIGHT, WIDTH, clip_camera, frame_times, write_gop_clip
from cluster_fixtures import local_cluster
from streamd.cluster.archive import ArchiveJob, ArchiveOptions
from streamd.cluster.manifest import MANIFEST_NAME
from streamd.cluster.planner import WORK_DIR_NAME
from streamd.demo_clip import load_face_sprites, render_demo_frames
from streamd.oneshot import anonymize_video

SEGMENT_FRAMES = 15


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and one worker node, each with 1 CPU, for this module's tests."""
    with local_cluster(head_cpus=1, worker_cpus=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two cuttable clips (one in a subfolder), a still, one file that is not a video, and a text file left out."""
    folder = tmp_path_factory.mktemp("footage")
    write_gop_clip(folder / "entrance.mp4", 40, gop=10)
    still, _ = next(render_demo_frames(load_face_sprites(), 1, (WIDTH, HEIGHT), 25))
    cv2.imwrite(str(folder / "still.png"), still)
    (folder / "lobby").mkdir()
    write_gop_clip(folder / "lobby" / "desk.mkv", 30, gop=10)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing after")
    (folder / "notes.txt").write_text("not footage")
    return folder


@pytest.fixture(scope="module")
def local_outputs(footage: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The plain whole-file runs the archive's outputs must match."""
    folder = tmp_path_factory.mktemp("local")
    outputs = {}
    for name in ("entrance.mp4", "lobby/desk.mkv"):
        output = folder / name.replace("/", "-")
        anonymize_video(footage / name, output, clip_camera(footage / name))
        outputs[name] = output
    return outputs


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamd.cli", *args]


def test_archive_matches_local_runs_and_reports_the_failing_input(ray_cluster, footage: Path, local_outputs,
                                                                   tmp_path: Path) -> None:
    output = tmp_path / "out"
    completed = subprocess.run(
        _cli("anonymize", str(footage), "-o", str(output), "--cluster", ray_cluster.address,
             "--segment-frames", str(SEGMENT_FRAMES), "--profile", "fast"),
        capture_output=True, text=True, timeout=240, env={**os.environ, "RAY_DEDUP_LOGS": "0"},
    )
    assert completed.returncode == 1, completed.stderr
    assert "failed broken.mp4:" in completed.stderr and "not a video file" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert "streamd: files " in completed.stderr and " fps, ETA " in completed.stderr
    assert "3 written, 0 already done, 1 failed" in completed.stdout
    for name, local in local_outputs.items():
        assert frame_times(output / name) == frame_times(local) == frame_times(footage / name)
    manifest = json.loads((output / MANIFEST_NAME).read_text())["entries"]
    assert {name: entry["status"] for name, entry in manifest.items()} == {
        "entrance.mp4": "done", "lobby/desk.mkv": "done", "still.png": "done", "broken.mp4": "failed"}
    assert cv2.imread(str(output / "still.png")).shape == (HEIGHT, WIDTH, 3)
    assert manifest["still.png"]["faces"] >= 4
    assert manifest["entrance.mp4"]["frames"] == 40
    assert not (output / WORK_DIR_NAME).exists()
    assert sorted(p.name for p in output.rglob("*") if p.is_file()) == sorted(
        ["desk.mkv", "entrance.mp4", "still.png", MANIFEST_NAME])

    again = subprocess.run(
        _cli("anonymize", str(footage), "-o", str(output), "--cluster", ray_cluster.address,
             "--segment-frames", str(SEGMENT_FRAMES), "--profile", "fast"),
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 1 and "0 written, 3 already done, 1 failed" in again.stdout


def test_changed_settings_redo_the_outputs(ray_cluster, footage: Path, tmp_path: Path) -> None:
    import ray

    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "entrance.mp4").write_bytes((footage / "entrance.mp4").read_bytes())
    output = tmp_path / "out"
    options = ArchiveOptions(segment_frames=SEGMENT_FRAMES)
    first = ArchiveJob(ray, folder, output, clip_camera(folder / "entrance.mp4", "solid"), options).run()
    assert list(first.written) == ["entrance.mp4"] and first.segments_run == 2
    same = ArchiveJob(ray, folder, output, clip_camera(folder / "entrance.mp4", "solid"), options).run()
    assert same.skipped == ["entrance.mp4"] and not same.written
    changed = ArchiveJob(ray, folder, output, clip_camera(folder / "entrance.mp4", "mosaic"), options).run()
    assert list(changed.written) == ["entrance.mp4"]


@pytest.mark.slow
def test_a_killed_job_resumes_from_its_finished_segments(ray_cluster, footage: Path, local_outputs,
                                                         tmp_path: Path) -> None:
    import ray

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "entrance.mp4").write_bytes((footage / "entrance.mp4").read_bytes())
    output = tmp_path / "out"
    driver = subprocess.Popen(
        _cli("anonymize", str(folder), "-o", str(output), "--cluster", ray_cluster.address,
             "--segment-frames", "10"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while not list((output / WORK_DIR_NAME).glob("*/segment-*.mp4")):
            assert time.monotonic() < deadline, "no segment finished"
            assert driver.poll() is None, "the job ended before a segment finished"
            time.sleep(0.05)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    assert not (output / "entrance.mp4").exists()
    resumed = ArchiveJob(ray, folder, output, clip_camera(folder / "entrance.mp4"),
                         ArchiveOptions(segment_frames=10)).run()
    assert list(resumed.written) == ["entrance.mp4"]
    assert resumed.segments_reused >= 1 and resumed.segments_run + resumed.segments_reused == 4
    assert frame_times(output / "entrance.mp4") == frame_times(local_outputs["entrance.mp4"])


def test_restorable_outputs_run_whole_and_keep_every_frame(ray_cluster, footage: Path, tmp_path: Path) -> None:
    """With recipients, each file is one recording with its own stream keys: not cut, every frame kept."""
    keys = subprocess.run(_cli("keys", "init", "--out", str(tmp_path / "keys")), capture_output=True, text=True,
                          timeout=60)
    assert keys.returncode == 0, keys.stderr
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "desk.mkv").write_bytes((footage / "lobby" / "desk.mkv").read_bytes())
    output = tmp_path / "out"
    completed = subprocess.run(
        _cli("anonymize", str(folder), "-o", str(output), "--cluster", ray_cluster.address, "--segment-frames", "10",
             "--recipient", str(tmp_path / "keys" / "restore.pub"), "--profile", "fast"),
        capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr
    assert frame_times(output / "desk.mkv") == frame_times(folder / "desk.mkv")
    listing = subprocess.run(_cli("restore", str(output / "desk.mkv"), "--list"), capture_output=True, text=True,
                             timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "30 frames" in listing.stdout
