"""Thread-safe counters and timing samples for one stream's pipeline.

Samples are kept in bounded windows so a service running for months holds constant memory; totals
are plain counters.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

SAMPLE_WINDOW = 5000
STAGES = ("decode", "detect", "track", "anonymize", "encode", "publish")
#: Upper bounds (seconds) of the end-to-end latency histogram exported as Prometheus buckets.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class LatencyHistogram:
    """Cumulative counts of frames whose latency was at most each bound, as Prometheus exports them."""

    bounds_s: tuple[float, ...]
    cumulative_counts: tuple[int, ...]
    count: int
    sum_s: float


def percentile_ms(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    return float(np.percentile(np.asarray(samples, np.float64), q) * 1000.0)


@dataclass(frozen=True)
class StageSummary:
    count: int
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None


class PipelineStats:
    """Counters a pipeline updates from several threads, and a consistent snapshot of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started_monotonic = time.monotonic()
        self.frames_in = 0
        self.frames_out = 0
        self.frames_masked = 0
        self.faces_out = 0
        self.faces_predicted = 0
        self.tracks_started = 0
        self.drops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._stage_samples: dict[str, deque[float]] = {name: deque(maxlen=SAMPLE_WINDOW) for name in STAGES}
        self._stage_totals: Counter[str] = Counter()
        self._latency_samples: deque[float] = deque(maxlen=SAMPLE_WINDOW)
        self._latency_bucket_counts = [0] * len(LATENCY_BUCKETS_S)
        self._latency_sum_s = 0.0

    def add_stage_time(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._stage_samples.setdefault(stage, deque(maxlen=SAMPLE_WINDOW)).append(seconds)
            self._stage_totals[stage] += 1

    def count_frame_in(self) -> None:
        with self._lock:
            self.frames_in += 1

    def count_drop(self, reason: str) -> None:
        with self._lock:
            self.drops[reason] += 1

    def count_error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def count_output(self, faces: int, predicted: int, masked: bool, latency_s: float) -> None:
        with self._lock:
            self.frames_out += 1
            self.faces_out += faces
            self.faces_predicted += predicted
            self.frames_masked += int(masked)
            self._latency_samples.append(latency_s)
            self._latency_sum_s += latency_s
            for position, bound in enumerate(LATENCY_BUCKETS_S):
                if latency_s <= bound:
                    self._latency_bucket_counts[position] += 1
                    break

    def count_tracks_started(self, count: int) -> None:
        with self._lock:
            self.tracks_started += count

    def latency_histogram(self) -> LatencyHistogram:
        """Every frame's latency since the start (not only the sample window), in buckets."""
        with self._lock:
            counts = list(self._latency_bucket_counts)
            total, latency_sum = self.frames_out, self._latency_sum_s
        cumulative, running = [], 0
        for count in counts:
            running += count
            cumulative.append(running)
        return LatencyHistogram(LATENCY_BUCKETS_S, tuple(cumulative), total, latency_sum)

    def stage_summary(self, stage: str) -> StageSummary:
        with self._lock:
            samples = list(self._stage_samples.get(stage, ()))
            count = self._stage_totals[stage]
        mean = float(np.mean(samples) * 1000.0) if samples else None
        return StageSummary(count, mean, percentile_ms(samples, 50), percentile_ms(samples, 95))

    def snapshot(self) -> dict[str, object]:
        elapsed = max(time.monotonic() - self.started_monotonic, 1e-9)
        with self._lock:
            latency = list(self._latency_samples)
            counters = {
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "frames_masked": self.frames_masked,
                "faces_out": self.faces_out,
                "faces_predicted": self.faces_predicted,
                "tracks_started": self.tracks_started,
                "drops": dict(self.drops),
                "errors": dict(self.errors),
            }
            stages = list(self._stage_samples)
        return {
            **counters,
            "elapsed_s": elapsed,
            "fps": counters["frames_out"] / elapsed,
            "latency_p50_ms": percentile_ms(latency, 50),
            "latency_p95_ms": percentile_ms(latency, 95),
            "stages": {name: vars(self.stage_summary(name)) for name in stages},
        }
