"""Sources hand on the decoded yuv420p planes, upright, only when asked; frames they cannot serve go
without, and the stream says so once."""

from __future__ import annotations

import logging
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from rtsp_server import RtspTestServer

from streamd.app import open_stream
from streamd.config import AnonymizerConfig, CameraConfig, FileSourceConfig, ReversibleConfig, RtspSourceConfig
from streamd.reversible.keys.restore_keys import generate_restore_keypair
from streamd.sources import open_source
from streamd.sources.files import FileVideoSource
from streamd.sources.orientation import write_rotated_clip
from streamd.sources.rtsp import RtspVideoSource
from streamd.types import VideoFrame

UPRIGHT_WH = (160, 96)


def _scene(index: int) -> np.ndarray:
    """An upright frame whose four quadrants differ in colour, with texture, so a wrong turn shows."""
    width, height = UPRIGHT_WH
    rng = np.random.default_rng(index)
    scene = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    scene[:height // 2, :width // 2] += np.array([180, 40, 40], np.uint8)
    scene[:height // 2, width // 2:] += np.array([40, 180, 40], np.uint8)
    scene[height // 2:, :width // 2] += np.array([40, 40, 180], np.uint8)
    scene[height // 2:, width // 2:] += np.array([150, 150, 150], np.uint8)
    return scene


def _planes_psnr(frame: VideoFrame) -> float:
    """PSNR of the frame's planes, as BGR, against its own BGR pixels (the same decode both ways)."""
    assert frame.yuv420 is not None
    height, width = frame.yuv420.y.shape
    stacked = np.concatenate([frame.yuv420.y, frame.yuv420.u.reshape(height // 4, width),
                              frame.yuv420.v.reshape(height // 4, width)])
    as_bgr = cv2.cvtColor(stacked, cv2.COLOR_YUV2BGR_I420)
    mse = float(np.mean((as_bgr.astype(np.float64) - frame.bgr.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-9))


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_file_planes_are_turned_upright_like_the_bgr_pixels(tmp_path: Path, rotation: int) -> None:
    clip = write_rotated_clip([_scene(index) for index in range(4)], tmp_path / "clip.mp4", rotation, 25)
    with FileVideoSource(clip, keep_yuv420=True) as source:
        frames = list(source.frames())
    assert len(frames) == 4
    for frame in frames:
        assert frame.resolution_wh == UPRIGHT_WH
        assert frame.yuv420 is not None and frame.yuv420.y.shape == (UPRIGHT_WH[1], UPRIGHT_WH[0])
        # Planes turned any other way than the BGR pixels would mix up the quadrants: far below 30 dB.
        assert _planes_psnr(frame) > 30.0


def test_frames_carry_no_planes_unless_asked(tmp_path: Path) -> None:
    clip = write_rotated_clip([_scene(index) for index in range(2)], tmp_path / "clip.mp4", 0, 25)
    with FileVideoSource(clip) as source:
        assert all(frame.yuv420 is None for frame in source.frames())
    with open_source(FileSourceConfig(path=clip)) as source:
        assert all(frame.yuv420 is None for frame in source.frames())


@pytest.mark.parametrize("sealed_payloads", [True, False])
def test_a_camera_asks_for_planes_only_when_it_seals_faces(tmp_path: Path, sealed_payloads: bool) -> None:
    clip = write_rotated_clip([_scene(index) for index in range(2)], tmp_path / "clip.mp4", 0, 25)
    keys = generate_restore_keypair(tmp_path / "keys", None)
    camera = CameraConfig(id="cam", source=FileSourceConfig(path=clip), anonymizer=AnonymizerConfig(method="solid"),
                          reversible=ReversibleConfig(recipients=[str(keys.public_key_path)],
                                                      sealed_payloads=sealed_payloads))
    with open_stream(camera) as pipeline:
        frames = list(pipeline.source.frames())
    assert len(frames) == 2
    assert all((frame.yuv420 is not None) == sealed_payloads for frame in frames)


def _full_range_clip(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = UPRIGHT_WH[0], UPRIGHT_WH[1], "yuvj420p"
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(_scene(index), format="bgr24").reformat(format="yuvj420p")
            frame.pts, frame.time_base = index, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_full_range_frames_go_without_planes_and_the_stream_says_so_once(tmp_path: Path, caplog) -> None:
    clip = _full_range_clip(tmp_path / "full.mp4")
    with caplog.at_level(logging.INFO, logger="streamd.sources.planes"):
        with FileVideoSource(clip, keep_yuv420=True) as source:
            frames = list(source.frames())
    assert len(frames) == 3 and all(frame.yuv420 is None for frame in frames)
    said = [record.getMessage() for record in caplog.records if record.name == "streamd.sources.planes"]
    assert len(said) == 1 and "from BGR pixels" in said[0], said


def test_rtsp_planes_are_turned_upright_with_the_rotation_setting(tmp_path: Path) -> None:
    clip = write_rotated_clip([_scene(index % 4) for index in range(50)], tmp_path / "sideways.mp4", 90, 25)
    stripped = tmp_path / "stored.mp4"  # as a camera sends it: stored sideways, no display matrix on the wire
    with av.open(str(clip)) as source_container, av.open(str(stripped), "w") as target:
        source_stream = source_container.streams.video[0]
        stream = target.add_stream_from_template(source_stream)
        for packet in source_container.demux(source_stream):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    with RtspTestServer(stripped, speed=4.0) as server:
        source = RtspVideoSource(RtspSourceConfig(url=server.url, rotation=90, open_timeout_s=5.0, read_timeout_s=5.0,
                                                  reconnect_initial_s=0.05, reconnect_max_s=0.2), keep_yuv420=True)
        watchdog = threading.Timer(10.0, source.close)
        watchdog.start()
        frames: list[VideoFrame] = []
        try:
            for frame in source.frames():
                frames.append(frame)
                if len(frames) >= 3:
                    break
        finally:
            watchdog.cancel()
            source.close()
    assert len(frames) == 3
    for frame in frames:
        assert frame.resolution_wh == UPRIGHT_WH
        assert _planes_psnr(frame) > 30.0
