"""Audio is copied unchanged and in sync into anonymized videos (one-shot and a daemon file output)."""

from __future__ import annotations

import pytest
from av_clips import decoded_samples, stream_kinds, stream_span_s, write_clip

from streamd.app import open_stream
from streamd.cli import main
from streamd.config import CameraConfig, FileOutputConfig, FileSourceConfig, OutputsConfig

FRAMES = 50  # two seconds at 25 fps


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "aac"), (".mkv", "libopus")])
def test_anonymize_copies_audio_with_the_same_start_and_duration(tmp_path, capsys, suffix, codec) -> None:
    clip = write_clip(tmp_path / f"talk{suffix}", FRAMES, audio_codec=codec)
    output = tmp_path / f"out{suffix}"
    assert main(["anonymize", str(clip), "-o", str(output)]) == 0, capsys.readouterr().err
    assert stream_kinds(output) == ["video", "audio"]
    in_start, in_end, in_packets = stream_span_s(clip, "audio")
    out_start, out_end, out_packets = stream_span_s(output, "audio")
    assert (out_start, out_end, out_packets) == pytest.approx((in_start, in_end, in_packets), abs=1e-3)
    assert decoded_samples(output) == decoded_samples(clip)
    video_start, video_end, video_packets = stream_span_s(output, "video")
    assert video_packets == FRAMES
    assert abs(video_start - out_start) < 0.05, "audio and video start together, as in the input"
    assert abs((video_end - video_start) - (out_end - out_start)) < 0.1


def test_no_audio_drops_the_audio(tmp_path, capsys) -> None:
    clip = write_clip(tmp_path / "talk.mp4", FRAMES, audio_codec="aac")
    output = tmp_path / "silent.mp4"
    assert main(["anonymize", str(clip), "-o", str(output), "--no-audio"]) == 0, capsys.readouterr().err
    assert stream_kinds(output) == ["video"]


def test_a_clip_without_audio_stays_without(tmp_path, capsys) -> None:
    clip = write_clip(tmp_path / "mute.mkv", 10)
    output = tmp_path / "out.mkv"
    assert main(["anonymize", str(clip), "-o", str(output)]) == 0, capsys.readouterr().err
    assert stream_kinds(output) == ["video"]


def test_a_daemon_file_output_passes_the_audio_through(tmp_path) -> None:
    clip = write_clip(tmp_path / "cam.mkv", FRAMES, audio_codec="libopus")
    output = tmp_path / "cam-out.mkv"
    camera = CameraConfig(id="cam", source=FileSourceConfig(path=clip, realtime=False),
                          outputs=OutputsConfig(file=FileOutputConfig(path=output)))
    with open_stream(camera) as pipeline:
        pipeline.run()
    assert stream_kinds(output) == ["video", "audio"]
    assert stream_span_s(output, "audio") == pytest.approx(stream_span_s(clip, "audio"), abs=1e-3)


def test_a_looping_source_writes_no_audio(tmp_path) -> None:
    """A loop would need the audio shifted pass by pass; the output says so by having none."""
    clip = write_clip(tmp_path / "loop.mkv", 10, audio_codec="libopus")
    output = tmp_path / "loop-out.mkv"
    camera = CameraConfig(id="cam", source=FileSourceConfig(path=clip, loop=True),
                          outputs=OutputsConfig(file=FileOutputConfig(path=output)))
    seen = []
    with open_stream(camera, on_frame=lambda frame: (seen.append(frame), len(seen) >= 25 and pipeline.stop())) as pipeline:
        pipeline.run()
    assert len(seen) >= 25
    assert stream_kinds(output) == ["video"]
