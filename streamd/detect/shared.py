"""One detector shared by several camera pipelines, batching their frames into one model run.

Each pipeline calls `detect` from its own thread as usual. A worker thread takes the first waiting
frame, waits up to `max_wait_s` for frames from other cameras (at most `max_batch` in all), runs them
through the backend's `detect_batch` in one call, and hands each caller its own result. A failure of
that run is raised in every caller whose frame was in it, so each pipeline fails that frame closed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from streamd.config import CenterFaceConfig, InsightFaceConfig
from streamd.detect import build_backend, camera_detector
from streamd.detect.base import FaceDetector
from streamd.errors import ModelError
from streamd.types import Detections

logger = logging.getLogger(__name__)

QUEUE_POLL_S = 0.1


@dataclass
class _Request:
    bgr: np.ndarray
    result: Future
    native: bool = False  # run at the image's own size (a detection pass) rather than the configured size


class BatchingDetector(FaceDetector):
    """Thread-safe front of one backend detector that batches concurrent calls."""

    def __init__(self, inner: FaceDetector, max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.inner = inner
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batches_run = 0
        self.frames_run = 0
        self._requests: queue.Queue[_Request] = queue.Queue()
        self._closed = threading.Event()
        self._worker = threading.Thread(target=self._serve, name="shared-detector", daemon=True)
        self._worker.start()

    def detect(self, bgr: np.ndarray) -> Detections:
        if self._closed.is_set():
            raise ModelError("the shared detector is closed")
        request = _Request(bgr, Future())
        self._requests.put(request)
        return request.result.result()

    def detect_native(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections of images each run at its own size (the passes of a scheduled detector), batched
        with other callers' requests."""
        if self._closed.is_set():
            raise ModelError("the shared detector is closed")
        requests = [_Request(bgr, Future(), native=True) for bgr in images]
        for request in requests:
            self._requests.put(request)
        return [request.result.result() for request in requests]

    def _run_batch(self, batch: list[_Request]) -> list[Detections]:
        """Results of `batch` in order: native requests through `detect_native`, the rest `detect_batch`."""
        native = [request for request in batch if request.native]
        scaled = [request for request in batch if not request.native]
        results: dict[int, Detections] = {}
        if native:
            results.update(zip(map(id, native), self.inner.detect_native([r.bgr for r in native])))
        if scaled:
            results.update(zip(map(id, scaled), self.inner.detect_batch([r.bgr for r in scaled])))
        return [results[id(request)] for request in batch]

    def _gather(self, first: _Request) -> list[_Request]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._requests.get(timeout=max(remaining, 0.0)) if remaining > 0
                             else self._requests.get_nowait())
            except queue.Empty:
                break
        return batch

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                first = self._requests.get(timeout=QUEUE_POLL_S)
            except queue.Empty:
                continue
            batch = self._gather(first)
            try:
                results = self._run_batch(batch)
            except Exception as exc:  # every caller in the batch gets the failure and fails its frame closed
                for request in batch:
                    request.result.set_exception(exc)
                continue
            self.batches_run += 1
            self.frames_run += len(batch)
            for request, detections in zip(batch, results):
                request.result.set_result(detections)
        while True:
            try:
                self._requests.get_nowait().result.set_exception(ModelError("the shared detector is closed"))
            except queue.Empty:
                break

    @property
    def mean_batch_size(self) -> float:
        return self.frames_run / self.batches_run if self.batches_run else 0.0

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._worker.join()
        self.inner.close()


class SharedDetectorPool:
    """Shares one BatchingDetector per distinct detector configuration, counting its users.

    Each camera gets a front of its own (`camera_detector`): a CenterFace camera keeps its own pass
    schedule while its passes are batched with the other cameras' in the shared model.
    """

    def __init__(self, max_batch: int, max_wait_s: float) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._detectors: dict[str, tuple[BatchingDetector, int]] = {}

    @staticmethod
    def _key(config: CenterFaceConfig | InsightFaceConfig) -> str:
        return config.model_dump_json()

    def acquire(self, config: CenterFaceConfig | InsightFaceConfig) -> FaceDetector:
        """A detector for one camera, running on the shared model of `config`; `release` when done."""
        key = self._key(config)
        with self._lock:
            detector, users = self._detectors.get(key, (None, 0))
            if detector is None:
                detector = BatchingDetector(build_backend(config), self.max_batch, self.max_wait_s)
                logger.info("shared %s detector started (batches of up to %d)", config.type, self.max_batch)
            self._detectors[key] = (detector, users + 1)
            return camera_detector(detector, config)

    def release(self, config: CenterFaceConfig | InsightFaceConfig) -> None:
        key = self._key(config)
        with self._lock:
            detector, users = self._detectors[key]
            if users > 1:
                self._detectors[key] = (detector, users - 1)
                return
            del self._detectors[key]
        logger.info("shared %s detector stopped after %d batches (mean %.2f frames)", config.type,
                    detector.batches_run, detector.mean_batch_size)
        detector.close()

    @property
    def detectors(self) -> list[BatchingDetector]:
        with self._lock:
            return [detector for detector, _ in self._detectors.values()]
