"""Command-line endings: a closed output pipe ends quietly; record from nothing fails and says why."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

STREAMD = [sys.executable, "-m", "streamd.cli"]
VALID = "cameras:\n  - id: lobby\n    source: {type: rtsp, url: 'rtsp://127.0.0.1:1/x'}\n"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def test_output_into_a_closed_pipe_ends_quietly(tmp_path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text(VALID)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written, as after `| head` has its lines
    try:
        completed = subprocess.run([*STREAMD, "validate-config", str(config)], stdout=write_end,
                                   stderr=subprocess.PIPE, text=True, timeout=120, env=_env())
    finally:
        os.close(write_end)
    assert completed.returncode == 141
    assert completed.stderr == "", completed.stderr


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_record_from_a_dead_endpoint_exits_non_zero(tmp_path) -> None:
    endpoint = f"tcp://127.0.0.1:{_unused_port()}"
    completed = subprocess.run([*STREAMD, "record", endpoint, "--out", str(tmp_path / "rec"), "--duration", "1"],
                               capture_output=True, text=True, timeout=120, env=_env())
    assert completed.returncode == 1, completed.stderr
    assert "0 frames in 0 segment(s)" in completed.stderr
    assert f"streamd: error: no frame arrived from {endpoint}" in completed.stderr
    assert not list((tmp_path / "rec").iterdir())
