"""tail(): per-second stats from a real publisher, gap counting, invalid messages, format_stats."""

from __future__ import annotations

import collections
import threading
import time

from fractions import Fraction

import numpy as np
import pytest
import zmq

from streamd.config import ZmqOutputConfig
from streamd.sinks.publish import ZmqPublisher
from streamd.tail import TailStats, format_stats, tail
from streamd.types import AnonymizedFrame, TrackedFace, VideoFrame


def make_anonymized(index: int) -> AnonymizedFrame:
    bgr = np.full((48, 64, 3), 100, np.uint8)
    frame = VideoFrame(bgr=bgr, index=index, pts=index, time_base=Fraction(1, 25), wallclock=time.time())
    face = TrackedFace(
        track_id=1,
        xyxy=np.array([4.0, 5.0, 20.0, 30.0], np.float32),
        kps5=np.full((5, 2), 10.0, np.float32),
        score=0.9,
        detected=True,
        age_frames=index,
    )
    return AnonymizedFrame(frame=frame, bgr=bgr, faces=[face], method="blur")


@pytest.mark.timeout(30)
def test_tail_reports_frames_faces_gaps_and_events() -> None:
    context = zmq.Context()
    config = ZmqOutputConfig(endpoint="tcp://127.0.0.1:*", image_format="jpeg", send_hwm=1000)
    reports: list[TailStats] = []
    with ZmqPublisher(config, "cam7") as publisher:
        result: dict[str, TailStats] = {}
        stop = threading.Event()

        def run() -> None:
            result["totals"] = tail(publisher.endpoint, duration_s=10, on_stats=reports.append, stop=stop)

        thread = threading.Thread(target=run)
        thread.start()
        # ZeroMQ subscriptions arrive asynchronously: a first epoch of probe frames covers that time.
        probes = 12
        for index in range(probes):
            publisher.publish_frame(make_anonymized(index))
            time.sleep(0.05)
        publisher.restart_stream()
        publisher.publish_event(publisher.make_event("stream_up", details={"width": 64, "height": 48}))
        sent_indices = [i for i in range(60) if i not in (10, 11, 12, 40)]
        for frame_index in sent_indices:
            publisher.publish_frame(make_anonymized(frame_index))
            time.sleep(0.02)
        publisher.publish_event(publisher.make_event("track_end", track_id=1, frame_index=59))
        time.sleep(1.3)
        stop.set()
        thread.join(timeout=5)
    context.term()
    totals = result["totals"]
    assert len(reports) >= 2
    assert all(report.window_s > 0.5 for report in reports[:-1])
    assert totals.invalid == 0
    # Probes may be missed before the subscription arrives; the second epoch must be complete.
    assert len(sent_indices) <= totals.frames <= len(sent_indices) + probes
    assert totals.gaps == 4
    assert totals.faces == totals.frames
    assert totals.events == collections.Counter({"stream_up": 1, "track_end": 1})
    assert totals.cameras == {"cam7"}
    assert sum(report.frames for report in reports) == totals.frames
    line = format_stats(reports[0])
    assert line.startswith("cam7") and "fps" in line and "gaps" in line


@pytest.mark.timeout(20)
def test_tail_counts_invalid_messages_and_stops_at_max_messages() -> None:
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.setsockopt(zmq.LINGER, 0)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    result: dict[str, TailStats] = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("totals", tail(f"tcp://127.0.0.1:{port}", duration_s=8, max_messages=5))
    )
    thread.start()
    deadline = time.monotonic() + 6
    while thread.is_alive() and time.monotonic() < deadline:
        socket.send_multipart([b"frame.cam1", b'{"schema": "streamd.frame", "version": "9.0"}', b""])
        time.sleep(0.02)
    thread.join(timeout=5)
    socket.close()
    context.term()
    totals = result["totals"]
    assert totals.invalid == 5 and totals.frames == 0
    assert "unsupported major version 9.0" in totals.last_error
    assert "invalid 5" in format_stats(totals)


def test_tail_reports_idle_seconds() -> None:
    reports: list[TailStats] = []
    started = time.monotonic()
    totals = tail("tcp://127.0.0.1:1", duration_s=2.2, on_stats=reports.append)
    assert 2.0 <= time.monotonic() - started < 15  # the upper bound only catches a tail that never ends
    # One report per full second: two, or one when a loaded machine delayed the first past 1.2 s.
    assert 1 <= len(reports) <= 2 and all(r.frames == 0 and r.window_s >= 1.0 for r in reports)
    assert totals.frames == 0 and totals.fps == 0.0
    assert "0.0 fps" in format_stats(reports[0])
