"""An RTSP camera's audio passed through to the file outputs: the loopback test server sends H.264 and
AAC (RFC 3640), the daemon's camera writes the anonymized video with the camera's audio, in sync, across
a server restart, and signed in a reversible camera's recording."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av_clips import stream_kinds, stream_span_s, with_tone
from restore_helpers import make_keypair
from rtsp_server import RtspTestServer, make_h264_clip
from service_helpers import FPS, HEIGHT, WIDTH, RunningService, rtsp_camera, service_config, wait_until

from streamd.cli import main
from streamd.reversible.recording.authenticity import verify_recording
from streamd.reversible.keys.host_keys import TrustStore
from streamd.reversible.recording.recording_format import read_recording
from streamd.sources.live_audio import AudioTrack, LiveAudioFeed, LiveAudioPacket
from streamd.service.supervisor import CameraState
from streamd.sinks.video_out import VideoFileWriter

pytestmark = pytest.mark.timeout(120)

SAMPLE_RATE = 48000
SYNC_TOLERANCE_S = 0.2


@pytest.fixture(scope="module")
def talking_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of H.264 with a 440 Hz AAC tone as long as the video."""
    folder = tmp_path_factory.mktemp("rtsp-audio")
    video = make_h264_clip(folder / "video.mp4", WIDTH, HEIGHT, FPS, seconds=2.0, gop=10)
    return with_tone(video, folder / "talking.mp4", "aac", SAMPLE_RATE)


@pytest.fixture
def server(talking_clip: Path) -> Iterator[RtspTestServer]:
    with RtspTestServer(talking_clip, audio=True) as running:
        yield running


def camera_with_file(server: RtspTestServer, output: Path, audio: bool = True) -> dict:
    camera = rtsp_camera("cam", server.url)
    camera["outputs"] = {"file": {"path": str(output), "audio": audio}}
    return camera


def record(camera: dict, frames: int, server: RtspTestServer | None = None) -> None:
    """Run the daemon with `camera` until `frames` frames went out (and, with `server`, once more after
    a server restart), then stop it, which finishes the file output."""
    with RunningService(service_config([camera])) as running:
        running.wait_frames("cam", frames, timeout_s=30)
        if server is not None:
            server.stop()
            wait_until(lambda: running.worker("cam").state == CameraState.DOWN, 10, "camera seen down")
            time.sleep(0.5)
            server.start()
            wait_until(lambda: running.worker("cam").state == CameraState.UP, 20, "camera up again")
            running.wait_frames("cam", frames, timeout_s=30)


def audio_packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as container:
        return [packet for packet in container.demux(container.streams.audio[0]) if packet.size]


def test_camera_audio_is_written_with_its_codec_and_rate_and_lasts_as_long_as_the_video(
        server: RtspTestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    output = tmp_path / "cam.mkv"
    with caplog.at_level(logging.INFO, logger="streamd.sinks.audio"):
        record(camera_with_file(server, output), frames=40)
    assert stream_kinds(output) == ["video", "audio"]
    with av.open(str(output)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.sample_rate == SAMPLE_RATE
        assert audio.channels == 1
    video_start, video_end, frames = stream_span_s(output, "video")
    audio_start, audio_end, packets = stream_span_s(output, "audio")
    assert frames >= 40 and packets >= 0.9 * frames / FPS * SAMPLE_RATE / 1024
    assert abs((audio_end - audio_start) - (video_end - video_start)) < SYNC_TOLERANCE_S
    assert abs(audio_start - video_start) < SYNC_TOLERANCE_S
    with av.open(str(output)) as container:
        assert sum(frame.samples for frame in container.decode(audio=0)) > SAMPLE_RATE  # it decodes
    written = [record.getMessage() for record in caplog.records if "writing the camera's audio" in record.getMessage()]
    assert written == [f"{output}: writing the camera's audio (aac 48000 Hz mono), unchanged"]


def test_audio_false_writes_video_only(server: RtspTestServer, tmp_path: Path) -> None:
    output = tmp_path / "cam.mkv"
    record(camera_with_file(server, output, audio=False), frames=10)
    assert stream_kinds(output) == ["video"]


def test_a_server_restart_keeps_audio_timestamps_increasing_and_in_sync(server: RtspTestServer,
                                                                       tmp_path: Path) -> None:
    output = tmp_path / "cam.mkv"
    record(camera_with_file(server, output), frames=20, server=server)
    assert server.connections_total == 2
    packets = audio_packets(output)
    starts = [float(packet.pts * packet.time_base) for packet in packets]
    ends = [float((packet.pts + packet.duration) * packet.time_base) for packet in packets]
    assert all(later > earlier for earlier, later in zip(starts, starts[1:])), "audio pts must increase"
    # The frames are rebased to continue where they stopped; the audio of both connections follows them.
    gaps = [later - earlier_end for earlier_end, later in zip(ends, starts[1:])]
    assert max(gaps) < SYNC_TOLERANCE_S, f"a hole of {max(gaps):.3f} s in the audio"
    video_start, video_end, frames = stream_span_s(output, "video")
    assert frames >= 40
    assert abs((ends[-1] - starts[0]) - (video_end - video_start)) < SYNC_TOLERANCE_S


def test_reversible_camera_on_rtsp_signs_the_camera_audio(server: RtspTestServer, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    _, public_key = make_keypair(tmp_path / "authority")
    output = tmp_path / "cam.mkv"
    camera = camera_with_file(server, output)
    camera["anonymizer"] = {"method": "solid"}
    camera["reversible"] = {"recipients": [str(public_key)]}
    record(camera, frames=25)
    assert stream_kinds(output) == ["video", "audio", "subtitle"]
    read = read_recording(output)
    assert read.audio_codecs == ["aac"]
    assert read.packets[0].record["segment"]["audio_streams"] == ["aac"]
    signed = sum(len(packet.record.get("audio", {}).get("0", [])) for packet in read.packets)
    assert signed == len(read.audio_digests[0]) > 0
    verification = verify_recording(read, TrustStore(None))
    assert verification.audio_intact
    assert verification.problems == []
    assert main(["restore", "--list", str(output)]) == 0
    listing = capsys.readouterr().out.splitlines()[0]
    assert "audio aac" in listing, listing


def write_audio(path: Path, codec: str, sample_format: str) -> Path:
    """A tenth of a second of silence in `codec`, 8 kHz mono."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8000)
        stream.layout = "mono"
        silence = np.full((1, 800), 128 if sample_format == "u8" else 0, np.uint8 if sample_format == "u8" else np.int16)
        frame = av.AudioFrame.from_ndarray(silence, format=sample_format, layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_audio_the_container_cannot_hold_gives_one_warning_and_video_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pcm = write_audio(tmp_path / "pcm.mka", "pcm_u8", "u8")  # Matroska holds 8-bit PCM, MP4 does not
    with av.open(str(pcm)) as container:
        track = AudioTrack(container.streams.audio[0])
    assert track.parameters.codec_name == "pcm_u8" and track.parameters.sample_rate == 8000
    feed = LiveAudioFeed()
    feed.set_track(track)
    subscription = feed.subscribe("camera")
    feed.publish(LiveAudioPacket(b"\x00" * 320, 0, 160, track))
    output = tmp_path / "out.mp4"
    with caplog.at_level(logging.WARNING, logger="streamd.sinks.audio"):
        with VideoFileWriter(output, (64, 48), Fraction(1, FPS), Fraction(FPS), audio_source=subscription) as writer:
            for index in range(3):
                writer.write(av.VideoFrame(64, 48, "yuv420p").to_ndarray(format="bgr24"), pts=index)
    assert stream_kinds(output) == ["video"]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "pcm_u8 audio cannot go into a .mp4 file" in warnings[0]
    feed.publish(LiveAudioPacket(b"\x00" * 320, 160, 160, track))
    assert subscription.take_until(Fraction(10)) == [], "the subscription was released"


def test_audio_matroska_cannot_hold_is_refused_by_the_source_track(tmp_path: Path) -> None:
    """G.711 (pcm_mulaw) has no Matroska codec id here: the source leaves such audio out."""
    wav = write_audio(tmp_path / "mulaw.wav", "pcm_mulaw", "s16")
    with av.open(str(wav)) as container, pytest.raises(ValueError, match="pcm_mulaw"):
        AudioTrack(container.streams.audio[0])
