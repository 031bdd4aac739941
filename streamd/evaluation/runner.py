"""The evaluation loop: every method on every face, per-face rows and per-method aggregates.

Keys. Each face gets a 32-byte track key per variant: variant 0 is the right key (the one it is
anonymized with), variant 1 the wrong key tried on restore, variants 2.. the extra keys for diversity.
They are SHA-256 of a label, the base key (from `--key`, or the seed) and the face id, so runs repeat.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import cv2
import numpy as np

from streamd.align import expand_box
from streamd.detect import FaceDetector
from streamd.detect.base import pairwise_iou
from streamd.errors import StreamdError
from streamd.evaluation import metrics
from streamd.evaluation.dataset import EvalDataset, EvalFace, EvalImage
from streamd.evaluation.errors import EvaluationKeyError, NoFacesError
from streamd.evaluation.identity import DlibIdentityJudge
from streamd.evaluation.methods import Anonymized, EvalMethod, RestoreRefused
from streamd.evaluation.perceptual.harness import FaceCrops, perceptual_crop

logger = logging.getLogger(__name__)

KEY_BYTES = 32
KEY_LABEL = b"streamd-eval-key-v1"
RIGHT_KEY, WRONG_KEY, FIRST_DIVERSITY_KEY = 0, 1, 2
DEFAULT_DIVERSITY_KEYS = 3
RETENTION_IOU = 0.5
# Contact-sheet tiles show the known box grown by this share on each side.
TILE_CONTEXT = 0.3
# Errors an adapter may raise for one image; the image is then listed as failed for that method.
ADAPTER_ERRORS = (StreamdError, ValueError, RuntimeError, cv2.error)


def parse_key(text: str) -> bytes:
    """A 32-byte key from 64 hex digits; EvaluationKeyError otherwise."""
    cleaned = text.strip().lower()
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise EvaluationKeyError(f"--key must be {KEY_BYTES * 2} hex digits (a {KEY_BYTES}-byte track key)") from None
    if len(key) != KEY_BYTES:
        raise EvaluationKeyError(
            f"--key must be {KEY_BYTES * 2} hex digits (a {KEY_BYTES}-byte track key), got {len(cleaned)} digits"
        )
    return key


def seed_key(seed: int) -> bytes:
    return hashlib.sha256(KEY_LABEL + b"/seed/" + str(seed).encode()).digest()


def face_key(base_key: bytes, face_id: str, variant: int) -> bytes:
    """The key of variant `variant` for one face (variant 0 is `base_key` itself when given)."""
    return hashlib.sha256(KEY_LABEL + base_key + face_id.encode() + variant.to_bytes(4, "big")).digest()


@dataclass
class EvalOptions:
    base_key: bytes
    key_given: bool
    diversity_keys: int = DEFAULT_DIVERSITY_KEYS
    keep_tiles: int = 24  # contact-sheet rows per method


@dataclass
class MethodResult:
    """Everything measured for one method."""

    method: EvalMethod
    rows: list[dict[str, object]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    background: list[dict[str, object]] = field(default_factory=list)
    tiles: list[list[tuple[str, np.ndarray | None]]] = field(default_factory=list)
    # Per face id, the crops the perceptual metrics compare; their per-method aggregates.
    face_crops: dict[str, FaceCrops] = field(default_factory=dict)
    perceptual: dict[str, object] = field(default_factory=dict)


def keys_for(image: EvalImage, options: EvalOptions, variant: int) -> list[bytes]:
    if variant == RIGHT_KEY and options.key_given:
        return [options.base_key] * len(image.faces)
    return [face_key(options.base_key, face.face_id, variant) for face in image.faces]


def face_crop(bgr: np.ndarray, face: EvalFace, context: float = 0.0) -> np.ndarray:
    x0, y0, x1, y1 = expand_box(face.xyxy, context, (bgr.shape[1], bgr.shape[0]))
    return bgr[y0:y1, x0:x1]


def face_mask(shape_hw: tuple[int, int], face: EvalFace) -> np.ndarray:
    mask = np.zeros(shape_hw, bool)
    x0, y0, x1, y1 = expand_box(face.xyxy, 0.0, (shape_hw[1], shape_hw[0]))
    mask[y0:y1, x0:x1] = True
    return mask


class Evaluator:
    """Runs methods over a dataset with one identity judge and one retention detector."""

    def __init__(self, judge: DlibIdentityJudge, detector: FaceDetector, options: EvalOptions) -> None:
        self.judge = judge
        self.detector = detector
        self.options = options
        self._original_embeddings: dict[str, np.ndarray] = {}

    def original_embedding(self, image: EvalImage, face: EvalFace) -> np.ndarray:
        if face.face_id not in self._original_embeddings:
            self._original_embeddings[face.face_id] = self.judge.embed(image.bgr, face.xyxy)
        return self._original_embeddings[face.face_id]

    def _distance_to_original(self, image: EvalImage, face: EvalFace, judged_bgr: np.ndarray) -> float:
        return metrics.identity_distance(self.original_embedding(image, face), self.judge.embed(judged_bgr, face.xyxy))

    def retention(self, image: EvalImage, anonymized_bgr: np.ndarray) -> np.ndarray:
        """Per face, the best IoU of a detection on the anonymized image with the known box."""
        detections = self.detector.detect(anonymized_bgr)
        known = np.stack([face.xyxy for face in image.faces])
        if len(detections) == 0:
            return np.zeros(len(image.faces), np.float32)
        return pairwise_iou(known, detections.xyxy).max(axis=1)

    def evaluate_image(self, method: EvalMethod, image: EvalImage, result: MethodResult) -> None:
        right_keys = keys_for(image, self.options, RIGHT_KEY)
        anonymized = method.anonymize(image, right_keys)
        change = metrics.background_change(image.bgr, anonymized.bgr, anonymized.footprint)
        result.background.append({"image": image.name, **vars(change)})
        best_iou = self.retention(image, anonymized.bgr)
        restored, wrong_restored, refused_reason = self._restores(method, image, anonymized)
        surrogates = self._diversity_surrogates(method, image, anonymized)
        for index, face in enumerate(image.faces):
            row = self._face_row(method, image, face, anonymized, float(best_iou[index]))
            row["restore"] = self._restore_row(image, face, restored, wrong_restored, refused_reason)
            row["diversity_mean_distance"] = self._diversity(image, face, surrogates)
            result.rows.append(row)
            result.face_crops[face.face_id] = FaceCrops(
                original=perceptual_crop(image.bgr, face.xyxy), anonymized=perceptual_crop(anonymized.bgr, face.xyxy),
                restored=perceptual_crop(restored, face.xyxy) if restored is not None else None)
            if len(result.tiles) < self.options.keep_tiles:
                result.tiles.append(self._tile_row(method, image, face, anonymized, restored, wrong_restored,
                                                   refused_reason))

    def _face_row(self, method: EvalMethod, image: EvalImage, face: EvalFace, anonymized: Anonymized,
                  best_iou: float) -> dict[str, object]:
        original_embedding = self.original_embedding(image, face)
        anonymized_embedding = self.judge.embed(anonymized.bgr, face.xyxy)
        distance = metrics.identity_distance(original_embedding, anonymized_embedding)
        row: dict[str, object] = {
            "face_id": face.face_id,
            "image": image.name,
            "box_xyxy": [round(float(v), 1) for v in face.xyxy],
            "detector_score": round(face.detector_score, 4),
            "identity_distance": distance,
            "protected": distance >= self.judge.threshold,
            "cosine_similarity": metrics.cosine_similarity(original_embedding, anonymized_embedding),
            "retention_iou": best_iou,
            "detector_retained": best_iou >= RETENTION_IOU,
        }
        if method.pixelation:
            accuracy = metrics.anonymization_accuracy(image.bgr, anonymized.bgr, face_mask(image.bgr.shape[:2], face))
            row["anonymization_accuracy"] = accuracy.accuracy
            row["complex_pixels"] = accuracy.complex_pixels
            row["smooth_kept_share"] = accuracy.smooth_kept_share
        return row

    def _restores(self, method: EvalMethod, image: EvalImage, anonymized: Anonymized):
        if not method.reversible:
            return None, None, None
        restored = method.restore(anonymized, image, keys_for(image, self.options, RIGHT_KEY))
        try:
            wrong_restored = method.restore(anonymized, image, keys_for(image, self.options, WRONG_KEY))
            refused_reason = None
        except RestoreRefused as exc:
            wrong_restored, refused_reason = None, str(exc)
        return restored, wrong_restored, refused_reason

    def _restore_row(self, image: EvalImage, face: EvalFace, restored: np.ndarray | None,
                     wrong_restored: np.ndarray | None, refused_reason: str | None) -> dict[str, object] | None:
        if restored is None:
            return None
        original_crop = face_crop(image.bgr, face)
        restored_crop = face_crop(restored, face)
        distance = self._distance_to_original(image, face, restored)
        row: dict[str, object] = {
            "psnr_db": metrics.psnr(original_crop, restored_crop),
            "ssim": metrics.ssim(original_crop, restored_crop),
            "identity_distance": distance,
            "recognized": distance < self.judge.threshold,
        }
        if wrong_restored is None:
            row.update({"wrong_key": "refused", "wrong_key_refusal": refused_reason,
                        "wrong_key_identity_distance": None, "wrong_key_protected": True})
        else:
            wrong_distance = self._distance_to_original(image, face, wrong_restored)
            row.update({"wrong_key": "restored", "wrong_key_identity_distance": wrong_distance,
                        "wrong_key_protected": wrong_distance >= self.judge.threshold})
        return row

    def _diversity_surrogates(self, method: EvalMethod, image: EvalImage, anonymized: Anonymized) -> list[np.ndarray]:
        if not method.keyed_surrogate or self.options.diversity_keys < 2:
            return []
        surrogates = [anonymized.bgr]
        for variant in range(FIRST_DIVERSITY_KEY, FIRST_DIVERSITY_KEY + self.options.diversity_keys - 1):
            surrogates.append(method.anonymize(image, keys_for(image, self.options, variant)).bgr)
        return surrogates

    def _diversity(self, image: EvalImage, face: EvalFace, surrogates: list[np.ndarray]) -> float | None:
        if not surrogates:
            return None
        embeddings = [self.judge.embed(bgr, face.xyxy) for bgr in surrogates]
        return float(np.mean([metrics.identity_distance(a, b) for a, b in combinations(embeddings, 2)]))

    @staticmethod
    def _tile_row(method: EvalMethod, image: EvalImage, face: EvalFace, anonymized: Anonymized,
                  restored: np.ndarray | None, wrong_restored: np.ndarray | None,
                  refused_reason: str | None) -> list[tuple[str, np.ndarray | None]]:
        def crop(bgr: np.ndarray) -> np.ndarray:
            return face_crop(bgr, face, TILE_CONTEXT).copy()

        if restored is None:
            restore_tiles = [("restored: n/a", None), ("wrong key: n/a", None)]
        elif wrong_restored is None:
            restore_tiles = [("restored", crop(restored)), ("wrong key: refused", None)]
        else:
            restore_tiles = [("restored", crop(restored)), ("wrong-key restore", crop(wrong_restored))]
        return [(face.face_id, crop(image.bgr)), (method.name, crop(anonymized.bgr)),
                *restore_tiles]

    def run(self, methods: Sequence[EvalMethod], dataset: EvalDataset,
            progress: Callable[[int], None] | None = None) -> list[MethodResult]:
        if dataset.face_count == 0:
            raise NoFacesError("no faces found in the input: nothing to measure")
        results = []
        for method in methods:
            result = MethodResult(method=method)
            for image in dataset.images:
                try:
                    self.evaluate_image(method, image, result)
                except ADAPTER_ERRORS as exc:
                    logger.warning("%s on %s failed: %s", method.name, image.name, exc)
                    result.failures[image.name] = f"{type(exc).__name__}: {exc}"
                if progress is not None:
                    progress(1)
            results.append(result)
        return results


def check_key_usable(methods: Sequence[EvalMethod], key_given: bool) -> None:
    """EvaluationKeyError when `--key` is given but no chosen method takes a key."""
    if key_given and not any(method.reversible or method.keyed_surrogate for method in methods):
        raise EvaluationKeyError(
            f"--key does not match the chosen methods: {', '.join(m.name for m in methods)} take no key "
            "(use a reversible method such as blur+sealed or sdn)"
        )


def finite_mean(values: Sequence[float]) -> float | None:
    finite = [value for value in values if value is not None and math.isfinite(value)]
    return float(np.mean(finite)) if finite else None
