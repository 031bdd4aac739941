"""Measure `streamd anonymize` on a 20 s 720p clip with audio: audio in sync, progress lines off a terminal.

Builds the demo clip (faces moving across a backdrop) at 1280x720 for SECONDS, muxes a 440 Hz AAC
tone of the same length beside it, runs `streamd anonymize` with stderr on a pipe (not a terminal),
stamps every line as it arrives, and compares the audio streams of input and output. Writes
docs/results/oneshot-audio-progress.json and prints the numbers.

    python -m export.oneshot_audio_progress [--seconds 20] [--work-dir out/oneshot-audio]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamd.demo_clip import build_demo_clip

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "oneshot-audio-progress.json"
PROGRESS = re.compile(r"^anonymizing: ")  # "started", then counts
SAMPLE_RATE = 48000


def add_tone(video_path: Path, output: Path) -> None:
    """`video_path`'s video packets copied into `output` beside an AAC tone as long as the video."""
    with av.open(str(video_path)) as source, av.open(str(output), "w") as target:
        video_in = source.streams.video[0]
        video_out = target.add_stream_from_template(video_in)
        audio = target.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        seconds = float(video_in.duration * video_in.time_base) if video_in.duration else float(
            source.duration / av.time_base)
        for packet in source.demux(video_in):
            if packet.size:
                packet.stream = video_out
                target.mux(packet)
        samples = int(seconds * SAMPLE_RATE)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / SAMPLE_RATE)).astype(np.float32)
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[None, start:start + 1024]), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
            for packet in audio.encode(frame):
                target.mux(packet)
        for packet in audio.encode(None):
            target.mux(packet)


def audio_span(path: Path) -> dict[str, float]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [packet for packet in container.demux(stream) if packet.size]
    start = min(float(p.pts * p.time_base) for p in packets)
    end = max(float((p.pts + p.duration) * p.time_base) for p in packets)
    return {"start_s": round(start, 6), "duration_s": round(end - start, 6), "packets": len(packets)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="streamd-audio-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"building a {args.seconds:g} s 1280x720 clip with a tone in {work}", file=sys.stderr)
    silent = build_demo_clip(work / "clip-video.mp4", seconds=args.seconds).path
    clip = work / "clip.mp4"
    add_tone(silent, clip)
    output = work / "clip.anonymized.mp4"
    output.unlink(missing_ok=True)
    load_before = os.getloadavg()
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "streamd.cli", "anonymize", str(clip), "-o", str(output)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stamps: list[tuple[float, str]] = []
    assert process.stderr is not None
    for line in process.stderr:
        stamps.append((time.monotonic() - started, line.rstrip("\n")))
    code = process.wait()
    total_s = time.monotonic() - started
    progress = [at for at, line in stamps if PROGRESS.search(line)]
    edges = [*progress, total_s]
    gaps = [later - earlier for earlier, later in zip(edges, edges[1:])]
    report = {
        "command": "python -m export.oneshot_audio_progress --seconds %g" % args.seconds,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "load_average_before": [round(value, 2) for value in load_before],
        "exit_code": code,
        "run_s": round(total_s, 1),
        "progress_lines": len(progress),
        "first_progress_line_s": round(progress[0], 2) if progress else None,
        "longest_gap_between_progress_lines_s": round(max(gaps), 2) if progress else None,
        "audio_in": audio_span(clip),
        "audio_out": audio_span(output) if output.exists() else None,
        "stdout": process.stdout.read().strip() if process.stdout else "",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
