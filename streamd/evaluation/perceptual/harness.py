"""Perceptual metrics in `streamd eval`: per face pair (LPIPS, PieAPP) and per face set (FID).

Every face contributes three crops of its known box, each resized to 128x128: the original, the
anonymized image (the surrogate) and, for reversible methods, the right-key restore. Per method:
LPIPS and PieAPP of original vs surrogate and original vs restored, averaged over faces, and the FID
between the set of original crops and the set of surrogate (or restored) crops of the same faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from streamd.align import expand_box
from streamd.evaluation.perceptual import networks, scores
from streamd.evaluation.perceptual.weights import WEIGHT_SPECS

if TYPE_CHECKING:
    from streamd.evaluation.runner import MethodResult

CROP_PX = 128
SKIPPED = "skipped: see perceptual_metrics"
TOO_FEW_FOR_FID = "not computed: FID needs at least 2 faces"

DEFINITIONS = {
    "lpips": "LPIPS v0.1 (AlexNet trunk, lpips package) between the original face crop and the surrogate (or "
             "restored) crop, both the known box resized to 128x128; 0 for identical crops, higher is more "
             "different; averaged over faces",
    "fid": "FID (pytorch-fid InceptionV3 pool3, 2048-D, crops resized to 299x299) between the set of original "
           "face crops and the set of surrogate (or restored) crops of the same faces. On a handful of faces FID "
           "is high-variance and biased upward: compare methods on the same faces only, never with published "
           "FIDs over thousands of images",
    "pieapp": "PieAPP (piq, 64x64 patches, stride 27) of the surrogate (or restored) 128x128 face crop against "
              "the original crop; lower is closer; averaged over faces",
}


@dataclass(frozen=True)
class FaceCrops:
    """One face's known-box crops, CROP_PX x CROP_PX BGR uint8."""

    original: np.ndarray
    anonymized: np.ndarray
    restored: np.ndarray | None


def perceptual_crop(bgr: np.ndarray, xyxy: Sequence[float]) -> np.ndarray:
    """The known box of a face, resized to CROP_PX x CROP_PX."""
    x0, y0, x1, y1 = expand_box(np.asarray(xyxy, np.float32), 0.0, (bgr.shape[1], bgr.shape[0]))
    crop = bgr[y0:y1, x0:x1]
    shrinking = crop.shape[0] > CROP_PX or crop.shape[1] > CROP_PX
    return cv2.resize(crop, (CROP_PX, CROP_PX), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _mean(values: np.ndarray | None) -> float | str | None:
    if values is None:
        return SKIPPED
    return float(np.mean(values)) if len(values) else None


class _OriginalFeatures:
    """Inception features of original crops, computed once per face across methods."""

    def __init__(self) -> None:
        self._features: dict[str, np.ndarray] = {}

    def of(self, face_ids: Sequence[str], crops: Sequence[np.ndarray]) -> np.ndarray | None:
        missing = [(face_id, crop) for face_id, crop in zip(face_ids, crops) if face_id not in self._features]
        if missing:
            features = scores.inception_features(np.stack([crop for _, crop in missing]), channel_order="bgr")
            if features is None:
                return None
            self._features.update({face_id: row for (face_id, _), row in zip(missing, features)})
        return np.stack([self._features[face_id] for face_id in face_ids])


def _fid(originals: _OriginalFeatures, face_ids: list[str], original_crops: list[np.ndarray],
         other_crops: list[np.ndarray], available: bool) -> float | str | None:
    if not available:
        return SKIPPED
    if len(face_ids) < 2:
        return TOO_FEW_FOR_FID
    reference = originals.of(face_ids, original_crops)
    other = scores.inception_features(np.stack(other_crops), channel_order="bgr")
    if reference is None or other is None:
        return SKIPPED
    return scores.frechet_distance(reference, other)


def _pair_scores(original: list[np.ndarray], other: list[np.ndarray]) -> dict[str, np.ndarray | None]:
    if not original:
        return {"lpips": np.zeros(0), "pieapp": np.zeros(0)}
    reference, test = np.stack(original), np.stack(other)
    return {"lpips": scores.lpips_distance(reference, test, channel_order="bgr"),
            "pieapp": scores.pieapp_score(test, reference, channel_order="bgr")}


def score_perceptual(results: Sequence[MethodResult]) -> list[networks.PerceptualStatus]:
    """Fill in LPIPS/PieAPP per face and the per-method aggregates (`result.perceptual`); returns the statuses."""
    statuses = networks.perceptual_status()
    fid_available = next(status for status in statuses if status.metric == "fid").available
    originals = _OriginalFeatures()
    for result in results:
        rows = [row for row in result.rows if row["face_id"] in result.face_crops]
        crops = [result.face_crops[row["face_id"]] for row in rows]
        face_ids = [row["face_id"] for row in rows]
        anonymized = _pair_scores([c.original for c in crops], [c.anonymized for c in crops])
        for index, row in enumerate(rows):
            for metric, values in anonymized.items():
                row[metric] = float(values[index]) if values is not None else None
        result.perceptual = {
            "lpips_mean": _mean(anonymized["lpips"]),
            "pieapp_mean": _mean(anonymized["pieapp"]),
            "fid": _fid(originals, face_ids, [c.original for c in crops], [c.anonymized for c in crops],
                        fid_available),
        }
        restored_rows = [(row, crop) for row, crop in zip(rows, crops)
                         if crop.restored is not None and isinstance(row.get("restore"), dict)]
        if not result.method.reversible:
            continue
        restored = _pair_scores([c.original for _, c in restored_rows], [c.restored for _, c in restored_rows])
        for index, (row, _) in enumerate(restored_rows):
            for metric, values in restored.items():
                row["restore"][metric] = float(values[index]) if values is not None else None
        result.perceptual["restore"] = {
            "lpips_mean": _mean(restored["lpips"]),
            "pieapp_mean": _mean(restored["pieapp"]),
            "fid": _fid(originals, [row["face_id"] for row, _ in restored_rows],
                        [c.original for _, c in restored_rows], [c.restored for _, c in restored_rows],
                        fid_available),
        }
    return statuses


def describe_statuses(statuses: Sequence[networks.PerceptualStatus]) -> dict[str, dict[str, object]]:
    """The report's `perceptual_metrics` section: per metric, its status, weights and definition."""
    section = {}
    for status in statuses:
        entry = status.describe()
        entry["definition"] = DEFINITIONS[status.metric]
        entry["weight_file"] = WEIGHT_SPECS[status.metric].file_name
        section[status.metric] = entry
    return section
