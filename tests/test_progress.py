"""Progress off a terminal: a line every few seconds with frames, rate and time left."""

from __future__ import annotations

import io
import re
import time

from av_clips import write_clip

from streamd.progress import progress_display
from streamd.config import CameraConfig, FileSourceConfig
from streamd.oneshot import anonymize_video
from streamd.progress import DEFAULT_INTERVAL_S, LineProgress, format_duration

LINE = re.compile(r"^anonymizing: (\d+)/(\d+) frames \((\d+)%\), ([\d.]+) frames/s(, ETA \S+( s)?)?$")
BEFORE_TOTAL = re.compile(r"^anonymizing: 0 frames, 0\.0 frames/s, \d+ s elapsed$")  # while the model loads


def test_lines_come_while_a_real_run_works(tmp_path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", 60, size_wh=(320, 240))
    camera = CameraConfig(id="oneshot", source=FileSourceConfig(path=clip))
    stream = io.StringIO()
    started = time.monotonic()
    with LineProgress(stream, "anonymizing", "frame", interval_s=0.2) as progress:
        result = anonymize_video(clip, tmp_path / "out.mp4", camera, progress)
        time.sleep(0.5)  # at least two more intervals after the last frame
    elapsed = time.monotonic() - started
    lines = stream.getvalue().splitlines()
    assert lines, "at least one progress line"
    # bounded: about one line per interval, never a flood (generous for a loaded machine)
    assert len(lines) <= elapsed / 0.2 + 3, (len(lines), elapsed)
    assert lines[0] == "anonymizing: started"
    loading = [line for line in lines[1:] if BEFORE_TOTAL.match(line)]
    parsed = [LINE.match(line) for line in lines[1 + len(loading):]]
    assert parsed and all(parsed), lines
    counts = [int(match.group(1)) for match in parsed]
    assert counts == sorted(counts) and counts[-1] == result.stats.frames_out == 60
    assert {int(match.group(2)) for match in parsed} == {60}
    assert parsed[-1].group(3) == "100"


def test_an_unknown_total_still_reports_and_eta_is_worded() -> None:
    stream = io.StringIO()
    progress = LineProgress(stream, "restoring", "frame", interval_s=60)
    progress.update(7)
    assert re.fullmatch(r"restoring: 7 frames, [\d.]+ frames/s, \d+ s elapsed", progress.line())
    progress.total = 10
    assert re.fullmatch(r"restoring: 7/10 frames \(70%\), [\d.]+ frames/s, ETA (\d+ s|[\d:]+)", progress.line())
    progress.close()
    assert stream.getvalue() == "restoring: started\n"  # then nothing before the first interval
    assert [format_duration(s) for s in (4.4, 75, 3725)] == ["4 s", "1:15", "1:02:05"]


def test_the_cli_uses_lines_when_stderr_is_not_a_terminal(capsys) -> None:
    progress = progress_display(None, "frame", "anonymizing")
    try:
        assert isinstance(progress, LineProgress)
    finally:
        progress.close()
    assert DEFAULT_INTERVAL_S <= 5.0
