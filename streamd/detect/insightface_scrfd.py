"""InsightFace SCRFD detector loaded from a local model-pack folder (for example buffalo_l).

The folder must hold an SCRFD detection model named det_*.onnx (det_10g.onnx, det_500m.onnx, ...).
Nothing is downloaded: a missing folder or model is a ModelError naming the folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from streamd.config import InsightFaceConfig
from streamd.detect.base import FaceDetector, create_session, onnxruntime_errors
from streamd.errors import ModelError
from streamd.types import Detections

logger = logging.getLogger(__name__)

DETECTOR_FILE_PATTERN = "det_*.onnx"
SCRFD_NMS_IOU = 0.4
SIZE_MULTIPLE = 32


def find_scrfd_model(model_dir: Path) -> Path:
    """The single det_*.onnx in `model_dir`; ModelError naming the folder when absent or ambiguous."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(
            f"InsightFace model folder {model_dir} does not exist: expected a local model pack "
            f"(for example buffalo_l) holding an SCRFD detector {DETECTOR_FILE_PATTERN}"
        )
    candidates = sorted(model_dir.glob(DETECTOR_FILE_PATTERN))
    if not candidates:
        raise ModelError(
            f"InsightFace model folder {model_dir} holds no SCRFD detector: expected a file matching "
            f"{DETECTOR_FILE_PATTERN} (for example det_10g.onnx)"
        )
    if len(candidates) > 1:
        names = ", ".join(path.name for path in candidates)
        raise ModelError(f"InsightFace model folder {model_dir} holds several detectors ({names}): keep one")
    return candidates[0]


class InsightFaceDetector(FaceDetector):
    """SCRFD from a local InsightFace model pack, run with onnxruntime on the configured providers."""

    def __init__(self, config: InsightFaceConfig) -> None:
        self.config = config
        self.model_path = find_scrfd_model(config.model_dir)
        from insightface.model_zoo.scrfd import SCRFD

        session = create_session(str(self.model_path), config.providers, intra_op_threads=0)
        self._ort_errors = onnxruntime_errors()
        self.input_wh = (
            -(-config.input_width // SIZE_MULTIPLE) * SIZE_MULTIPLE,
            -(-config.input_height // SIZE_MULTIPLE) * SIZE_MULTIPLE,
        )
        try:
            self._scrfd = SCRFD(model_file=str(self.model_path), session=session)
            self._scrfd.prepare(
                ctx_id=0, input_size=self.input_wh, det_thresh=config.threshold, nms_thresh=SCRFD_NMS_IOU
            )
        except self._ort_errors as exc:
            raise ModelError(f"cannot load SCRFD from {self.model_path}: {exc}") from None
        if not getattr(self._scrfd, "use_kps", False):
            raise ModelError(
                f"SCRFD model {self.model_path} gives no landmarks; a model with 5 keypoints is needed"
            )
        logger.info("SCRFD loaded from %s at %dx%d", self.model_path, *self.input_wh)

    def detect(self, bgr: np.ndarray) -> Detections:
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"detect expects an HxWx3 uint8 BGR image, got {bgr.shape} {bgr.dtype}")
        if self._scrfd is None:
            raise ModelError("SCRFD detector is closed")
        try:
            boxes_scores, kps5 = self._scrfd.detect(bgr, input_size=self.input_wh)
        except self._ort_errors as exc:
            raise ModelError(f"SCRFD inference failed: {exc}") from exc
        if boxes_scores.shape[0] == 0:
            return Detections.empty()
        frame_h, frame_w = bgr.shape[:2]
        xyxy = boxes_scores[:, :4].astype(np.float32)
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, frame_w)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, frame_h)
        return Detections(
            xyxy=xyxy,
            kps5=np.asarray(kps5, np.float32).reshape(-1, 5, 2),
            scores=boxes_scores[:, 4].astype(np.float32),
        )

    def close(self) -> None:
        self._scrfd = None
