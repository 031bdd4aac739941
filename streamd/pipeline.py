"""One stream's loop: decode -> detect and track -> anonymize -> sinks, overlapped in threads.

Stages are joined by bounded queues. A detector that can (`FrameDetector`) detects
`detector.detect_workers` frames at once on as many threads; the tracker takes them in order. A live source never blocks: when the first queue is full the
newest frame is dropped and counted. A file source blocks instead (back-pressure), so no frame is
lost. A frame whose faces could not be processed is never passed on as it came in: it is blanked
(`on_error: mask`) or dropped (`on_error: drop`) and counted.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamd.anonymize.base import FaceAnonymizer
from streamd.config import CameraConfig, CenterFaceConfig
from streamd.detect.base import FaceDetector, FrameDetections, FrameDetector
from streamd.sources.base import FrameSource
from streamd.reversible.sealing.stream_sealer import SEALING_EXTRAS_KEY, StreamSealer
from streamd.sinks.base import FrameSink
from streamd.stats import PipelineStats
from streamd.tracking import FaceTracker
from streamd.types import AnonymizedFrame, TrackedFace, VideoFrame

logger = logging.getLogger(__name__)

QUEUE_POLL_S = 0.1


class _EndOfStream:
    """Queue marker: no more items follow."""


END = _EndOfStream()


@dataclass(frozen=True)
class SourceState:
    """Queue item: a live source went up or down; sinks hear of it in order with the frames."""

    up: bool
    reason: str


class _Stopped(Exception):
    """A detection thread gave up waiting because another stage failed."""


@dataclass(frozen=True)
class _InFlight:
    """A frame handed to the tracking thread: its detection (None when the detector skips it) and where
    the boxes the tracker holds after it go (the next frame's focus passes wait for them)."""

    frame: VideoFrame
    detection: Future | None
    boxes_after: Future


@dataclass(frozen=True)
class _Detected:
    """One frame's detection: what it found, or why it failed, and how long it took."""

    found: FrameDetections | None
    failure: str | None
    seconds: float


@dataclass
class _TrackedItem:
    frame: VideoFrame
    faces: list[TrackedFace]
    started: list[int]
    ended: list[int]
    failure: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)


def describe_failure(exc: BaseException) -> str:
    """The exception's message, or its type when it has none (an empty reason explains nothing)."""
    return str(exc) or type(exc).__name__


def masked_frame(bgr: np.ndarray) -> np.ndarray:
    """What a frame that failed processing becomes: nothing of the picture survives."""
    return np.zeros_like(bgr)


def run_opencv_on_calling_threads() -> None:
    """Make OpenCV run each call on the thread that makes it, without a thread pool of its own
    (process-wide).

    The pipeline's stages are threads already (decode, two detection threads, tracking, masking,
    output). OpenCV splitting each small resize, colour conversion or optical flow over its own pool on
    top of them cost more than it saved: on the held-out sizes clip, 28.9-30.4 against 26.7-29.3 fps in
    three paired runs, with the same output bytes."""
    cv2.setNumThreads(0)


class StreamPipeline:
    """Runs one camera's stages until the source ends, `stop()` is called, or a stage fails."""

    def __init__(
        self,
        camera: CameraConfig,
        source: FrameSource,
        detector: FaceDetector,
        anonymizer: FaceAnonymizer,
        sinks: Sequence[FrameSink],
        stats: PipelineStats | None = None,
        on_frame: Callable[[AnonymizedFrame], None] | None = None,
        sealer: StreamSealer | None = None,
    ) -> None:
        self.camera = camera
        self.sealer = sealer
        self.source = source
        self.detector = detector
        self.anonymizer = anonymizer
        self.sinks = list(sinks)
        self.stats = stats or PipelineStats()
        self._on_frame = on_frame
        self._tracker = FaceTracker(camera.tracker)
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._source_failure: BaseException | None = None
        self._failure_lock = threading.Lock()
        size = camera.pipeline.queue_size
        self._decoded: queue.Queue = queue.Queue(maxsize=size)
        self._tracked: queue.Queue = queue.Queue(maxsize=size)
        self._anonymized: queue.Queue = queue.Queue(maxsize=size)
        self._log = logger.getChild(camera.id)
        self._method_details = anonymizer.method_details()

    # ------------------------------------------------------------ control
    def stop(self) -> None:
        """Ask every stage to finish; `run` then returns after the sinks are finished.

        A live source is closed too, so a decode stage waiting on a camera that is down returns.
        """
        self._stop.set()
        if self.source.is_live:
            self.source.close()

    def report_source_state(self, up: bool, reason: str) -> None:
        """Pass a source's up/down change on to the sinks (an `on_state` callback: decode thread)."""
        self._put(self._decoded, SourceState(up, reason))

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._failure_lock:
            if self._failure is None:
                self._failure = exc
                if isinstance(exc, KeyboardInterrupt):
                    self._log.warning("interrupted (%s); stopping and keeping what was written",
                                      str(exc) or "Ctrl-C")
                else:
                    self._log.error("stage %s failed: %s", stage, describe_failure(exc))
        self._stop.set()

    def _put(self, target: queue.Queue, item: object) -> bool:
        """Blocking put that gives up when the pipeline is stopping; True if the item was queued."""
        while True:
            try:
                target.put(item, timeout=QUEUE_POLL_S)
                return True
            except queue.Full:
                if self._failure is not None:
                    return False

    def _items(self, source: queue.Queue) -> Iterator[object]:
        while True:
            try:
                item = source.get(timeout=QUEUE_POLL_S)
            except queue.Empty:
                if self._failure is not None:
                    return
                continue
            if item is END:
                return
            yield item

    # ------------------------------------------------------------ stages
    def _decode_stage(self) -> None:
        frames = self.source.frames()
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except Exception as exc:  # the stream ends here: frames already decoded still go out
                    self._source_failure = exc
                    self._log.error("source failed: %s; writing the %d frame(s) already read",
                                    describe_failure(exc), self.stats.frames_in)
                    break
                self.stats.add_stage_time("decode", time.perf_counter() - started)
                self.stats.count_frame_in()
                if self.source.is_live:
                    try:
                        self._decoded.put_nowait(frame)
                    except queue.Full:
                        self.stats.count_drop("queue_full")
                elif not self._put(self._decoded, frame):
                    break
        finally:
            frames.close()
            self._put(self._decoded, END)

    def _analyze_stage(self) -> None:
        workers = self.camera.detector.detect_workers if isinstance(self.camera.detector, CenterFaceConfig) else 1
        try:
            if workers > 1 and isinstance(self.detector, FrameDetector):
                self._analyze_side_by_side(self.detector, workers)
            else:
                self._analyze_in_turn()
            ended = self._tracker.flush()
            if ended:
                self._put(self._tracked, ended)
        finally:
            self._put(self._tracked, END)

    def _analyze_in_turn(self) -> None:
        """Detect, then track, one frame after the other."""
        detect_every = self.camera.tracker.detect_every
        for frame in self._items(self._decoded):
            if isinstance(frame, SourceState):
                if not self._put(self._tracked, frame):
                    return
                continue
            assert isinstance(frame, VideoFrame)
            found = None
            if frame.index % detect_every == 0:
                found = self._detect(functools.partial(self._detect_in_turn, frame.bgr), frame)
            if not self._track(frame, found):
                return
            self.detector.focus_on(self._tracker.face_boxes())

    def _analyze_side_by_side(self, detector: FrameDetector, workers: int) -> None:
        """Detect up to `workers` frames at once on as many threads, while a tracking thread takes them
        in order.

        A frame's passes over the frame run as soon as a thread is free; its focus passes, which look
        again where the tracker held faces after the frame before, wait until that frame is tracked.
        The detections are therefore the same as detecting one frame after the other.
        """
        detect_every = self.camera.tracker.detect_every
        in_order: queue.Queue = queue.Queue(maxsize=workers)
        tracking = threading.Thread(target=self._guarded("track", lambda: self._track_in_order(in_order)),
                                    name=f"{self.camera.id}-track", daemon=True)
        tracking.start()
        boxes_before: Future = Future()
        boxes_before.set_result(np.zeros((0, 4), np.float32))
        frame_number = 0
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{self.camera.id}-detect") as pool:
                for item in self._items(self._decoded):
                    if isinstance(item, SourceState):
                        if not self._put(in_order, item):
                            return
                        continue
                    assert isinstance(item, VideoFrame)
                    boxes_after: Future = Future()
                    detection = None
                    if item.index % detect_every == 0:
                        focus = functools.partial(self._wait_for, boxes_before)
                        detection = pool.submit(self._detect, functools.partial(
                            detector.detect_frame, item.bgr, frame_number, focus), item)
                        frame_number += 1
                    if not self._put(in_order, _InFlight(item, detection, boxes_after)):
                        return
                    boxes_before = boxes_after
        finally:
            self._put(in_order, END)
            tracking.join()

    def _track_in_order(self, in_order: queue.Queue) -> None:
        for item in self._items(in_order):
            if isinstance(item, SourceState):
                if not self._put(self._tracked, item):
                    return
                continue
            assert isinstance(item, _InFlight)
            detected = None if item.detection is None else item.detection.result()
            passed_on = self._track(item.frame, detected)
            item.boxes_after.set_result(self._tracker.face_boxes())
            if not passed_on:
                return

    def _wait_for(self, boxes: Future) -> np.ndarray:
        """The tracked boxes `boxes` will hold; raises _Stopped when the pipeline fails meanwhile."""
        while True:
            try:
                return boxes.result(timeout=QUEUE_POLL_S)
            except FutureTimeout:
                if self._failure is not None:
                    raise _Stopped() from None

    def _detect_in_turn(self, bgr: np.ndarray) -> FrameDetections:
        detections = self.detector.detect(bgr)
        return FrameDetections(detections, self.detector.last_frame_complete)

    def _detect(self, run: Callable[[], FrameDetections], frame: VideoFrame) -> _Detected:
        """One frame's detection, timed; a failure is kept for the frame (it fails closed), not raised."""
        started = time.perf_counter()
        try:
            found, failure = run(), None
        except _Stopped:
            raise
        except Exception as exc:  # a model error on one frame fails that frame closed
            found, failure = None, f"detector: {exc}"
            self.stats.count_error("detector")
            self._log.warning("detector failed on frame %d: %s", frame.index, exc)
        seconds = time.perf_counter() - started
        self.stats.add_stage_time("detect", seconds)
        return _Detected(found, failure, seconds)

    def _track(self, frame: VideoFrame, detected: _Detected | None) -> bool:
        """Track one frame (with its detections, if the detector ran on it) and pass it on."""
        stage_seconds: dict[str, float] = {}
        detections, complete, failure = None, True, None
        if detected is not None:
            stage_seconds["detect"] = detected.seconds
            failure = detected.failure
            if detected.found is not None:
                detections, complete = detected.found.detections, detected.found.complete
        started = time.perf_counter()
        update = self._tracker.update(detections, frame_wh=frame.resolution_wh, bgr=frame.bgr,
                                      search_complete=complete)
        stage_seconds["track"] = time.perf_counter() - started
        self.stats.add_stage_time("track", stage_seconds["track"])
        self.stats.count_tracks_started(len(update.started))
        return self._put(self._tracked, _TrackedItem(frame, update.faces, update.started, update.ended, failure,
                                                     stage_seconds))

    def _anonymize_one(self, item: _TrackedItem) -> AnonymizedFrame | None:
        for track_id in item.started:
            self.anonymizer.start_track(track_id)
            if self.sealer is not None:
                self.sealer.start_track(track_id)
        failure = item.failure
        bgr = None
        if failure is None:
            started = time.perf_counter()
            try:
                bgr = self.anonymizer.apply(item.frame.bgr, item.faces)
            except Exception as exc:  # fail closed: this frame is not sent as it came in
                failure = f"anonymizer: {exc}"
                self.stats.count_error("anonymizer")
                self._log.warning("anonymizer failed on frame %d: %s", item.frame.index, exc)
            item.stage_seconds["anonymize"] = time.perf_counter() - started
            self.stats.add_stage_time("anonymize", item.stage_seconds["anonymize"])
        extras: dict[str, object] = {}
        if self.sealer is not None:
            failure = self._seal(item, failure, extras)
        for track_id in item.ended:
            self.anonymizer.end_track(track_id)
            if self.sealer is not None:
                self.sealer.end_track(track_id)
        status = "ok"
        if failure is not None:
            if self.camera.pipeline.on_error == "drop":
                self.stats.count_drop("processing_error")
                return None
            bgr = masked_frame(item.frame.bgr)
            status = "masked"
        return AnonymizedFrame(
            frame=item.frame,
            bgr=bgr,
            faces=item.faces,
            method=self.anonymizer.method,
            method_details=self._method_details,
            status=status,
            started=item.started,
            ended=item.ended,
            stage_seconds=item.stage_seconds,
            extras=extras,
        )

    def _seal(self, item: _TrackedItem, failure: str | None, extras: dict[str, object]) -> str | None:
        """Key material and sealed payloads of a frame into `extras`; returns the frame's failure, if any."""
        assert self.sealer is not None
        if failure is None:
            started = time.perf_counter()
            try:
                extras[SEALING_EXTRAS_KEY] = self.sealer.seal_frame(item.frame, item.faces)
            except Exception as exc:  # fail closed: a frame that cannot be sealed is not sent as it came in
                failure = f"sealing: {exc}"
                self.stats.count_error("sealing")
                self._log.warning("sealing failed on frame %d: %s", item.frame.index, exc)
            item.stage_seconds["seal"] = time.perf_counter() - started
            self.stats.add_stage_time("seal", item.stage_seconds["seal"])
        if failure is not None:
            extras[SEALING_EXTRAS_KEY] = self.sealer.keys_frame(item.frame)
        return failure

    def _anonymize_stage(self) -> None:
        try:
            for item in self._items(self._tracked):
                if isinstance(item, SourceState):
                    if not self._put(self._anonymized, item):
                        return
                    continue
                if isinstance(item, list):  # track ids ended by the end of the stream
                    for track_id in item:
                        self.anonymizer.end_track(track_id)
                        if self.sealer is not None:
                            self.sealer.end_track(track_id)
                    if not self._put(self._anonymized, item):
                        return
                    continue
                assert isinstance(item, _TrackedItem)
                anonymized = self._anonymize_one(item)
                if anonymized is not None and not self._put(self._anonymized, anonymized):
                    return
        finally:
            self._put(self._anonymized, END)

    def _output_stage(self) -> None:
        for item in self._items(self._anonymized):
            if isinstance(item, SourceState):
                for sink in self.sinks:
                    sink.source_state(item.up, item.reason)
                continue
            if isinstance(item, list):
                for sink in self.sinks:
                    sink.end_tracks(item)
                continue
            assert isinstance(item, AnonymizedFrame)
            for sink in self.sinks:
                started = time.perf_counter()
                sink.write(item)
                self.stats.add_stage_time(sink.stage, time.perf_counter() - started)
            predicted = sum(1 for face in item.faces if not face.detected)
            latency = max(0.0, time.time() - item.frame.wallclock)
            self.stats.count_output(len(item.faces), predicted, item.status != "ok", latency)
            if self._on_frame is not None:
                self._on_frame(item)

    # ------------------------------------------------------------ run
    def _guarded(self, name: str, body: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            try:
                body()
            except BaseException as exc:  # any stage failure stops the whole stream
                self._fail(name, exc)

        return target

    def run(self) -> PipelineStats:
        """Process the stream to its end. Raises the first stage failure after aborting the sinks."""
        run_opencv_on_calling_threads()
        stages = {
            "decode": self._decode_stage,
            "analyze": self._analyze_stage,
            "anonymize": self._anonymize_stage,
        }
        threads = [
            threading.Thread(target=self._guarded(name, body), name=f"{self.camera.id}-{name}", daemon=True)
            for name, body in stages.items()
        ]
        for thread in threads:
            thread.start()
        try:
            self._guarded("output", self._output_stage)()
            for thread in threads:
                thread.join()
        except BaseException as exc:  # a signal while waiting for the stages: stop them, keep the outputs
            self._fail("output", exc)
            for thread in threads:
                thread.join()
        if self._source_failure is not None and self._failure is None:
            self._failure = self._source_failure
        if self._failure is not None:
            for sink in self.sinks:
                sink.abort()
            raise self._failure
        for sink in self.sinks:
            sink.finish()
        return self.stats
