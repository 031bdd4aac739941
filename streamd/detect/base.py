"""The interface every face detector backend implements, plus box helpers they share."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamd.errors import ModelError
from streamd.types import Detections

# Execution providers that send data off the machine; a face anonymizer must never use them.
REMOTE_PROVIDERS = frozenset({"AzureExecutionProvider"})


class FaceDetector(abc.ABC):
    """Finds faces in one BGR frame.

    `detect` returns boxes as xyxy frame pixels, five landmarks per face in frame pixels (left eye,
    right eye, nose, left mouth corner, right mouth corner, as seen by the viewer: the ArcFace order)
    and scores. No face is `Detections.empty()`. A detector that cannot run raises `ModelError`.
    """

    #: False when the last `detect` searched only part of the frame (see `streamd.detect.schedule`).
    last_frame_complete: bool = True

    @abc.abstractmethod
    def detect(self, bgr: np.ndarray) -> Detections:
        """Faces in an HxWx3 uint8 BGR image."""

    def focus_on(self, boxes_xyxy: np.ndarray) -> None:
        """Where the tracker holds faces now (N, 4 xyxy); a detector that searches around them on the
        next frame overrides this. Others ignore it."""

    def detect_still(self, bgr: np.ndarray) -> Detections:
        """Faces in a photo: every pass a stream would spread over several frames, run on this one."""
        return self.detect(bgr)

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections of several frames, in order (backends that batch override this)."""
        return [self.detect(bgr) for bgr in images]

    def close(self) -> None:
        """Release the model session."""


@dataclass(frozen=True)
class FrameDetections:
    """What one frame's detection found, and whether it searched the whole frame at every face size."""

    detections: Detections
    complete: bool


class FrameDetector(FaceDetector):
    """A detector whose per-frame work depends only on the frame's number in the stream and where the
    tracker held faces, so that several frames can be detected at once on different threads
    (`StreamPipeline` does, with `detector.detect_workers`)."""

    @abc.abstractmethod
    def detect_frame(self, bgr: np.ndarray, frame_number: int, focus: Callable[[], np.ndarray]) -> FrameDetections:
        """Detections of frame `frame_number` (counting the frames detected in this stream from 0).
        `focus()` gives where the tracker held faces after the frame before (N, 4 xyxy), to search
        again around them; it may block until that frame is tracked, so call it as late as possible.
        Thread-safe."""


def pairwise_iou(xyxy_a: np.ndarray, xyxy_b: np.ndarray) -> np.ndarray:
    """IoU of every box in `xyxy_a` (N, 4) with every box in `xyxy_b` (M, 4), as an (N, M) array."""
    xyxy_a = np.asarray(xyxy_a, np.float32).reshape(-1, 4)
    xyxy_b = np.asarray(xyxy_b, np.float32).reshape(-1, 4)
    top_left = np.maximum(xyxy_a[:, None, :2], xyxy_b[None, :, :2])
    bottom_right = np.minimum(xyxy_a[:, None, 2:], xyxy_b[None, :, 2:])
    inter_wh = np.clip(bottom_right - top_left, 0.0, None)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    area_a = np.clip(xyxy_a[:, 2] - xyxy_a[:, 0], 0, None) * np.clip(xyxy_a[:, 3] - xyxy_a[:, 1], 0, None)
    area_b = np.clip(xyxy_b[:, 2] - xyxy_b[:, 0], 0, None) * np.clip(xyxy_b[:, 3] - xyxy_b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def non_max_suppression(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first.

    A box is dropped when its IoU with an already kept, higher scoring box is at least `iou_threshold`.
    """
    order = np.argsort(-scores, kind="stable")
    if order.size == 0:
        return order
    iou = pairwise_iou(xyxy[order], xyxy[order])
    suppressed = np.zeros(order.size, dtype=bool)
    keep: list[int] = []
    for rank in range(order.size):
        if suppressed[rank]:
            continue
        keep.append(int(order[rank]))
        suppressed |= iou[rank] >= iou_threshold
    return np.asarray(keep, dtype=np.int64)


def onnxruntime_errors() -> tuple[type[BaseException], ...]:
    """The exception types onnxruntime raises when a model cannot be loaded or run."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    names = ("Fail", "InvalidArgument", "RuntimeException", "InvalidGraph", "NoSuchFile", "EPFail")
    ort_types = tuple(getattr(ort_state, name) for name in names if hasattr(ort_state, name))
    return ort_types + (RuntimeError, ValueError)


def create_session(model: bytes | str, providers: list[str], intra_op_threads: int):
    """An onnxruntime session for serialized `model` bytes or a model path, on exactly `providers`.

    ModelError when a provider is remote, unavailable, or not enabled by the session.
    """
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)
    if not providers:
        raise ModelError("no onnxruntime execution provider configured")
    remote = [name for name in providers if name in REMOTE_PROVIDERS]
    if remote:
        raise ModelError(f"execution provider {remote[0]} sends frames off this machine and is not allowed")
    available = onnxruntime.get_available_providers()
    missing = [name for name in providers if name not in available]
    if missing:
        raise ModelError(
            f"onnxruntime execution provider {missing[0]} is not available here (available: {available})"
        )
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads > 0:
        options.intra_op_num_threads = intra_op_threads
    # Idle onnxruntime threads sleep rather than spin: spinning burns the cores that decoding,
    # tracking and encoding need (with it, a 1280x720 balanced run took 40% more CPU time).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(model, sess_options=options, providers=list(providers))
    except onnxruntime_errors() as exc:
        raise ModelError(f"onnxruntime cannot load the model: {exc}") from None
    dropped = [name for name in providers if name not in session.get_providers()]
    if dropped:
        raise ModelError(
            f"onnxruntime did not enable execution provider {dropped[0]} (enabled: {session.get_providers()})"
        )
    return session
