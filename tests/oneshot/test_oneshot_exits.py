"""Exit codes and last words of `streamd anonymize`: signals keep an incomplete file, lost frames fail."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from av_clips import write_clip

from conftest import decode_all
from streamd.cli import main

STREAMD = [sys.executable, "-m", "streamd.cli"]
PROGRESS = re.compile(r"anonymizing: (\d+)/\d+ frames \(\d+%\), [\d.]+ frames/s")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _frames_done(lines: list[str]) -> int:
    """Frames done according to the last progress line (written every few seconds off a terminal)."""
    counts = [int(match.group(1)) for line in lines if (match := PROGRESS.search(line))]
    return counts[-1] if counts else 0


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_keeps_an_incomplete_file_and_says_interrupted(tmp_path, signum, code) -> None:
    clip = write_clip(tmp_path / "long.mp4", 1500, size_wh=(320, 240))  # a minute or more of work here
    output = tmp_path / "out" / "long-masked.mp4"
    output.parent.mkdir()
    # SIGINT as a terminal delivers it: a suite started in the background inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler.
    process = subprocess.Popen([*STREAMD, "anonymize", str(clip), "-o", str(output)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_env(),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and _frames_done(lines) < 10:
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert _frames_done(lines) >= 10, lines
        process.send_signal(signum)
        process.wait(timeout=120)
        reader.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = "".join(lines)
    assert process.returncode == code, err
    assert f"streamd: interrupted ({signal.Signals(signum).name})" in err
    assert "stage output failed" not in err and "Traceback" not in err, err
    kept = list(output.parent.glob("long-masked.incomplete-*.mp4"))
    assert len(kept) == 1 and str(kept[0]) in err, err
    assert not output.exists()
    assert not list(output.parent.glob(".*")), "no hidden partial is left behind"
    assert _frames_done(lines) <= len(decode_all(kept[0])) < 1500


def test_a_truncated_input_exits_non_zero_and_says_frames_were_lost(tmp_path, capsys) -> None:
    clip = write_clip(tmp_path / "full.mkv", 240, fps=24)
    data = clip.read_bytes()
    truncated = tmp_path / "cut.mkv"
    truncated.write_bytes(data[: len(data) // 2])
    output = tmp_path / "cut-masked.mkv"
    code = main(["anonymize", str(truncated), "-o", str(output)])
    err = capsys.readouterr().err
    assert code == 1
    decoded = len(decode_all(output))
    assert 0 < decoded < 240
    lines = [line for line in err.splitlines() if "frames were lost" in line]
    assert len(lines) == 1 and f"{240 - decoded} frames were lost" in lines[0], err
    assert f"{decoded} frames decoded of the 240" in lines[0]


def test_a_complete_input_is_not_reported_as_lost(tmp_path, capsys) -> None:
    clip = write_clip(tmp_path / "full.mkv", 48, fps=24)
    assert main(["anonymize", str(clip), "-o", str(tmp_path / "o.mkv")]) == 0
    assert "lost" not in capsys.readouterr().err
