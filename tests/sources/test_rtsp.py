"""RTSP source against the loopback test server: first frame, restarts, freezes, dead URLs, garbage."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from rtsp_server import RtspTestServer, make_h264_clip

from streamd.config import RtspSourceConfig
from streamd.errors import SourceError
from streamd.sources.rtsp import RtspVideoSource, redact_url
from streamd.types import VideoFrame

pytestmark = pytest.mark.timeout(120)

WIDTH, HEIGHT, FPS = 320, 240, 25


class FrameCollector:
    """Iterates `source.frames()` in a thread and records frames, arrival times and state changes."""

    def __init__(self, source_config: RtspSourceConfig) -> None:
        self.frames: list[VideoFrame] = []
        self.arrivals: list[float] = []
        self.states: list[tuple[bool, str]] = []
        self.error: Exception | None = None
        self.source = RtspVideoSource(source_config, on_state=lambda up, reason: self.states.append((up, reason)),
                                      rng=random.Random(7))
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()

    def _consume(self) -> None:
        try:
            for frame in self.source.frames():
                self.frames.append(frame)
                self.arrivals.append(time.monotonic())
        except Exception as error:  # kept for the test to assert on
            self.error = error

    def wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Seconds until `condition()` held; fails the test after `timeout_s`."""
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > timeout_s:
                raise AssertionError(f"not within {timeout_s} s: {what}")
            time.sleep(0.01)
        return time.monotonic() - start

    def wait_for_frames(self, count: int, timeout_s: float) -> float:
        target = len(self.frames) + count
        return self.wait_until(lambda: len(self.frames) >= target, timeout_s, f"{count} more frames")

    def close(self) -> float:
        """Close the source and return how long until `frames()` returned."""
        start = time.monotonic()
        self.source.close()
        self.thread.join(timeout=2)
        assert not self.thread.is_alive(), "frames() did not return after close()"
        return time.monotonic() - start


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_h264_clip(tmp_path_factory.mktemp("rtsp") / "clip.mp4", WIDTH, HEIGHT, FPS, seconds=2.0, gop=10)


@pytest.fixture
def server(clip: Path) -> Iterator[RtspTestServer]:
    with RtspTestServer(clip) as running:
        yield running


@pytest.fixture
def collectors() -> Iterator[list[FrameCollector]]:
    made: list[FrameCollector] = []
    yield made
    for collector in made:
        collector.close()


def source_config(url: str, **overrides: float) -> RtspSourceConfig:
    # Timeouts well above the stalls a loaded machine causes, so only the tests that freeze the server see one.
    fields = {"open_timeout_s": 3.0, "read_timeout_s": 3.0, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.4}
    fields.update(overrides)
    return RtspSourceConfig(url=url, **fields)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_continuous(frames: list[VideoFrame]) -> None:
    assert [frame.index for frame in frames] == list(range(len(frames)))
    pts = [frame.pts for frame in frames]
    assert all(later > earlier for earlier, later in zip(pts, pts[1:])), "pts must strictly increase"


def test_first_frame_has_the_clip_size_within_seconds(server: RtspTestServer,
                                                     collectors: list[FrameCollector]) -> None:
    collector = FrameCollector(source_config(server.url))
    collectors.append(collector)
    # Wide margins: a loaded 2-core machine may stall any thread for a second or two.
    first_frame_s = collector.wait_for_frames(1, timeout_s=10.0)
    assert first_frame_s < 10.0
    frame = collector.frames[0]
    assert frame.resolution_wh == (WIDTH, HEIGHT)
    assert frame.index == 0 and frame.time_base == Fraction(1, 90_000)
    collector.wait_for_frames(10, timeout_s=10.0)
    source = collector.source
    assert source.is_live and source.connected
    assert source.average_rate == FPS
    assert source.frames_decoded >= 11 and source.reconnects == 0
    assert collector.states == [(True, "connected")]
    assert_continuous(collector.frames)
    assert collector.close() < 5.0
    assert collector.error is None


def test_server_restart_on_the_same_port_resumes_frames(server: RtspTestServer,
                                                        collectors: list[FrameCollector]) -> None:
    collector = FrameCollector(source_config(server.url))
    collectors.append(collector)
    collector.wait_for_frames(5, timeout_s=10.0)
    port = server.port
    server.stop()
    collector.wait_until(lambda: not collector.source.connected, 10.0, "end of stream noticed")
    time.sleep(0.8)
    server.start()
    assert server.port == port
    recovery_s = collector.wait_for_frames(5, timeout_s=10.0)
    assert recovery_s < 10.0
    source = collector.source
    assert source.reconnects == 1 and source.disconnects == 1 and source.connected
    assert source.connect_failures >= 1
    assert [up for up, _ in collector.states] == [True, False, True]
    assert collector.states[1][1] == "end of stream"
    assert_continuous(collector.frames)


def test_frozen_server_times_out_and_reconnects(server: RtspTestServer, collectors: list[FrameCollector]) -> None:
    collector = FrameCollector(source_config(server.url, read_timeout_s=1.0, open_timeout_s=1.0))
    collectors.append(collector)
    collector.wait_for_frames(5, timeout_s=10.0)
    server.freeze()
    detected_s = collector.wait_until(lambda: collector.source.disconnects == 1, 10.0, "stall detected")
    assert detected_s >= 0.9
    # The reader counts the disconnect before the consumer has taken the state change from its queue.
    collector.wait_until(lambda: not collector.states[-1][0], 10.0, "down state handed over")
    assert collector.states[-1] == (False, "no data for 1 s")
    server.unfreeze()
    collector.wait_until(lambda: collector.source.reconnects == 1, 10.0, "reconnected after the freeze")
    collector.wait_for_frames(5, timeout_s=10.0)
    assert server.connections_total >= 2
    assert_continuous(collector.frames)


def test_close_returns_promptly_while_the_read_is_stalled(server: RtspTestServer) -> None:
    collector = FrameCollector(source_config(server.url, read_timeout_s=30.0))
    collector.wait_for_frames(3, timeout_s=10.0)
    server.freeze()
    time.sleep(0.3)
    assert collector.close() < 5.0
    assert collector.error is None


def test_close_from_another_thread_while_the_reader_is_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service reload may stop a camera whose frames() has only just begun: close() must not fail."""
    source = RtspVideoSource(source_config(f"rtsp://127.0.0.1:{free_port()}/stream", reconnect_initial_s=0.05))
    close_errors: list[BaseException] = []
    real_start = threading.Thread.start

    def close_elsewhere_then_start(thread: threading.Thread) -> None:
        if thread.name.startswith("rtsp-reader"):
            def close() -> None:
                try:
                    source.close()
                except BaseException as error:  # kept for the test to assert on
                    close_errors.append(error)
            closer = threading.Thread(target=close)
            real_start(closer)
            closer.join(5.0)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", close_elsewhere_then_start)
    delivered = list(source.frames())
    assert delivered == [] and close_errors == []


def test_dead_url_keeps_retrying_with_backoff(collectors: list[FrameCollector]) -> None:
    collector = FrameCollector(source_config(f"rtsp://127.0.0.1:{free_port()}/stream",
                                             reconnect_initial_s=0.05, reconnect_max_s=0.3))
    collectors.append(collector)
    collector.wait_until(lambda: collector.source.connect_failures >= 4, 15.0, "several attempts")
    source = collector.source
    assert not source.connected and not collector.frames and collector.error is None
    assert len(collector.states) == 1 and collector.states[0][0] is False
    assert "cannot open" in collector.states[0][1]
    with pytest.raises(SourceError):
        source.average_rate
    assert collector.close() < 5.0


def test_backoff_grows_exponentially_with_full_jitter() -> None:
    source = RtspVideoSource(source_config("rtsp://127.0.0.1:9/x", reconnect_initial_s=0.2, reconnect_max_s=5.0),
                             rng=random.Random(1))
    for failures in range(1, 12):
        cap = min(5.0, 0.2 * 2**failures)
        delays = [source._backoff_s(failures) for _ in range(200)]
        assert all(0.2 <= delay <= cap for delay in delays)
        assert max(delays) > 0.2 + 0.8 * (cap - 0.2)
    assert max(source._backoff_s(1000) for _ in range(50)) <= 5.0


def test_garbage_is_counted_and_frames_keep_coming(server: RtspTestServer,
                                                   collectors: list[FrameCollector]) -> None:
    collector = FrameCollector(source_config(server.url))
    collectors.append(collector)
    collector.wait_for_frames(5, timeout_s=10.0)
    assert collector.source.decode_errors == 0
    server.inject_garbage(packets=12)
    collector.wait_for_frames(25, timeout_s=10.0)
    source = collector.source
    assert source.decode_errors > 0
    assert source.disconnects == 0 and source.connected
    assert all(frame.resolution_wh == (WIDTH, HEIGHT) for frame in collector.frames)


def test_two_clients_share_one_server(server: RtspTestServer, collectors: list[FrameCollector]) -> None:
    first, second = FrameCollector(source_config(server.url)), FrameCollector(source_config(server.url))
    collectors += [first, second]
    first.wait_for_frames(10, timeout_s=10.0)
    second.wait_for_frames(10, timeout_s=10.0)
    assert server.connections_total == 2


def test_password_is_redacted_in_urls() -> None:
    assert redact_url("rtsp://admin:s3cret@10.0.0.5:554/live") == "rtsp://admin:***@10.0.0.5:554/live"
    assert redact_url("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"


@pytest.mark.slow
def test_many_restart_cycles_recover_each_time(server: RtspTestServer, collectors: list[FrameCollector]) -> None:
    cycles = 30
    collector = FrameCollector(source_config(server.url, reconnect_max_s=0.3))
    collectors.append(collector)
    collector.wait_for_frames(3, timeout_s=10.0)
    threads_before = threading.active_count()
    recoveries = []
    for cycle in range(cycles):
        server.stop()
        collector.wait_until(lambda: not collector.source.connected, 10.0, f"cycle {cycle}: end of stream")
        time.sleep(0.2)
        server.start()
        # Reconnected first: frames read before the outage may still be in the hand-off queue.
        started = time.monotonic()
        collector.wait_until(lambda: collector.source.reconnects == cycle + 1, 10.0, f"cycle {cycle}: reconnected")
        collector.wait_for_frames(2, timeout_s=10.0)
        recoveries.append(time.monotonic() - started)
    assert max(recoveries) < 20.0
    source = collector.source
    assert source.reconnects == cycles and source.disconnects == cycles
    assert threading.active_count() <= threads_before + 2
    assert_continuous(collector.frames)
