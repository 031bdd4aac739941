"""Progress of long work when the output is not a terminal (a log file, CI, systemd): a line every few seconds.

On a terminal the CLI shows a tqdm bar instead. `LineProgress` has the part of tqdm's interface the
work loops use (`update`, `total`, context manager), and a thread that writes one line every
`interval_s` seconds, even while no item finishes (a model loading, a slow first frame), so a
reader always knows the run is alive. The first line says the work started:

    anonymizing: started
    anonymizing: 240/480 frames (50%), 23.4 frames/s, ETA 10 s
"""

from __future__ import annotations

import sys

import threading
import time
from typing import TextIO

DEFAULT_INTERVAL_S = 4.0  # a loaded machine wakes the reporter late; lines still come within 5 s


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{seconds:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class LineProgress:
    """Counts finished items and writes a progress line to `stream` every `interval_s` seconds."""

    def __init__(self, stream: TextIO, description: str, unit: str, total: int | None = None,
                 interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.total = total
        self.count = 0
        self.lines_written = 0
        self._stream = stream
        self._description = description
        self._unit = unit
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._report_every_interval, name="progress", daemon=True)
        self._write(f"{description}: started")
        self._thread.start()

    def update(self, count: int = 1) -> None:
        with self._lock:
            self.count += count

    def line(self) -> str:
        """The progress line for now: count (of total), rate, and the time left when the total is known."""
        with self._lock:
            count, total = self.count, self.total
        elapsed = time.monotonic() - self._started
        rate = count / elapsed if elapsed > 0 else 0.0
        units = f"{self._unit}s"
        if total:
            text = f"{self._description}: {count}/{total} {units} ({100.0 * count / total:.0f}%), {rate:.1f} {units}/s"
            if rate > 0 and count < total:
                text += f", ETA {format_duration((total - count) / rate)}"
            return text
        return f"{self._description}: {count} {units}, {rate:.1f} {units}/s, {format_duration(elapsed)} elapsed"

    def _report_every_interval(self) -> None:
        while not self._done.wait(self._interval_s):
            self._write(self.line())

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # the reader went away (closed pipe, closed file): stop reporting
            self._done.set()
            return
        self.lines_written += 1

    def close(self) -> None:
        """Stop the reporting thread. Safe to call twice."""
        self._done.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_display(total: int | None, unit: str, description: str):
    """A tqdm bar on a terminal; otherwise a LineProgress line every few seconds (logs, CI, systemd)."""
    if not sys.stderr.isatty():
        return LineProgress(sys.stderr, description, unit, total=total)
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=description, leave=False, file=sys.stderr)
