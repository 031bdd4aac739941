"""The identity judge: dlib's 128-D face recognition ResNet, embedding a face at a known box.

The judge never re-detects: it is given the face box (xyxy pixels), lets dlib's 5-point shape
predictor place the landmarks inside that box on the image it judges, and embeds the aligned
150x150 chip. Two embeddings closer than `DLIB_SAME_PERSON_THRESHOLD` (0.6, Euclidean) are the
same person by dlib's convention, which the SDN paper uses for its identity distance and SPR.

The model files come from the `face-recognition-models` package; they are located through the
import system without importing that package (its import pulls in the deprecated pkg_resources).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from pathlib import Path

import numpy as np

from streamd.errors import ModelError
from streamd.hashing import file_sha256

logger = logging.getLogger(__name__)

DLIB_SAME_PERSON_THRESHOLD = 0.6
EMBEDDING_DIMENSIONS = 128
RECOGNITION_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
# compute_face_descriptor: no jitter (deterministic), dlib's default chip padding.
DESCRIPTOR_JITTERS = 0
DESCRIPTOR_PADDING = 0.25
INSTALL_HINT = "pip install dlib-bin face-recognition-models (the 'eval' extra)"


def face_recognition_models_dir() -> Path:
    """The folder of .dat files that the installed face-recognition-models package ships."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ModelError(f"identity judge: the face-recognition-models package is not installed ({INSTALL_HINT})")
    return Path(spec.origin).parent / "models"


class DlibIdentityJudge:
    """Embeds faces at known boxes with dlib; `distance` is the Euclidean distance of two embeddings."""

    name = "dlib_face_recognition_resnet_model_v1"
    threshold = DLIB_SAME_PERSON_THRESHOLD

    def __init__(self, models_dir: Path | None = None) -> None:
        try:
            import dlib
        except ImportError:
            raise ModelError(f"identity judge: dlib is not installed ({INSTALL_HINT})") from None
        self._dlib = dlib
        folder = models_dir if models_dir is not None else face_recognition_models_dir()
        self.recognition_path = folder / RECOGNITION_MODEL_FILE
        self.shape_predictor_path = folder / SHAPE_PREDICTOR_FILE
        for path in (self.recognition_path, self.shape_predictor_path):
            if not path.is_file():
                raise ModelError(f"identity judge: model file {path} is missing (reinstall face-recognition-models)")
        try:
            self._shape_predictor = dlib.shape_predictor(str(self.shape_predictor_path))
            self._recognizer = dlib.face_recognition_model_v1(str(self.recognition_path))
        except RuntimeError as exc:
            raise ModelError(f"identity judge: dlib cannot load its models: {exc}") from None

    def describe(self) -> dict[str, object]:
        """Versions and file hashes, for the report."""
        return {
            "model": self.name,
            "threshold": self.threshold,
            "dlib": self._dlib.__version__,
            "face_recognition_models": _package_version("face-recognition-models"),
            "recognition_model_sha256": file_sha256(self.recognition_path),
            "shape_predictor_sha256": file_sha256(self.shape_predictor_path),
            "landmarks": "dlib 5-point shape predictor run inside the known box on the judged image",
        }

    def _shape(self, rgb: np.ndarray, xyxy: np.ndarray):
        x0, y0, x1, y1 = (int(round(float(value))) for value in np.asarray(xyxy).reshape(4))
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"face box {x0, y0, x1, y1} is empty")
        return self._shape_predictor(rgb, self._dlib.rectangle(x0, y0, x1, y1))

    def embed(self, bgr: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """The 128-D embedding (float64) of the face at `xyxy` in the HxWx3 uint8 BGR image."""
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {bgr.shape} {bgr.dtype}")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        shape = self._shape(rgb, xyxy)
        descriptor = self._recognizer.compute_face_descriptor(rgb, shape, DESCRIPTOR_JITTERS, DESCRIPTOR_PADDING)
        embedding = np.asarray(descriptor, np.float64)
        if embedding.shape != (EMBEDDING_DIMENSIONS,):
            raise ModelError(f"identity judge returned shape {embedding.shape}, expected ({EMBEDDING_DIMENSIONS},)")
        return embedding


def _package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
