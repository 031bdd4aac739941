"""The pipeline end to end on the demo clip: real CenterFace, real PyAV, real ZeroMQ."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import zmq

from streamd.align import expand_box
from streamd.anonymize import build_anonymizer
from streamd.app import open_stream
from streamd.config import (
    AnonymizerConfig,
    CameraConfig,
    FileOutputConfig,
    FileSourceConfig,
    OutputsConfig,
    PipelineConfig,
    ReversibleConfig,
    TrackerConfig,
    ZmqOutputConfig,
)
from streamd.detect import build_detector
from streamd.detect.base import FaceDetector
from streamd.errors import SourceError
from streamd.sources.base import FrameSource
from streamd.pipeline import StreamPipeline
from streamd.protocol import decode_event, decode_frame_message
from streamd.reversible.recording.recording_format import read_recording
from streamd.types import Detections, VideoFrame

from av_clips import write_clip
from conftest import decode_all
from memory_source import MemoryFrameSource
from restore_helpers import make_keypair

MISSED_FRAMES = {5, 6, 7}
MARGIN = 0.2


class MissingDetector(FaceDetector):
    """The real detector, except that it finds nothing on chosen frames (a brief detector miss)."""

    def __init__(self, inner: FaceDetector, missed_calls: set[int], raise_on: set[int] | None = None) -> None:
        self.inner = inner
        self.missed_calls = missed_calls
        self.raise_on = raise_on or set()
        self.calls = 0

    def detect(self, bgr: np.ndarray) -> Detections:
        call = self.calls
        self.calls += 1
        if call in self.raise_on:
            raise RuntimeError("simulated model failure")
        found = self.inner.detect(bgr)
        return Detections.empty() if call in self.missed_calls else found


def camera_for(input_path: Path, output_path: Path | None, **updates: object) -> CameraConfig:
    fields: dict[str, object] = {
        "id": "test",
        "source": FileSourceConfig(path=input_path),
        "anonymizer": AnonymizerConfig(method="blur", margin=MARGIN),
        "outputs": OutputsConfig(file=FileOutputConfig(path=output_path) if output_path else None),
    }
    fields.update(updates)
    return CameraConfig(**fields)


def run_with_detector(camera: CameraConfig, detector: FaceDetector) -> StreamPipeline:
    from streamd.app import build_sinks
    from streamd.sources import open_source

    source = open_source(camera.source)
    sinks = build_sinks(camera, source)
    pipeline = StreamPipeline(camera, source, detector, build_anonymizer(camera.anonymizer), sinks)
    try:
        pipeline.run()
    finally:
        source.close()
    return pipeline


@pytest.fixture(scope="module")
def centerface() -> Iterator[FaceDetector]:
    detector = build_detector(camera_for(Path("x.mp4"), None).detector)
    yield detector
    detector.close()


def test_every_face_masked_in_every_frame_even_when_the_detector_misses(demo_clip, centerface, tmp_path) -> None:
    output = tmp_path / "out.mp4"
    detector = MissingDetector(centerface, MISSED_FRAMES)
    pipeline = run_with_detector(camera_for(demo_clip.path, output), detector)
    assert pipeline.stats.faces_predicted >= len(MISSED_FRAMES) * len(demo_clip.truth_xyxy[0])

    original = decode_all(demo_clip.path)
    anonymized = decode_all(output)
    assert len(anonymized) == len(original) == demo_clip.frame_count
    assert [pts for pts, _ in anonymized] == [pts for pts, _ in original]
    width, height = demo_clip.resolution_wh
    for index, ((_, before), (_, after)) in enumerate(zip(original, anonymized)):
        changed_anywhere = np.zeros((height, width), bool)
        for box in demo_clip.truth_xyxy[index]:
            x0, y0, x1, y1 = expand_box(box, 0.0, (width, height))
            if (x1 - x0) * (y1 - y0) < 16:
                continue
            diff = np.abs(after[y0:y1, x0:x1].astype(np.int16) - before[y0:y1, x0:x1]).mean()
            assert diff > 12, f"frame {index}: face at {box.round()} looks unmasked (mean change {diff:.1f})"
            gx0, gy0, gx1, gy1 = expand_box(box, MARGIN + 0.25, (width, height))
            changed_anywhere[gy0:gy1, gx0:gx1] = True
        background_error = (after.astype(np.float64) - before)[~changed_anywhere]
        psnr = 10 * np.log10(255.0**2 / max(np.mean(background_error**2), 1e-9))
        assert psnr > 38, f"frame {index}: background PSNR {psnr:.1f} dB, more than codec loss"


def test_a_frame_whose_detector_failed_is_blanked_not_passed_on(demo_clip, centerface, tmp_path) -> None:
    output = tmp_path / "out.mp4"
    detector = MissingDetector(centerface, set(), raise_on={3})
    pipeline = run_with_detector(camera_for(demo_clip.path, output), detector)
    assert pipeline.stats.errors == {"detector": 1}
    assert pipeline.stats.frames_masked == 1
    frames = decode_all(output)
    assert len(frames) == demo_clip.frame_count
    assert frames[3][1].mean() < 3, "the failed frame must carry no picture"
    assert frames[4][1].mean() > 50


def test_drop_policy_drops_the_failed_frame(demo_clip, centerface, tmp_path) -> None:
    output = tmp_path / "out.mp4"
    camera = camera_for(demo_clip.path, output, pipeline=PipelineConfig(on_error="drop"))
    pipeline = run_with_detector(camera, MissingDetector(centerface, set(), raise_on={2}))
    assert pipeline.stats.drops == {"processing_error": 1}
    assert len(decode_all(output)) == demo_clip.frame_count - 1


class SlowDetector(FaceDetector):
    def detect(self, bgr: np.ndarray) -> Detections:
        time.sleep(0.02)
        return Detections.empty()


def test_live_source_is_never_blocked_a_full_queue_drops_and_counts() -> None:
    frames = [np.full((64, 64, 3), i % 255, np.uint8) for i in range(200)]
    source = MemoryFrameSource(frames, live=True)
    camera = CameraConfig(id="live", source={"type": "rtsp", "url": "rtsp://127.0.0.1/x"},
                          pipeline=PipelineConfig(queue_size=2))
    pipeline = StreamPipeline(camera, source, SlowDetector(), build_anonymizer(camera.anonymizer), [])
    pipeline.run()
    delivery_span = source.delivered_at[-1] - source.delivered_at[0]
    assert delivery_span < 200 * 0.02 / 2, "the source waited for the slow detector"
    assert pipeline.stats.drops["queue_full"] > 100
    assert pipeline.stats.frames_out + pipeline.stats.drops["queue_full"] == 200


def test_subscriber_receives_every_frame_with_the_documented_header(demo_clip) -> None:
    camera = camera_for(
        demo_clip.path, None,
        outputs=OutputsConfig(zmq=ZmqOutputConfig(endpoint="tcp://127.0.0.1:*", send_hwm=1000)),
        tracker=TrackerConfig(max_missed_frames=3),
    )
    context = zmq.Context.instance()
    received: list[dict] = []
    events: list[dict] = []
    with open_stream(camera) as pipeline:
        endpoint = pipeline.sinks[0].endpoint
        subscriber = context.socket(zmq.SUB)
        subscriber.setsockopt(zmq.SUBSCRIBE, b"")
        subscriber.setsockopt(zmq.RCVTIMEO, 30000)
        subscriber.connect(endpoint)
        # ZeroMQ subscriptions arrive asynchronously: probe until one gets through, then start afresh.
        publisher = pipeline.sinks[0].publisher
        deadline = time.monotonic() + 20
        while not subscriber.poll(50):
            assert time.monotonic() < deadline, "the subscription never reached the publisher"
            publisher.publish_event(publisher.make_event("stream_up", details={"probe": True}))
        while subscriber.poll(200):
            subscriber.recv_multipart()
        runner = threading.Thread(target=pipeline.run)
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                parts = subscriber.recv_multipart()
                if parts[0].startswith(b"event."):
                    events.append(decode_event(parts))
                    if events[-1]["type"] == "stream_down":
                        break
                    continue
                header, image, extra = decode_frame_message(parts)
                assert image.shape == (720, 1280, 3)
                received.append(header)
        finally:
            runner.join(timeout=30)
            subscriber.close(linger=0)
    assert [h["frame_index"] for h in received] == list(range(demo_clip.frame_count))
    for header in received:
        assert header["camera"] == "test" and header["method"] == "blur" and header["status"] == "ok"
        assert header["width"] == 1280 and header["height"] == 720
        assert len(header["faces"]) == len(demo_clip.truth_xyxy[header["frame_index"]])
        for face in header["faces"]:
            assert len(face["xyxy"]) == 4 and len(face["kps5"]) == 5 and face["track_id"] >= 1
    track_ids = {face["track_id"] for header in received for face in header["faces"]}
    started = {event["track_id"] for event in events if event["type"] == "track_start"}
    ended = {event["track_id"] for event in events if event["type"] == "track_end"}
    assert started == track_ids == ended
    assert events[0]["type"] == "stream_up"


class CameraLostAfter(FrameSource):
    """A file source that fails with a SourceError after `frames_before_failure` frames."""

    def __init__(self, inner: FrameSource, frames_before_failure: int) -> None:
        self.inner = inner
        self.frames_before_failure = frames_before_failure

    def frames(self) -> Iterator[VideoFrame]:
        for count, frame in enumerate(self.inner.frames()):
            if count == self.frames_before_failure:
                raise SourceError("camera lost")
            yield frame

    @property
    def time_base(self) -> Fraction:
        return self.inner.time_base

    @property
    def average_rate(self) -> Fraction:
        return self.inner.average_rate

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("suffix, reversible", [(".mp4", False), (".mkv", True)])
def test_a_failed_run_keeps_the_frames_it_wrote_under_an_incomplete_name(
        demo_clip, tmp_path, suffix, reversible) -> None:
    from streamd.app import build_sinks
    from streamd.sources import open_source

    output = tmp_path / f"out{suffix}"
    updates: dict[str, object] = {"anonymizer": AnonymizerConfig(method="solid", margin=MARGIN)}
    if reversible:
        _, public_key = make_keypair(tmp_path / "keys")
        updates["reversible"] = ReversibleConfig(recipients=[str(public_key)])
    camera = camera_for(demo_clip.path, output, **updates)
    source = CameraLostAfter(open_source(camera.source), frames_before_failure=12)
    detector = build_detector(camera.detector)
    pipeline = StreamPipeline(camera, source, detector, build_anonymizer(camera.anonymizer), build_sinks(camera, source))
    with pytest.raises(SourceError, match="camera lost"):
        pipeline.run()
    source.close()
    detector.close()
    assert not output.exists()
    kept = list(tmp_path.glob(f"out.incomplete-*{suffix}"))
    assert len(kept) == 1
    # the frames read before the camera was lost are all written, however far behind detection ran
    assert pipeline.stats.frames_in == pipeline.stats.frames_out == 12
    assert len(decode_all(kept[0])) == 12
    if reversible:
        recording = read_recording(kept[0])
        assert not recording.truncated and len(recording.records) == pipeline.stats.frames_out


def test_a_pipeline_runs_opencv_on_its_own_threads(tmp_path) -> None:
    # a fresh interpreter: OpenCV starts with a pool of its own on a machine with several cores
    clip = write_clip(tmp_path / "clip.mp4", frames=5)
    script = (
        "import sys, cv2; from pathlib import Path; from streamd.oneshot import anonymize_video; "
        "from streamd.config import CameraConfig, FileSourceConfig; "
        "before = cv2.getNumThreads(); clip = Path(sys.argv[1]); "
        "result = anonymize_video(clip, Path(sys.argv[2]), CameraConfig(id='c', source=FileSourceConfig(path=clip))); "
        "print(before, cv2.getNumThreads(), result.stats.frames_out)"
    )
    completed = subprocess.run([sys.executable, "-c", script, str(clip), str(tmp_path / "out.mp4")],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    before, after, frames = completed.stdout.split()[-3:]
    assert (after, frames) == ("1", "5")
    assert int(before) >= 1

