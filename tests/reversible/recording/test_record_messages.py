"""What `streamd record` says: lost frames summed up, not one line per gap; a camera that is not
reversible named once, not as faces that lack keys."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import zmq
from service_helpers import free_tcp_port

from streamd.app import open_stream
from streamd.config import CameraConfig, FileSourceConfig, OutputsConfig, ZmqOutputConfig
from streamd.protocol import decode_event, decode_frame_message
from streamd.reversible.recording.recorder import Recorder

STREAMD = [sys.executable, "-m", "streamd.cli"]


def _published_messages(clip, endpoint: str) -> list[list[bytes]]:
    """Every message a non-reversible camera publishes for `clip`, as a subscriber receives it."""
    camera = CameraConfig(id="hall", source=FileSourceConfig(path=clip),
                          outputs=OutputsConfig(zmq=ZmqOutputConfig(endpoint=endpoint, send_hwm=1000)))
    messages: list[list[bytes]] = []
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        with open_stream(camera) as pipeline:
            socket.connect(endpoint)
            time.sleep(0.5)  # ZeroMQ's slow joiner: the subscription reaches the publisher
            pipeline.run()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if socket.poll(500):
                messages.append(socket.recv_multipart())
            elif messages:
                break
    finally:
        socket.close(linger=0)
        context.term()
    return messages


def test_lost_frames_are_summed_up_and_a_plain_camera_is_named_once(demo_clip, tmp_path, caplog) -> None:
    messages = _published_messages(demo_clip.path, f"tcp://127.0.0.1:{free_tcp_port()}")
    frames = [parts for parts in messages if parts[0].startswith(b"frame.")]
    assert len(frames) == 25
    from streamd.reversible.keys.host_keys import default_host_key_ref, load_host_key

    recorder = Recorder("tcp://127.0.0.1:1", tmp_path / "segments", segment_seconds=60,
                        host_key=load_host_key(default_host_key_ref()))
    lost = set(range(2, 24, 2))  # every other frame: eleven gaps
    with caplog.at_level(logging.WARNING, logger="streamd.reversible.recording.recorder"):
        for parts in messages:
            if parts[0].startswith(b"frame."):
                header, bgr, payload_parts = decode_frame_message(parts)
                if header["frame_index"] not in lost:
                    recorder.handle_frame(header, bgr, payload_parts)
            else:
                recorder.handle_event(decode_event(parts))
        recorder._report_missing(final=True)
        recorder.close_segment()
    summary = recorder.summary
    assert summary.frames_missing == len(lost)
    assert summary.camera_not_reversible
    texts = [record.getMessage() for record in caplog.records]
    missing_lines = [text for text in texts if "never arrived" in text]
    assert 1 <= len(missing_lines) <= 2, missing_lines  # one summary (two if the interval passed meanwhile)
    assert f"({len(lost)} in all;" in missing_lines[-1]
    assert [text for text in texts if "not reversible" in text] == [
        "camera hall is not reversible (its tracks start without wrapped keys): the recording anonymizes but can "
        "never be restored"]


def test_record_of_a_plain_camera_says_it_is_not_reversible(demo_clip, tmp_path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    camera = CameraConfig(id="hall", source=FileSourceConfig(path=demo_clip.path, loop=True, realtime=True),
                          outputs=OutputsConfig(zmq=ZmqOutputConfig(endpoint=endpoint)))
    with open_stream(camera) as pipeline:
        publisher = threading.Thread(target=pipeline.run, daemon=True)
        publisher.start()
        try:
            completed = subprocess.run(
                [*STREAMD, "record", endpoint, "--out", str(tmp_path / "rec"), "--duration", "6"],
                capture_output=True, text=True, timeout=120,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        finally:
            pipeline.stop()
            publisher.join(30)
    assert completed.returncode == 0, completed.stderr
    summary = completed.stderr.strip().splitlines()[-1]
    assert "camera hall is not reversible (its stream carries no track keys): the recording cannot be restored" \
        in summary, completed.stderr
    assert "faces seen before their track keys" not in completed.stderr
    assert completed.stderr.count("is not reversible") == 2  # the warning when seen, and the summary
