"""The parts of cluster mode that need no cluster: install hint, manifest, progress, resources, binding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cluster_clips import clip_camera
from streamd.cluster.camera_actor import bind_on_node
from streamd.cluster.manifest import Manifest, ManifestEntry, settings_digest
from streamd.cluster.planner import discover_inputs, output_path_for
from streamd.cluster.progress import BatchedReporter, JobProgress, format_progress
from streamd.cluster.ray_runtime import ClusterError
from streamd.cluster.resources import task_resources
from streamd.config import CameraConfig
from streamd.errors import SinkError, SourceError
from streamd.hashing import file_sha256


def test_without_ray_cluster_mode_says_how_to_install_it(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError('No module named ray', name='ray')\n")
    (tmp_path / "in").mkdir()
    env_path = f"{blocker.parent}:{Path(__file__).resolve().parents[2]}"
    completed = subprocess.run(
        [sys.executable, "-m", "streamd.cli", "anonymize", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
         "--cluster", "auto"], capture_output=True, text=True, timeout=60, env={"PYTHONPATH": env_path,
                                                                                 "PATH": "/usr/bin:/bin"})
    assert completed.returncode == 1
    assert completed.stderr.strip() == "streamd: error: cluster mode needs Ray: pip install 'streamd[cluster]'"


def test_settings_digest_follows_what_changes_the_pixels(tmp_path: Path) -> None:
    base = clip_camera(tmp_path / "a.mp4")
    assert settings_digest(base) == settings_digest(clip_camera(tmp_path / "elsewhere.mp4"))
    assert settings_digest(base) != settings_digest(clip_camera(tmp_path / "a.mp4", method="mosaic"))


def test_manifest_skips_only_an_identical_finished_output(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    output.write_bytes(b"finished output")
    manifest = Manifest(tmp_path / "streamd-archive.json")
    manifest.record("a.mp4", ManifestEntry("in-hash", "settings", str(output), "done", frames=3,
                                           output_sha256=file_sha256(output)))
    loaded = Manifest.load(tmp_path)
    assert loaded.is_done("a.mp4", "in-hash", "settings", output)
    assert not loaded.is_done("a.mp4", "other-input", "settings", output)
    assert not loaded.is_done("a.mp4", "in-hash", "other-settings", output)
    output.write_bytes(b"tampered")
    assert not loaded.is_done("a.mp4", "in-hash", "settings", output)
    (tmp_path / "streamd-archive.json").write_text("{not json")
    with pytest.raises(SinkError, match="unreadable archive manifest"):
        Manifest.load(tmp_path)


def test_inputs_are_found_recursively_and_outputs_mirror_them(tmp_path: Path) -> None:
    source = tmp_path / "in"
    (source / "day1").mkdir(parents=True)
    for name in ("day1/cam.mov", "b.mp4", "photo.jpg", "readme.txt", ".hidden.mp4"):
        (source / name).write_bytes(b"x")
    found = discover_inputs(source, tmp_path / "out")
    assert [(item.name, item.kind) for item in found] == [("b.mp4", "video"), ("day1/cam.mov", "video"),
                                                          ("photo.jpg", "image")]
    assert output_path_for(Path("day1/cam.mov"), tmp_path / "out") == tmp_path / "out" / "day1" / "cam.mkv"
    with pytest.raises(SinkError):
        discover_inputs(source, source)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no video"):
        discover_inputs(empty, tmp_path / "o")


def test_progress_line_and_batching() -> None:
    sent: list[int] = []
    reporter = BatchedReporter(sent.append)
    for _ in range(60):
        reporter(1)
    reporter.flush()
    assert sum(sent) == 60 and len(sent) <= 4
    line = format_progress(JobProgress(files_total=4, files_done=1, files_failed=1, files_skipped=1,
                                       frames_total=1000, frames_done=250, elapsed_s=10.0))
    assert line == "files 3/4 (1 already done, 1 failed), frames 250/1000, 25.0 fps, ETA 0m30s"


def test_resources_come_from_the_method_unless_configured(tmp_path: Path) -> None:
    camera = clip_camera(tmp_path / "a.mp4")
    assert task_resources(camera) == {"num_cpus": 1.0, "num_gpus": 0.0}
    neural = CameraConfig.model_validate({**camera.model_dump(mode="json"), "anonymizer": {"method": "sdn"}})
    assert task_resources(neural)["num_cpus"] == 2.0
    configured = CameraConfig.model_validate({**camera.model_dump(mode="json"),
                                              "resources": {"num_cpus": 0.5, "num_gpus": 0.25, "memory": 2 << 30}})
    assert task_resources(configured) == {"num_cpus": 0.5, "num_gpus": 0.25, "memory": 2 << 30}


def test_outputs_bind_on_the_node_address(tmp_path: Path) -> None:
    camera = CameraConfig.model_validate({**clip_camera(tmp_path / "a.mp4").model_dump(mode="json"),
                                          "outputs": {"zmq": {"endpoint": "tcp://127.0.0.1:*"}}})
    assert bind_on_node(camera, "10.1.2.3").outputs.zmq.endpoint == "tcp://10.1.2.3:*"
    ipc = CameraConfig.model_validate({**camera.model_dump(mode="json"),
                                       "outputs": {"zmq": {"endpoint": "ipc:///tmp/cam.sock"}}})
    with pytest.raises(ClusterError, match="tcp://HOST:PORT"):
        bind_on_node(ipc, "10.1.2.3")


def test_reserving_more_does_not_redo_outputs(tmp_path: Path) -> None:
    camera = clip_camera(tmp_path / "a.mp4")
    bigger = CameraConfig.model_validate({**camera.model_dump(mode="json"), "resources": {"num_cpus": 4}})
    assert settings_digest(bigger) == settings_digest(camera)
