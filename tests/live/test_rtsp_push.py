"""RTSP for players that want it: the live HLS pushed to an RTSP server with ANNOUNCE/RECORD, as
`ffmpeg -i http://.../live/CAMERA/index.m3u8 -c copy -f rtsp rtsp://mediamtx:8554/CAMERA` does
(docs/live-view.md), here with PyAV (the same libavformat) and a loopback RTSP server that records."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import pytest
from live_helpers import face_box, face_core_mean, face_picture, is_fill, live_config, write_face_clip
from rtsp_record_server import RtspRecordServer
from service_helpers import RunningService

pytestmark = pytest.mark.timeout(120)

PACKETS_TO_PUSH = 25
PUSHER = Path(__file__).resolve().parents[1] / "hls_to_rtsp.py"


def push_hls_to_rtsp(playlist_url: str, rtsp_url: str, packets: int) -> int:
    """Run tests/hls_to_rtsp.py in its own process; the packets it copied."""
    completed = subprocess.run([sys.executable, str(PUSHER), playlist_url, rtsp_url, str(packets)],
                               capture_output=True, text=True, timeout=90)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return int(completed.stdout.strip())


def test_live_hls_pushed_to_an_rtsp_server_carries_anonymized_frames(tmp_path: Path) -> None:
    clip = write_face_clip(tmp_path / "face.mp4")
    box = face_box(face_picture())
    with RunningService(live_config(clip)) as running, RtspRecordServer() as server:
        base = running.service.metrics_server.base_url
        copied = push_hls_to_rtsp(base + "/live/lobby/index.m3u8", server.url("lobby"), PACKETS_TO_PUSH)
    assert copied == PACKETS_TO_PUSH
    assert server.methods[:1] == ["OPTIONS"] and {"ANNOUNCE", "SETUP", "RECORD"} <= set(server.methods)
    assert "H264/90000" in server.sdp
    codec = av.CodecContext.create("h264", "r")
    frames = [frame.to_ndarray(format="bgr24") for packet in codec.parse(server.received_h264())
              for frame in codec.decode(packet)]
    frames += [frame.to_ndarray(format="bgr24") for frame in codec.decode(None)]
    assert len(frames) >= PACKETS_TO_PUSH // 2, f"{len(frames)} frames decoded from {server.rtp_packets} RTP packets"
    for bgr in frames:
        assert bgr.shape == (360, 640, 3)
        assert is_fill(face_core_mean(bgr, box)), "a frame pushed over RTSP shows the face"
