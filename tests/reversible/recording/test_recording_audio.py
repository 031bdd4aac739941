"""A reversible camera's signed recording carries the source's audio, signed packet by packet; restore
copies it in sync, and refuses audio that was altered, removed, retimed or added."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av_clips import decoded_samples, stream_kinds, stream_span_s, with_tone, write_clip
from restore_helpers import make_keypair, read_audit, reversible_camera, the_host_key

from streamd.app import open_stream
from streamd.cli import main
from streamd.config import FileOutputConfig, FileSourceConfig, OutputsConfig
from streamd.reversible.recording.authenticity import verify_recording
from streamd.reversible.keys.host_keys import TrustStore
from streamd.reversible.recording.recording_format import METADATA_STREAM_TITLE, RecordingWriter, read_recording

AAC_FRAME_S = 1024 / 48000  # one AAC frame of the tone track

AudioEdit = Callable[[int, bytes, int], "tuple[bytes, int] | None"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    private_key, public_key = make_keypair(tmp_path_factory.mktemp("keys") / "authority")
    return {"private": private_key, "public": public_key}


@pytest.fixture(scope="module")
def talking_clip(demo_clip, tmp_path_factory) -> Path:
    """The one-second demo clip (faces) with an AAC tone in .mp4 (its first packet starts before zero)."""
    return with_tone(demo_clip.path, tmp_path_factory.mktemp("clip") / "talk.mp4", "aac")


def _record(clip: Path, output: Path, public_key: Path, audio: bool = True) -> Path:
    """Run a reversible camera on `clip`, its file output writing the signed recording `output`."""
    camera = reversible_camera(clip, [public_key]).model_copy(update={
        "source": FileSourceConfig(path=clip, realtime=False),
        "outputs": OutputsConfig(file=FileOutputConfig(path=output, audio=audio)),
    })
    with open_stream(camera) as pipeline:
        pipeline.run()
    return output


@pytest.fixture(scope="module")
def recording(talking_clip, keys, tmp_path_factory) -> Path:
    return _record(talking_clip, tmp_path_factory.mktemp("recording") / "cam.mkv", keys["public"])


@pytest.fixture(scope="module")
def silent_recording(talking_clip, keys, tmp_path_factory) -> Path:
    return _record(talking_clip, tmp_path_factory.mktemp("silent") / "cam.mkv", keys["public"], audio=False)


def _restore(capsys, keys, recording_path: Path, output: Path, *more: str) -> tuple[int, str]:
    code = main(["restore", str(recording_path), "--key", str(keys["private"]), "-o", str(output),
                 "--reason", "audio test", "--audit-log", str(output.parent / "audit.jsonl"), *more])
    return code, capsys.readouterr().err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("streamd: error")]
    assert len(lines) == 1, err
    return lines[0]


def _remux(source: Path, target: Path, audio_edit: AudioEdit) -> Path:
    """Copy every stream of `source` into `target` without re-encoding or re-signing; each audio packet
    goes through `audio_edit(position, bytes, pts)`, which returns new (bytes, pts) or None to drop it."""
    with av.open(str(source)) as reader, \
            av.open(str(target), "w", format="matroska", options={"avoid_negative_ts": "disabled"}) as writer:
        outputs = {}
        for stream in reader.streams:
            if stream.type == "subtitle":
                copy = writer.add_mux_stream("subrip")
                copy.time_base = Fraction(1, 1000)
                copy.metadata["title"] = stream.metadata.get("title", "")
                outputs[stream.index] = copy
            else:
                outputs[stream.index] = writer.add_stream_from_template(stream)
        audio_position = 0
        for packet in reader.demux():
            if packet.size == 0:
                continue
            data, pts = bytes(packet), packet.pts
            if packet.stream.type == "audio":
                edited = audio_edit(audio_position, data, pts)
                audio_position += 1
                if edited is None:
                    continue
                data, pts = edited
            copy = av.Packet(data)
            copy.stream, copy.time_base = outputs[packet.stream.index], packet.time_base
            copy.pts = pts
            copy.dts = pts if packet.stream.type != "video" else packet.dts
            copy.duration, copy.is_keyframe = packet.duration, packet.is_keyframe
            writer.mux(copy)
    return target


def test_the_recording_carries_the_source_audio_signed_and_in_sync(talking_clip, recording):
    assert stream_kinds(recording) == ["video", "audio", "subtitle"]
    source_start, source_end, source_packets = stream_span_s(talking_clip, "audio")
    start, end, packets = stream_span_s(recording, "audio")
    assert packets == source_packets
    assert start == pytest.approx(source_start, abs=AAC_FRAME_S)
    assert end == pytest.approx(source_end, abs=AAC_FRAME_S)
    assert start < 0, "the priming frame keeps its time before the first video frame"
    assert stream_span_s(recording, "video")[0] == pytest.approx(stream_span_s(talking_clip, "video")[0], abs=1e-3)
    # MP4 trims the AAC priming frame by its edit list; Matroska keeps it (before zero), so it decodes.
    assert 0 <= decoded_samples(recording) - decoded_samples(talking_clip) <= 1024

    read = read_recording(recording)
    assert read.audio_codecs == ["aac"] and len(read.audio_digests[0]) == packets
    assert read.packets[0].record["segment"]["audio_streams"] == ["aac"]
    signed = sum(len(packet.record.get("audio", {}).get("0", [])) for packet in read.packets)
    assert signed == packets
    assert verify_recording(read, TrustStore(None)).problems == []


def test_list_names_the_audio(recording, capsys):
    assert main(["restore", "--list", str(recording)]) == 0
    assert "signed, audio aac" in capsys.readouterr().out.splitlines()[0]


def test_restore_copies_the_audio_in_sync_unless_no_audio(recording, keys, tmp_path, capsys):
    output = tmp_path / "restored.mkv"
    code, err = _restore(capsys, keys, recording, output)
    assert code == 0, err
    assert stream_kinds(output) == ["video", "audio"]
    assert stream_span_s(output, "audio") == pytest.approx(stream_span_s(recording, "audio"), abs=1e-3)
    assert stream_span_s(output, "video")[:2] == pytest.approx(stream_span_s(recording, "video")[:2], abs=1e-3)
    assert decoded_samples(output) == decoded_samples(recording)

    span = tmp_path / "span.mkv"
    code, err = _restore(capsys, keys, recording, span, "--from", "0.4", "--to", "0.6")
    assert code == 0, err
    assert stream_span_s(span, "audio") == pytest.approx(stream_span_s(recording, "audio"), abs=1e-3), \
        "a span chooses the faces restored; the output keeps every frame and all the audio"

    silent = tmp_path / "silent.mp4"
    code, err = _restore(capsys, keys, recording, silent, "--no-audio")
    assert code == 0, err
    assert stream_kinds(silent) == ["video"]


def test_a_flipped_audio_byte_is_refused(recording, keys, tmp_path, capsys):
    def flip(position: int, data: bytes, pts: int):
        return (data[:5] + bytes([data[5] ^ 0x10]) + data[6:], pts) if position == 20 else (data, pts)

    tampered = _remux(recording, tmp_path / "flipped.mkv", flip)
    output = tmp_path / "out.mkv"
    code, err = _restore(capsys, keys, tampered, output)
    line = _error_line(err)
    assert code != 0 and "the audio is not the signed one from packet 20 of audio stream 0" in line, line
    assert not output.exists()

    code, err = _restore(capsys, keys, tampered, output, "--partial")
    assert code == 3, err
    assert "its audio is not copied" in err
    assert stream_kinds(output) == ["video"], "audio that is not the signed one is left out"
    assert read_audit(tmp_path / "audit.jsonl")[-1]["outcome"] == "partial"


def test_a_deleted_audio_packet_is_refused(recording, keys, tmp_path, capsys):
    cut = _remux(recording, tmp_path / "cut.mkv", lambda position, data, pts: None if position == 30 else (data, pts))
    assert stream_span_s(cut, "audio")[2] == stream_span_s(recording, "audio")[2] - 1
    code, err = _restore(capsys, keys, cut, tmp_path / "out.mkv")
    assert code != 0 and "the audio is not the signed one from packet 30 of audio stream 0" in _error_line(err)


def test_retimed_audio_is_refused(recording, keys, tmp_path, capsys):
    """The same packets half a second late would play out of sync with the faces."""
    late = _remux(recording, tmp_path / "late.mkv", lambda position, data, pts: (data, pts + 500))
    code, err = _restore(capsys, keys, late, tmp_path / "out.mkv")
    assert code != 0 and "the audio is not the signed one from packet 0 of audio stream 0" in _error_line(err)


def test_outputs_file_audio_false_writes_no_audio_and_restores(silent_recording, keys, tmp_path, capsys):
    assert stream_kinds(silent_recording) == ["video", "subtitle"]
    output = tmp_path / "restored.mkv"
    code, err = _restore(capsys, keys, silent_recording, output)
    assert code == 0, err
    assert stream_kinds(output) == ["video"]


def test_audio_added_to_a_recording_without_audio_is_refused(silent_recording, talking_clip, keys, tmp_path,
                                                            capsys):
    """Audio streams that no record signs (here the source's own audio, muxed in afterwards)."""
    dubbed = tmp_path / "dubbed.mkv"
    with av.open(str(silent_recording)) as reader, av.open(str(talking_clip)) as sound, \
            av.open(str(dubbed), "w", format="matroska", options={"avoid_negative_ts": "disabled"}) as writer:
        video = writer.add_stream_from_template(reader.streams.video[0])
        metadata_in = next(s for s in reader.streams if s.metadata.get("title") == METADATA_STREAM_TITLE)
        metadata = writer.add_mux_stream("subrip")
        metadata.time_base, metadata.metadata["title"] = Fraction(1, 1000), METADATA_STREAM_TITLE
        audio = writer.add_stream_from_template(sound.streams.audio[0])
        for stream_out, packets in ((audio, sound.demux(sound.streams.audio[0])),
                                    (None, reader.demux(reader.streams.video[0], metadata_in))):
            for packet in packets:
                if packet.size:
                    copy = av.Packet(bytes(packet))
                    copy.stream = stream_out or (video if packet.stream.type == "video" else metadata)
                    copy.time_base, copy.pts, copy.dts = packet.time_base, packet.pts, packet.dts
                    copy.duration, copy.is_keyframe = packet.duration, packet.is_keyframe
                    writer.mux(copy)
    assert "audio" in stream_kinds(dubbed)
    code, err = _restore(capsys, keys, dubbed, tmp_path / "out.mkv")
    assert code != 0 and "audio stream(s) (aac) that its records do not sign" in _error_line(err)


@pytest.mark.parametrize(("name", "codec"), [("adts.ts", "aac"), ("opus.mkv", "libopus")])
def test_audio_of_other_containers_and_codecs_verifies(tmp_path, name, codec):
    """MPEG-TS carries AAC with ADTS headers, which Matroska drops while muxing; Opus has its own start
    delay. Both verify as written."""
    clip = write_clip(tmp_path / name, 25, audio_codec=codec)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        time_base, stamps = stream.time_base, [frame.pts for frame in container.decode(stream)]
    path = tmp_path / "recorded.mkv"
    writer = RecordingWriter(path, (160, 120), time_base, Fraction(25), host_key=the_host_key(), audio_source=clip)
    for index, pts in enumerate(stamps):
        header = {"camera": "cam", "stream_epoch": "0123456789abcdef", "frame_index": index, "pts": pts,
                  "time_base": f"{time_base.numerator}/{time_base.denominator}", "wallclock": 0.0, "width": 160,
                  "height": 120, "method": "solid", "status": "ok", "faces": [], "payloads": []}
        writer.write_frame(np.zeros((120, 160, 3), np.uint8), header, [], {})
    writer.close()
    read = read_recording(path)
    assert read.audio_codecs == [codec.removeprefix("lib")]
    assert stream_span_s(path, "audio") == pytest.approx(stream_span_s(clip, "audio"), abs=1e-3)
    assert verify_recording(read, TrustStore(None)).problems == []
