"""Audio passthrough from several consecutive files into one output (as restore joins segments)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from av_clips import stream_span_s, write_clip

from streamd.errors import SinkError
from streamd.sinks.video_out import VideoFileWriter


def _shifted(source, target, seconds: int):
    """`source`'s audio alone, every packet `seconds` later."""
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream_in = reader.streams.audio[0]
        stream_out = writer.add_stream_from_template(stream_in)
        for packet in reader.demux(stream_in):
            if packet.size:
                offset = round(seconds / packet.time_base)
                packet.pts, packet.dts = packet.pts + offset, packet.dts + offset
                packet.stream = stream_out
                writer.mux(packet)
    return target


def test_consecutive_files_are_copied_one_after_the_other(tmp_path):
    first = write_clip(tmp_path / "first.mkv", 25, audio_codec="libopus")
    second = _shifted(write_clip(tmp_path / "raw.mkv", 25, audio_codec="libopus"), tmp_path / "second.mkv", 2)
    output = tmp_path / "joined.mkv"
    with VideoFileWriter(output, (160, 120), Fraction(1, 25), Fraction(25), audio_source=[first, second]) as writer:
        for index in range(75):
            writer.write(np.zeros((120, 160, 3), np.uint8), pts=index)
    start, end, packets = stream_span_s(output, "audio")
    assert packets == stream_span_s(first, "audio")[2] + stream_span_s(second, "audio")[2]
    expected = (stream_span_s(first, "audio")[0], stream_span_s(second, "audio")[1])
    assert (start, end) == pytest.approx(expected, abs=1e-3)


def test_files_with_different_audio_cannot_be_joined(tmp_path):
    opus = write_clip(tmp_path / "opus.mkv", 5, audio_codec="libopus")
    aac = write_clip(tmp_path / "aac.mkv", 5, audio_codec="aac")
    output = tmp_path / "joined.mkv"
    with pytest.raises(SinkError, match="the audio of one output must be the same streams throughout"):
        VideoFileWriter(output, (160, 120), Fraction(1, 25), Fraction(25), audio_source=[opus, aac])
    assert list(tmp_path.glob("*joined*")) == []
