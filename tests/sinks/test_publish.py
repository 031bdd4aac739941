"""ZmqPublisher over real ZeroMQ on loopback: delivery, header, drop counting, bind errors."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest
import zmq

from streamd.config import ZmqOutputConfig
from streamd.errors import SinkError
from streamd.frame_gaps import FrameGapCounter
from streamd.protocol import decode_event, decode_frame_message
from streamd.sinks.publish import ZmqPublisher
from streamd.types import AnonymizedFrame, TrackedFace, VideoFrame

CAMERA = "cam1"


def make_anonymized(index: int, height: int = 48, width: int = 64) -> AnonymizedFrame:
    bgr = np.full((height, width, 3), index % 256, np.uint8)
    frame = VideoFrame(bgr=bgr, index=index, pts=index * 512, time_base=Fraction(1, 12800), wallclock=time.time())
    face = TrackedFace(
        track_id=1,
        xyxy=np.array([4.0, 5.0, 20.0, 30.0], np.float32),
        kps5=np.full((5, 2), 10.0, np.float32),
        score=0.9,
        detected=True,
        age_frames=index,
    )
    return AnonymizedFrame(frame=frame, bgr=bgr, faces=[face], method="mosaic")


def subscriber(context: zmq.Context, endpoint: str, rcvhwm: int = 1000) -> zmq.Socket:
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, rcvhwm)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SUBSCRIBE, b"frame.")
    socket.setsockopt(zmq.SUBSCRIBE, b"event.")
    socket.connect(endpoint)
    return socket


def frame_indices(messages: list[list[bytes]]) -> list[int]:
    return [decode_frame_message(parts)[0]["frame_index"] for parts in messages if parts[0].startswith(b"frame.")]


# A subscriber that has read its queue empty is seen as having room again only when ZeroMQ's I/O thread
# has passed that on to the publisher, asynchronously: on a loaded machine that can take a while, so the
# tests below publish again until the frame gets through (bounded by DELIVERY_TIMEOUT_S) instead of
# expecting the very next frame to.
DELIVERY_TIMEOUT_S = 20.0


def wait_until_subscribed(publisher: ZmqPublisher, socket: zmq.Socket, timeout_s: float = 20.0) -> None:
    """Publish stream_up events until the subscriber gets one (ZeroMQ subscriptions travel asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        publisher.publish_event(publisher.make_event("stream_up", details={"width": 64, "height": 48}))
        if socket.poll(20):
            event = decode_event(socket.recv_multipart())
            assert event["type"] == "stream_up"
            while socket.poll(20):
                socket.recv_multipart()
            return
    raise AssertionError("subscription did not arrive")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("image_format", ["jpeg", "raw"])
def test_subscriber_that_keeps_up_receives_every_frame(image_format: str) -> None:
    config = ZmqOutputConfig(endpoint="tcp://127.0.0.1:*", image_format=image_format, send_hwm=1000)
    context = zmq.Context()
    with ZmqPublisher(config, CAMERA) as publisher:
        socket = subscriber(context, publisher.endpoint)
        wait_until_subscribed(publisher, socket)
        received = []
        for index in range(200):
            assert publisher.publish_frame(make_anonymized(index))
            while socket.poll(0):
                received.append(decode_frame_message(socket.recv_multipart()))
        publisher.publish_event(publisher.make_event("track_end", track_id=1, frame_index=199))
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        events = []
        while time.monotonic() < deadline and not events:
            if socket.poll(50):
                parts = socket.recv_multipart()
                if parts[0].startswith(b"event."):
                    events.append(decode_event(parts))
                else:
                    received.append(decode_frame_message(parts))
        assert publisher.sent == 200 and publisher.dropped == 0
    socket.close()
    context.term()
    assert [header["frame_index"] for header, _, _ in received] == list(range(200))
    header, bgr, extras = received[10]
    assert header["camera"] == CAMERA and header["stream_epoch"] == publisher.stream_epoch
    assert header["pts"] == 10 * 512 and header["time_base"] == "1/12800"
    assert header["method"] == "mosaic" and header["image"]["format"] == image_format
    assert header["faces"][0]["track_id"] == 1 and header["faces"][0]["xyxy"] == [4.0, 5.0, 20.0, 30.0]
    assert bgr.shape == (48, 64, 3) and extras == []
    assert events[0]["type"] == "track_end" and events[0]["track_id"] == 1


@pytest.mark.timeout(120)
def test_with_count_drops_a_stalled_subscriber_drops_are_counted_and_publish_never_blocks() -> None:
    config = ZmqOutputConfig(endpoint="tcp://127.0.0.1:*", image_format="raw", send_hwm=8, count_drops=True)
    context = zmq.Context()
    attempts = 600
    with ZmqPublisher(config, CAMERA) as publisher:
        stalled = subscriber(context, publisher.endpoint, rcvhwm=8)
        wait_until_subscribed(publisher, stalled)
        slowest_s = 0.0
        started = time.monotonic()
        for index in range(attempts):
            before = time.monotonic()
            publisher.publish_frame(make_anonymized(index, height=240, width=320))
            slowest_s = max(slowest_s, time.monotonic() - before)
        elapsed = time.monotonic() - started
        assert publisher.dropped > 0
        assert publisher.sent + publisher.dropped == attempts
        # A blocking send would hang for good; these bounds only catch that, not a slow, loaded machine.
        assert slowest_s < 5.0
        assert elapsed < 25
        # Events wait in order for room instead of being lost at the first refusal.
        assert publisher.publish_event(publisher.make_event("track_start", track_id=2, frame_index=attempts)) is False
        assert publisher.pending_events == 1
        received_frames = 0
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while time.monotonic() < deadline and received_frames < publisher.sent:
            if stalled.poll(50):
                stalled.recv_multipart()
                received_frames += 1
        assert received_frames == publisher.sent
        # Once the subscriber reads again, the waiting event goes out ahead of a later frame.
        index = attempts
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while publisher.pending_events and time.monotonic() < deadline:
            publisher.publish_frame(make_anonymized(index, height=240, width=320))
            index += 1
            while stalled.poll(50):
                stalled.recv_multipart()
        assert publisher.pending_events == 0 and publisher.events_sent >= 2
    stalled.close()
    context.term()


@pytest.mark.timeout(120)
def test_by_default_a_stalled_subscriber_loses_frames_alone() -> None:
    config = ZmqOutputConfig(endpoint="tcp://127.0.0.1:*", image_format="raw", send_hwm=100)
    assert config.count_drops is False
    context = zmq.Context()
    attempts = 600
    with ZmqPublisher(config, CAMERA) as publisher:
        stalled = subscriber(context, publisher.endpoint, rcvhwm=8)
        reader = subscriber(context, publisher.endpoint)
        wait_until_subscribed(publisher, stalled)
        wait_until_subscribed(publisher, reader)
        read_indices = []
        for index in range(attempts):
            assert publisher.publish_frame(make_anonymized(index, height=240, width=320))
            time.sleep(0.001)  # a camera's pace, far above what a reader needs
            while reader.poll(0):
                read_indices.extend(frame_indices([reader.recv_multipart()]))
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while len(read_indices) < attempts and time.monotonic() < deadline:
            if reader.poll(50):
                read_indices.extend(frame_indices([reader.recv_multipart()]))
        assert publisher.dropped == 0
        assert read_indices == list(range(attempts)), "the reading subscriber gets every frame, in order"
        stalled_indices = []
        while stalled.poll(1000):
            stalled_indices.extend(frame_indices([stalled.recv_multipart()]))
        assert 0 < len(stalled_indices) < attempts
        index = attempts
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while stalled_indices[-1] < attempts and time.monotonic() < deadline:
            publisher.publish_frame(make_anonymized(index, height=240, width=320))
            index += 1
            while stalled.poll(50):
                stalled_indices.extend(frame_indices([stalled.recv_multipart()]))
        assert stalled_indices[-1] >= attempts, "once it reads again the stalled subscriber gets new frames"
        assert stalled_indices == sorted(stalled_indices)
        gaps = FrameGapCounter()
        missing = sum(gaps.update(CAMERA, "epoch", index)[0] for index in stalled_indices)
        assert missing == stalled_indices[-1] + 1 - len(stalled_indices) > 0
    stalled.close()
    reader.close()
    context.term()


def test_bind_failure_is_a_sink_error() -> None:
    config = ZmqOutputConfig(endpoint="tcp://127.0.0.1:*")
    with ZmqPublisher(config, CAMERA) as first:
        taken = ZmqOutputConfig(endpoint=first.endpoint)
        with pytest.raises(SinkError, match="cannot bind ZeroMQ endpoint .*Address already in use"):
            ZmqPublisher(taken, CAMERA)
    with pytest.raises(SinkError, match="cannot bind"):
        ZmqPublisher(ZmqOutputConfig(endpoint="nonsense://x"), CAMERA)


def test_ipc_endpoint_and_close_twice(tmp_path) -> None:
    config = ZmqOutputConfig(endpoint=f"ipc://{tmp_path}/streamd.sock", linger_ms=0)
    publisher = ZmqPublisher(config, CAMERA)
    assert publisher.endpoint.startswith("ipc://")
    publisher.close()
    publisher.close()
    with pytest.raises(SinkError, match="closed"):
        publisher.publish_frame(make_anonymized(0))
