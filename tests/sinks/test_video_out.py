"""VideoFileWriter round trips, atomic output, subtitle metadata, and still-image helpers."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamd.errors import SinkError, SourceError
from streamd.sources.files import FileVideoSource
from streamd.sinks.video_out import VideoFileWriter, read_image, write_image

WIDTH, HEIGHT, RATE = 64, 48, Fraction(25)


def gradient(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    pixels[..., 1] = (40 + index * 8) % 216
    pixels[..., 2] = np.linspace(255, 0, height, dtype=np.uint8)[:, None]
    return pixels


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("suffix", "time_base", "pts_list"),
    [
        (".mkv", Fraction(1, 90000), [i * 3600 for i in range(20)] + [20 * 3600 + 1800, 21 * 3600 + 1800]),
        (".mp4", Fraction(1, 12800), [i * 512 for i in range(20)] + [20 * 512 + 256, 21 * 512 + 256]),
        (".mp4", Fraction(1, 25), list(range(22))),
    ],
)
def test_round_trip_keeps_frame_count_and_timestamps(
    tmp_path: Path, suffix: str, time_base: Fraction, pts_list: list[int]
) -> None:
    path = tmp_path / f"out{suffix}"
    with VideoFileWriter(path, (WIDTH, HEIGHT), time_base, RATE) as writer:
        for index, pts in enumerate(pts_list):
            writer.write(gradient(index), pts)
    assert leftovers(tmp_path) == []
    with FileVideoSource(path) as source:
        frames = list(source.frames())
    assert len(frames) == len(pts_list)
    assert [f.seconds for f in frames] == [float(pts * time_base) for pts in pts_list]
    for index, frame in enumerate(frames):
        assert np.abs(frame.bgr.astype(int) - gradient(index)).mean() < 4


def test_odd_size_is_padded_by_one_edge_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "odd.mkv"
    with VideoFileWriter(path, (63, 47), Fraction(1, 25), RATE) as writer:
        assert writer.encoded_resolution_wh == (64, 48)
        for index in range(5):
            writer.write(gradient(index, 63, 47), index)
    with FileVideoSource(path) as source:
        assert source.resolution_wh == (64, 48)
        assert len(list(source.frames())) == 5


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.mkv"
    writer = VideoFileWriter(path, (WIDTH, HEIGHT), Fraction(1, 25), RATE)
    for index in range(5):
        writer.write(gradient(index), index)
    assert leftovers(tmp_path) != []
    writer.abort()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_exception_inside_with_block_aborts(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoFileWriter(path, (WIDTH, HEIGHT), Fraction(1, 25), RATE) as writer:
            writer.write(gradient(0), 0)
            raise RuntimeError("pipeline failed")
    assert list(tmp_path.iterdir()) == []


def test_close_without_frames_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    writer = VideoFileWriter(tmp_path / "empty.mkv", (WIDTH, HEIGHT), Fraction(1, 25), RATE)
    with pytest.raises(SinkError, match="no frames"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    with pytest.raises(SinkError, match="not a folder") as caught:
        VideoFileWriter(not_a_folder / "out.mkv", (WIDTH, HEIGHT), Fraction(1, 25), RATE)
    assert "\n" not in str(caught.value)
    with pytest.raises(SinkError, match="does not exist"):
        VideoFileWriter(tmp_path / "missing" / "out.mkv", (WIDTH, HEIGHT), Fraction(1, 25), RATE)
    with pytest.raises(SinkError, match=r"\.mkv or \.mp4"):
        VideoFileWriter(tmp_path / "out.avi", (WIDTH, HEIGHT), Fraction(1, 25), RATE)


def test_bad_frames_are_refused(tmp_path: Path) -> None:
    writer = VideoFileWriter(tmp_path / "out.mkv", (WIDTH, HEIGHT), Fraction(1, 25), RATE)
    with pytest.raises(SinkError, match="opened for"):
        writer.write(np.zeros((HEIGHT + 2, WIDTH, 3), np.uint8), 0)
    writer.write(gradient(0), 5)
    with pytest.raises(SinkError, match="does not increase"):
        writer.write(gradient(1), 5)
    writer.abort()


def test_subtitle_stream_round_trips_json_byte_exact(tmp_path: Path) -> None:
    path = tmp_path / "meta.mkv"
    time_base = Fraction(1, 90000)
    payloads = [
        json.dumps({"frame_index": i, "faces": [{"track_id": i % 3, "xyxy": [1.5, 2.25, 30.0, 40.125]}], "note": "é\n"},
                   ensure_ascii=False).encode("utf-8")
        for i in range(12)
    ]
    with VideoFileWriter(path, (WIDTH, HEIGHT), time_base, RATE) as writer:
        metadata_stream = writer.add_subtitle_stream(title="streamd.frame")
        for index, payload in enumerate(payloads):
            writer.write_text_packet(metadata_stream, payload, index * 3600, time_base)
            writer.write(gradient(index), index * 3600)
    with av.open(str(path)) as container:
        assert len(container.streams.video) == 1
        subtitle_stream = container.streams.subtitles[0]
        assert subtitle_stream.metadata.get("title") == "streamd.frame"
        packets = [p for p in container.demux(subtitle_stream) if p.size]
        assert [bytes(p) for p in packets] == payloads
        assert [float(p.pts * p.time_base) for p in packets] == [i * 0.04 for i in range(12)]


def test_subtitle_stream_rules(tmp_path: Path) -> None:
    mp4_writer = VideoFileWriter(tmp_path / "out.mp4", (WIDTH, HEIGHT), Fraction(1, 25), RATE)
    with pytest.raises(SinkError, match="needs an .mkv"):
        mp4_writer.add_subtitle_stream()
    mp4_writer.abort()
    writer = VideoFileWriter(tmp_path / "out.mkv", (WIDTH, HEIGHT), Fraction(1, 25), RATE)
    writer.write(gradient(0), 0)
    with pytest.raises(SinkError, match="before the first frame"):
        writer.add_subtitle_stream()
    writer.abort()


def test_image_round_trip_and_errors(tmp_path: Path) -> None:
    image = gradient(3)
    write_image(tmp_path / "a.png", image)
    assert np.array_equal(read_image(tmp_path / "a.png"), image)
    write_image(tmp_path / "a.jpg", image)
    assert np.abs(read_image(tmp_path / "a.jpg").astype(int) - image).mean() < 4
    assert leftovers(tmp_path) == []
    with pytest.raises(SourceError, match="not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(SourceError, match="not an image"):
        read_image(tmp_path / "text.png")
    with pytest.raises(SinkError, match="unsupported image type"):
        write_image(tmp_path / "a.gifx", image)
    with pytest.raises(SinkError, match="does not exist"):
        write_image(tmp_path / "missing" / "a.png", image)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_both_colour_conversions_decode_back_to_the_picture(tmp_path: Path) -> None:
    from streamd import sample_faces

    photo = sample_faces.astronaut_bgr()[:256, :320]
    decoded = {}
    for conversion in ("opencv", "swscale"):
        path = tmp_path / f"{conversion}.mkv"
        with VideoFileWriter(path, (320, 256), Fraction(1, 25), RATE, crf=0, bgr_to_yuv=conversion) as writer:
            for index in range(3):
                writer.write(photo, index)
        with FileVideoSource(path) as source:
            decoded[conversion] = [frame.bgr for frame in source.frames()]
    assert len(decoded["opencv"]) == len(decoded["swscale"]) == 3
    opencv, swscale = _psnr(decoded["opencv"][0], photo), _psnr(decoded["swscale"][0], photo)
    # Lossless coding: what is left is the colour conversion and 4:2:0, where OpenCV's is the closer.
    assert opencv > 38.0 and swscale > 35.0
    assert opencv > swscale
    with pytest.raises(ValueError, match="bgr_to_yuv"):
        VideoFileWriter(tmp_path / "x.mkv", (320, 256), Fraction(1, 25), RATE, bgr_to_yuv="fast")


def _x264_settings(path: Path) -> bytes:
    """The settings x264 writes into its first packet (an SEI message)."""
    with av.open(str(path)) as container:
        packet = next(p for p in container.demux(video=0) if p.size)
        return bytes(packet)


def test_outputs_use_the_diamond_search_and_generated_clips_the_preset_alone(tmp_path: Path) -> None:
    from streamd.sinks.video_out import GENERATED_CLIP_ENCODING

    for name, extra in (("output", {}), ("generated", GENERATED_CLIP_ENCODING)):
        with VideoFileWriter(tmp_path / f"{name}.mp4", (WIDTH, HEIGHT), Fraction(1, 25), RATE, **extra) as writer:
            for index in range(3):
                writer.write(gradient(index), index)
    assert b"me=dia" in _x264_settings(tmp_path / "output.mp4")
    assert b"me=hex" in _x264_settings(tmp_path / "generated.mp4")  # veryfast's own search
