"""Small real clips for tests, encoded with PyAV: moving pictures with an optional tone track."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

TONE_HZ = 440.0


def _tone_frames(stream: av.audio.stream.AudioStream, seconds: float, rate: int):
    samples = int(round(seconds * rate))
    tone = (0.3 * np.sin(2 * np.pi * TONE_HZ * np.arange(samples) / rate)).astype(np.float32)
    sample_format = stream.codec_context.format.name
    for start in range(0, samples, 1024):
        block = tone[start:start + 1024]
        data = (block * 32767).astype(np.int16)[None, :] if sample_format.startswith("s16") else block[None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=sample_format, layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        yield frame


def write_clip(path: Path, frames: int, fps: int = 25, size_wh: tuple[int, int] = (160, 120),
               audio_codec: str | None = None, sample_rate: int = 48000) -> Path:
    """`frames` frames of a moving gradient (H.264), with a 440 Hz tone as long as the video when
    `audio_codec` is given (aac, libopus, ...)."""
    width, height = size_wh
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = None
        if audio_codec is not None:
            audio = container.add_stream(audio_codec, rate=sample_rate)
            audio.layout = "mono"
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        for index in range(frames):
            bgr = np.broadcast_to((ramp + index * 3) % 256, (height, width, 3)).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        if audio is not None:
            for frame in _tone_frames(audio, frames / fps, sample_rate):
                for packet in audio.encode(frame):
                    container.mux(packet)
        for stream in (video, audio):
            if stream is not None:
                for packet in stream.encode(None):
                    container.mux(packet)
    return path


def stream_span_s(path: Path, kind: str) -> tuple[float, float, int]:
    """(first pts, end of the last packet, packet count) of the first `kind` stream, in seconds."""
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams if s.type == kind)
        packets = [p for p in container.demux(stream) if p.size]
    starts = [float(p.pts * p.time_base) for p in packets]
    ends = [float((p.pts + (p.duration or 0)) * p.time_base) for p in packets]
    return min(starts), max(ends), len(packets)


def decoded_samples(path: Path) -> int:
    """Audio samples the first audio stream decodes to."""
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(audio=0))


def stream_kinds(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [stream.type for stream in container.streams]


def with_tone(video_path: Path, path: Path, audio_codec: str = "aac", sample_rate: int = 48000) -> Path:
    """`video_path`'s video stream (copied, not re-encoded) with a 440 Hz tone as long as it, in `path`."""
    with av.open(str(video_path)) as source, av.open(str(path), "w") as container:
        video_in = source.streams.video[0]
        video_out = container.add_stream_from_template(video_in)
        seconds = float(video_in.duration * video_in.time_base) if video_in.duration else float(source.duration) / 1e6
        audio = container.add_stream(audio_codec, rate=sample_rate)
        audio.layout = "mono"
        for packet in source.demux(video_in):
            if packet.size:
                packet.stream = video_out
                container.mux(packet)
        for frame in _tone_frames(audio, seconds, sample_rate):
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    return path
