"""Subscribe to a streamd publisher and summarize what arrives, one report per second.

`tail` validates every frame header and event against the protocol (images are not decoded),
counts gaps in `frame_index` within each stream epoch (frames a publisher or ZeroMQ dropped), and
hands a `TailStats` to `on_stats` each second. `format_stats` renders one as a line of text.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from streamd.errors import SourceError
from streamd.frame_gaps import FrameGapCounter
from streamd.protocol import (
    EVENT_TOPIC_PREFIX,
    FRAME_TOPIC_PREFIX,
    ProtocolError,
    decode_event,
    decode_frame_header,
)

logger = logging.getLogger(__name__)

REPORT_INTERVAL_S = 1.0
POLL_MS_MAX = 100


@dataclass
class TailStats:
    """What arrived in one reporting window (or, for the value `tail` returns, the whole run)."""

    window_s: float = 0.0
    frames: int = 0
    masked_frames: int = 0
    faces: int = 0
    bytes: int = 0
    gaps: int = 0
    epochs_started: int = 0
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    invalid: int = 0
    last_error: str | None = None
    cameras: set[str] = field(default_factory=set)
    age_s_total: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.window_s if self.window_s > 0 else 0.0

    @property
    def mean_age_ms(self) -> float | None:
        """Mean of (arrival time - header wallclock); only meaningful when clocks agree."""
        return 1000.0 * self.age_s_total / self.frames if self.frames else None

    def merge(self, other: "TailStats") -> None:
        self.window_s += other.window_s
        self.frames += other.frames
        self.masked_frames += other.masked_frames
        self.faces += other.faces
        self.bytes += other.bytes
        self.gaps += other.gaps
        self.epochs_started += other.epochs_started
        self.events.update(other.events)
        self.invalid += other.invalid
        self.last_error = other.last_error or self.last_error
        self.cameras |= other.cameras
        self.age_s_total += other.age_s_total


def format_stats(stats: TailStats) -> str:
    """One line: rates and counts of a window."""
    cameras = ",".join(sorted(stats.cameras)) or "-"
    rate_mb_s = stats.bytes / stats.window_s / 1e6 if stats.window_s > 0 else 0.0
    events = " ".join(f"{name}={count}" for name, count in sorted(stats.events.items())) or "none"
    age = f"{stats.mean_age_ms:.1f} ms" if stats.mean_age_ms is not None else "-"
    line = (
        f"{cameras}  {stats.fps:6.1f} fps  frames {stats.frames}  masked {stats.masked_frames}  "
        f"faces {stats.faces}  {rate_mb_s:.2f} MB/s  gaps {stats.gaps}  age {age}  events {events}  "
        f"invalid {stats.invalid}"
    )
    if stats.invalid and stats.last_error:
        line += f" (last: {stats.last_error})"
    return line


def tail(
    endpoint: str,
    duration_s: float | None = None,
    max_messages: int | None = None,
    on_stats: Callable[[TailStats], None] | None = None,
    stop: threading.Event | None = None,
    camera_id: str | None = None,
) -> TailStats:
    """Subscribe to `endpoint` and report once per second until a limit is reached.

    Stops after `duration_s` seconds, after `max_messages` messages (frames and events), or when
    `stop` is set; with none of them it runs until interrupted. `camera_id` limits the subscription
    to one camera. Returns the totals of the whole run.
    """
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    topics = [FRAME_TOPIC_PREFIX, EVENT_TOPIC_PREFIX]
    if camera_id is not None:
        topics = [prefix + camera_id.encode("ascii") for prefix in topics]
    for topic in topics:
        socket.setsockopt(zmq.SUBSCRIBE, topic)
    try:
        socket.connect(endpoint)
    except zmq.ZMQError as exc:
        socket.close()
        context.term()
        raise SourceError(f"cannot connect to {endpoint}: {exc.strerror}") from None
    logger.info("tailing %s", endpoint)

    totals = TailStats()
    window = TailStats()
    gaps = FrameGapCounter()
    started = time.monotonic()
    window_started = started
    messages = 0
    try:
        while True:
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            if max_messages is not None and messages >= max_messages:
                break
            if stop is not None and stop.is_set():
                break
            if now - window_started >= REPORT_INTERVAL_S:
                window.window_s = now - window_started
                totals.merge(window)
                if on_stats is not None:
                    on_stats(window)
                window = TailStats()
                window_started = now
            wait_s = window_started + REPORT_INTERVAL_S - now
            if duration_s is not None:
                wait_s = min(wait_s, started + duration_s - now)
            if not socket.poll(max(0, min(POLL_MS_MAX, int(wait_s * 1000) + 1))):
                continue
            parts = socket.recv_multipart()
            messages += 1
            _account(parts, window, gaps)
    finally:
        socket.close()
        context.term()
    now = time.monotonic()
    window.window_s = now - window_started
    if window.frames or window.events or window.invalid:
        if on_stats is not None:
            on_stats(window)
    totals.merge(window)
    return totals


def _account(parts: list[bytes], window: TailStats, gaps: FrameGapCounter) -> None:
    window.bytes += sum(len(part) for part in parts)
    topic = parts[0]
    try:
        if topic.startswith(FRAME_TOPIC_PREFIX):
            header = decode_frame_header(parts)
            missing, new_epoch = gaps.update(header["camera"], header["stream_epoch"], header["frame_index"])
            window.frames += 1
            window.gaps += missing
            window.epochs_started += int(new_epoch)
            window.faces += len(header["faces"])
            window.masked_frames += int(header["status"] == "masked")
            window.cameras.add(header["camera"])
            window.age_s_total += time.time() - header["wallclock"]
        elif topic.startswith(EVENT_TOPIC_PREFIX):
            event = decode_event(parts)
            window.events[event["type"]] += 1
            window.cameras.add(event["camera"])
        else:
            raise ProtocolError(f"unknown topic {topic[:80]!r}")
    except ProtocolError as exc:
        window.invalid += 1
        window.last_error = str(exc)
        logger.debug("invalid message: %s", exc)
