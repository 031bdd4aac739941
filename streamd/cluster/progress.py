"""Progress of an archive job across the cluster: files, frames, frame rate and time left.

Tasks report decoded-and-written frames to one `FrameCounter` actor in batches (`BatchedReporter`);
the job's driver reads it every few seconds and combines it with the files it has seen finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: A task reports after this many frames or this many seconds, whichever comes first.
REPORT_EVERY_FRAMES = 25
REPORT_EVERY_S = 1.0


class FrameCounter:
    """Frames written by every task of a job (run as a Ray actor; the methods are its remote calls)."""

    def __init__(self) -> None:
        self.frames = 0

    def add(self, frames: int) -> None:
        self.frames += frames

    def total(self) -> int:
        return self.frames


class BatchedReporter:
    """Adds frames up inside a task and sends them on in batches through `send` (fire and forget)."""

    def __init__(self, send: Callable[[int], object]) -> None:
        self._send = send
        self._pending = 0
        self._last_sent = time.monotonic()

    def __call__(self, frames: int) -> None:
        self._pending += frames
        if self._pending >= REPORT_EVERY_FRAMES or time.monotonic() - self._last_sent >= REPORT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._send(self._pending)
            self._pending = 0
        self._last_sent = time.monotonic()


@dataclass(frozen=True)
class JobProgress:
    files_total: int
    files_done: int
    files_failed: int
    files_skipped: int
    frames_total: int
    frames_done: int
    elapsed_s: float

    @property
    def fps(self) -> float:
        return self.frames_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.fps <= 0:
            return None
        return max(0, self.frames_total - self.frames_done) / self.fps


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def format_progress(progress: JobProgress) -> str:
    """One line: files, frames, frame rate and estimated time left."""
    frames_done = min(progress.frames_done, progress.frames_total) if progress.frames_total else progress.frames_done
    finished = progress.files_done + progress.files_skipped + progress.files_failed
    line = (f"files {finished}/{progress.files_total} ({progress.files_skipped} already done, "
            f"{progress.files_failed} failed), frames {frames_done}"
            f"/{progress.frames_total}, {progress.fps:.1f} fps, ETA {_duration(progress.eta_s)}")
    return line
