"""validate-config catches what would fail at run time; config errors name the key that was meant;
a camera with a permanent error stops in a `failed` state instead of retrying forever."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from av_clips import write_clip
from service_helpers import DETECTOR, RunningService, service_config, wait_until

from streamd.cli import main
from streamd.config import CenterFaceConfig, parse_config
from streamd.errors import ConfigError
from streamd.service.daemon import StreamService
from streamd.service.supervisor import CameraState

CAMERA = "cameras:\n  - id: a\n    source:\n      type: file\n      path: in.mp4\n"


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cam.yaml")
    return str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [
    (CAMERA + "    detector:\n      type: centerface\n      treshold: 0.3\n",
     "cam.yaml:8: cameras.0.detector.treshold: unknown key (did you mean 'threshold'?)"),
    (CAMERA + "    detector:\n      treshold: 0.3\n",
     "cam.yaml:7: cameras.0.detector.treshold: unknown key (did you mean 'threshold'?)"),
    (CAMERA + "    trakcer:\n      detect_every: 2\n",
     "cam.yaml:6: cameras.0.trakcer: unknown key (did you mean 'tracker'?)"),
    (CAMERA + "    colour: red\n", "cam.yaml:6: cameras.0.colour: unknown key"),
    ("cameras:\n  - id: a\n    source:\n      typ: rtsp\n      url: rtsp://cam/1\n",
     "cam.yaml:4: cameras.0.source.typ: unknown key (did you mean 'type'? it says what this is: file or rtsp)"),
    ("cameras:\n  - id: a\n    source:\n      url: rtsp://cam/1\n",
     "cam.yaml:3: cameras.0.source: `type` is missing; it says what this is: file or rtsp"),
    ("cameras:\n  - id: a\n    source:\n      type: rtps\n      url: rtsp://cam/1\n",
     "cam.yaml:4: cameras.0.source.type: 'rtps' is not one of file, rtsp (did you mean 'rtsp'?)"),
    (CAMERA + "      path: other.mp4\n",
     "cam.yaml:6: cameras.0.source.path: key given twice (first on line 5; only one may stay)"),
    ("cameras:\n  - id: a\n    sorce: {type: file, path: in.mp4}\n",
     "cam.yaml:3: cameras.0.sorce: unknown key (did you mean 'source'?) (and 1 more problem)"),
    (CAMERA + "    detector: 5\n",
     "cam.yaml:6: cameras.0.detector: must be a section of keys, starting with `type` (centerface or insightface)"),
    ("log_level: INFO\n" + CAMERA + "log_level: DEBUG\n",
     "cam.yaml:7: log_level: key given twice (first on line 1; only one may stay)"),
])
def test_config_errors_name_the_key_and_its_line(text: str, expected: str) -> None:
    message = config_error(text)
    assert message == expected
    assert "Unable to extract tag" not in message


def test_a_detector_without_type_is_centerface() -> None:
    camera = parse_config(CAMERA + "    detector:\n      threshold: 0.3\n").cameras[0]
    assert isinstance(camera.detector, CenterFaceConfig) and camera.detector.threshold == 0.3


def validate(capsys, tmp_path: Path, text: str) -> tuple[int, list[str]]:
    path = tmp_path / "cams.yaml"
    path.write_text(text)
    code = main(["validate-config", str(path)])
    captured = capsys.readouterr()
    return code, captured.err.splitlines() + captured.out.splitlines()


def test_validate_config_reports_what_would_fail_at_run_time(tmp_path, capsys) -> None:
    clip = write_clip(tmp_path / "in.mp4", 5)
    text = f"""\
metrics:
  listen: 127.0.0.1:7301
cameras:
  - id: gone
    source: {{type: file, path: {tmp_path / 'missing.mp4'}}}
    outputs:
      file: {{path: {tmp_path / 'no-such-folder' / 'out.mp4'}}}
  - id: one
    source: {{type: file, path: {clip}}}
    outputs:
      zmq: {{endpoint: 'tcp://*:7302'}}
      file: {{path: {tmp_path / 'out.mp4'}}}
  - id: two
    source: {{type: file, path: {clip}}}
    outputs:
      zmq: {{endpoint: 'tcp://127.0.0.1:7302'}}
      file: {{path: {tmp_path / 'out.mp4'}}}
  - id: three
    source: {{type: file, path: {clip}}}
    outputs:
      zmq: {{endpoint: 'tcp://127.0.0.1:7301'}}
"""
    code, lines = validate(capsys, tmp_path, text)
    assert code == 2
    where = str(tmp_path / "cams.yaml")
    assert lines == [
        f"streamd: error: {where}:5: cameras.0.source.path: {tmp_path / 'missing.mp4'}: no such file",
        f"streamd: error: {where}:7: cameras.0.outputs.file.path: {tmp_path / 'no-such-folder' / 'out.mp4'}: "
        f"output folder {tmp_path / 'no-such-folder'} does not exist",
        f"streamd: error: {where}:17: cameras.2.outputs.file.path: {tmp_path / 'out.mp4'}: camera one writes this "
        "file already",
        f"streamd: error: {where}:16: cameras.2.outputs.zmq.endpoint: camera two's ZeroMQ output binds the address "
        "that camera one's ZeroMQ output binds already; give each its own port",
        f"streamd: error: {where}:21: cameras.3.outputs.zmq.endpoint: camera three's ZeroMQ output binds the address "
        "that the metrics server binds already; give each its own port",
    ]


def test_validate_config_says_ok_when_all_is_there(tmp_path, capsys) -> None:
    clip = write_clip(tmp_path / "in.mp4", 5)
    code, lines = validate(capsys, tmp_path, f"cameras:\n  - id: a\n    source: {{type: file, path: {clip}}}\n"
                                             f"    outputs:\n      file: {{path: {tmp_path / 'o.mp4'}}}\n")
    assert code == 0 and lines == [f"{tmp_path / 'cams.yaml'}: ok (1 camera: a)"]


def _file_camera(camera_id: str, path: Path, **extra) -> dict:
    return {"id": camera_id, "source": {"type": "file", "path": str(path), **extra}, "detector": DETECTOR}


def test_a_permanent_error_stops_the_camera_in_a_failed_state(tmp_path) -> None:
    clip = write_clip(tmp_path / "in.mp4", 25, size_wh=(320, 240))
    missing_output = _file_camera("nofolder", clip)
    missing_output["outputs"] = {"file": {"path": str(tmp_path / "gone" / "out.mp4")}}
    config = service_config([
        _file_camera("steady", clip, loop=True, realtime=True),
        _file_camera("missing", tmp_path / "missing.mp4"),
        missing_output,
    ])
    with RunningService(config) as running:
        for camera_id in ("missing", "nofolder"):
            wait_until(lambda: running.worker(camera_id).state == CameraState.FAILED, 30, f"{camera_id} failed")
        time.sleep(1.5)  # a camera that retried would have restarted a few times by now (restart_initial_s 0.2)
        for camera_id, reason in (("missing", "video file not found"), ("nofolder", "does not exist")):
            worker = running.worker(camera_id)
            assert worker.state == CameraState.FAILED and worker.restarts == 0
            assert reason in worker.last_error
            assert running.metric("streamd_camera_state", camera=camera_id, state="failed") == 1
        assert running.worker("steady").state == CameraState.UP
    assert running.exit_code == 1, "a service that had a failed camera exits non-zero"


def test_a_service_whose_cameras_all_failed_ends_non_zero(tmp_path) -> None:
    config = service_config([_file_camera("missing", tmp_path / "missing.mp4")])
    assert StreamService(config, environ={}).run() == 1
