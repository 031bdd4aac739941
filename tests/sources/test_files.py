"""FileVideoSource and open_source on clips made with PyAV in tmp_path."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamd.config import FileSourceConfig
from streamd.errors import SourceError
from streamd.sources import FileVideoSource, open_source

WIDTH, HEIGHT, RATE = 64, 48, 25


def frame_value(index: int) -> int:
    return 40 + (index * 8) % 176


def make_clip(
    path: Path, frame_count: int = 30, corrupt_packets: tuple[int, ...] = (), faststart: bool = False
) -> Path:
    """Encode a flat-grey clip whose frame i has value frame_value(i); optionally replace packets by junk."""
    rng = np.random.default_rng(7)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=RATE, options={"g": "10", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        packet_number = 0

        def mux(packets: list[av.Packet]) -> None:
            nonlocal packet_number
            for packet in packets:
                if packet_number in corrupt_packets:
                    junk = av.Packet(rng.integers(0, 255, packet.size, dtype=np.uint8).tobytes())
                    junk.pts, junk.dts, junk.time_base = packet.pts, packet.dts, packet.time_base
                    junk.stream = packet.stream
                    packet = junk
                container.mux(packet)
                packet_number += 1

        for index in range(frame_count):
            pixels = np.full((HEIGHT, WIDTH, 3), frame_value(index), np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="bgr24")
            frame.pts = index
            mux(stream.encode(frame))
        mux(stream.encode(None))
    return path


def test_decodes_every_frame_with_pts_and_time_base(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frame_count=30)
    with FileVideoSource(clip) as source:
        assert source.is_live is False
        assert source.average_rate == RATE
        assert source.resolution_wh == (WIDTH, HEIGHT)
        assert source.frame_count_hint == 30
        frames = list(source.frames())
        time_base = source.time_base
    assert [f.index for f in frames] == list(range(30))
    ticks = round(1 / (RATE * time_base))
    assert [f.pts for f in frames] == [i * ticks for i in range(30)]
    assert all(f.time_base == time_base for f in frames)
    assert frames[0].resolution_wh == (WIDTH, HEIGHT)
    for frame in frames:
        assert abs(float(frame.bgr.mean()) - frame_value(frame.index)) < 6
    assert source.decode_errors == 0


def test_mkv_count_hint_from_duration(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mkv", frame_count=20)
    with FileVideoSource(clip) as source:
        assert source.time_base == Fraction(1, 1000)
        assert source.frame_count_hint == 20
        assert len(list(source.frames())) == 20


def test_loop_continues_index_and_pts(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frame_count=10)
    with FileVideoSource(clip, loop=True) as source:
        stream = source.frames()
        frames = [next(stream) for _ in range(25)]
        stream.close()
        ticks = round(1 / (RATE * source.time_base))
    assert [f.index for f in frames] == list(range(25))
    assert [f.pts for f in frames] == [i * ticks for i in range(25)]
    assert abs(float(frames[10].bgr.mean()) - frame_value(0)) < 6


def test_realtime_paces_to_timestamps(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frame_count=10)
    with FileVideoSource(clip, realtime=True) as source:
        started = time.monotonic()
        frames = list(source.frames())
        elapsed = time.monotonic() - started
    assert len(frames) == 10
    assert elapsed >= 9 / RATE - 0.02


def test_corrupt_packets_are_skipped_and_counted(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "damaged.mkv", frame_count=60, corrupt_packets=(20, 21, 35))
    with FileVideoSource(clip) as source:
        frames = list(source.frames())
    assert source.decode_errors >= 1
    assert 40 <= len(frames) < 60
    assert [f.index for f in frames] == list(range(len(frames)))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        FileVideoSource(tmp_path / "nope.mp4")


def test_directory_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="directory"):
        FileVideoSource(tmp_path)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(1).integers(0, 255, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match="not a video file"):
        FileVideoSource(path)


def test_truncated_mp4(tmp_path: Path) -> None:
    whole = make_clip(tmp_path / "whole.mp4", frame_count=30).read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SourceError, match="corrupt or truncated"):
        FileVideoSource(path)


def test_truncated_faststart_mp4_ends_early_without_crashing(tmp_path: Path) -> None:
    whole = make_clip(tmp_path / "whole.mp4", frame_count=30, faststart=True).read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with FileVideoSource(path) as source:
        frames = list(source.frames())
    assert 0 < len(frames) < 30


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello camera\n" * 50)
    with pytest.raises(SourceError, match="not a video file"):
        FileVideoSource(path)


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "tone.mka"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        samples = (np.sin(np.arange(8000) / 5) * 1000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(SourceError, match="no video stream.*audio"):
        FileVideoSource(path)


def test_unsupported_codec(tmp_path: Path) -> None:
    data = make_clip(tmp_path / "clip.mkv", frame_count=5).read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    path = tmp_path / "unknown_codec.mkv"
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/XYZ/ABC"))
    with pytest.raises(SourceError, match="unsupported video codec"):
        FileVideoSource(path)


def test_frames_can_be_iterated_again(tmp_path: Path) -> None:
    with FileVideoSource(make_clip(tmp_path / "clip.mp4", frame_count=5)) as source:
        first = [f.pts for f in source.frames()]
        second = [f.pts for f in source.frames()]
    assert first == second and len(first) == 5


def test_frames_after_close(tmp_path: Path) -> None:
    source = FileVideoSource(make_clip(tmp_path / "clip.mp4", frame_count=3))
    source.close()
    source.close()
    with pytest.raises(SourceError, match="closed"):
        next(source.frames())


def test_open_source_for_file_config(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frame_count=3)
    with open_source(FileSourceConfig(path=clip, loop=True)) as source:
        assert isinstance(source, FileVideoSource)
        assert source.loop is True and source.realtime is False
