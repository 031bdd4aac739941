"""Frame-level protection: run the daemon's detector, tracker and anonymizer over evaluation frames,
then judge each held-out face with dlib on the frame the daemon wrote.

A face counts as protected when dlib's embedding at its box on the written frame is at least the
threshold (0.6) from its embedding on the original frame. A face the detector missed is written
unchanged and so counts as not protected: the number is end to end.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np

from streamd.anonymize import build_anonymizer
from streamd.config import AnonymizerConfig, CenterFaceConfig, TrackerConfig
from streamd.detect import build_detector
from streamd.evaluation.held_out_frames import EvaluationFrame
from streamd.tracking import FaceTracker
from streamd.types import Detections

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]


def run_daemon(frames: Sequence[EvaluationFrame], anonymizer_config: AnonymizerConfig,
               detector_config: CenterFaceConfig, progress: Progress | None = None) -> list[np.ndarray]:
    """What the daemon writes for each frame; one tracker per sequence (photos: a still each)."""
    detector = build_detector(detector_config)
    anonymizer = build_anonymizer(anonymizer_config)
    written: list[np.ndarray] = []
    try:
        tracker, sequence = None, None
        for frame in frames:
            if frame.sequence != sequence or tracker is None:
                if tracker is not None:
                    for track_id in tracker.live_track_ids:
                        anonymizer.end_track(track_id)
                tracker, sequence = FaceTracker(TrackerConfig()), frame.sequence
            detections = detector.detect_still(frame.bgr) if frame.kind == "photo" else detector.detect(frame.bgr)
            update = tracker.update(detections, frame_wh=(frame.bgr.shape[1], frame.bgr.shape[0]))
            for track_id in update.started:
                anonymizer.start_track(track_id)
            written.append(anonymizer.apply(frame.bgr, update.faces))
            for track_id in update.ended:
                anonymizer.end_track(track_id)
            if progress is not None:
                progress(1)
    finally:
        anonymizer.close()
        detector.close()
    return written


def detection_inside(detections: Detections, xyxy: np.ndarray) -> int | None:
    """Index of the highest-scoring detection whose box centre lies inside `xyxy`, else None."""
    best = None
    for index in range(len(detections)):
        box = detections.xyxy[index]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if xyxy[0] <= cx <= xyxy[2] and xyxy[1] <= cy <= xyxy[3]:
            if best is None or detections.scores[index] > detections.scores[best]:
                best = index
    return best


@dataclasses.dataclass
class FaceScore:
    face_id: str
    kind: str
    width: float
    distance_a: float
    distance_b: float
    distance_ab: float
    replaced: bool
    found_in_surrogate: bool

    def to_dict(self) -> dict[str, object]:
        return {key: (round(value, 4) if isinstance(value, float) else value)
                for key, value in dataclasses.asdict(self).items()}


def score_frames(frames: Sequence[EvaluationFrame], written_a: Sequence[np.ndarray], written_b: Sequence[np.ndarray],
                 judge, detector_config: CenterFaceConfig, progress: Progress | None = None) -> list[FaceScore]:
    """dlib distances of every held-out face of every judged frame, under two keys (runs A and B)."""
    detector = build_detector(detector_config)
    scores = []
    try:
        for frame, out_a, out_b in zip(frames, written_a, written_b):
            if not frame.judged:
                continue
            found = detector.detect_still(out_a) if frame.faces else None
            for face in frame.faces:
                original = judge.embed(frame.bgr, face.xyxy)
                embedded_a = judge.embed(out_a, face.xyxy)
                embedded_b = judge.embed(out_b, face.xyxy)
                x0, y0, x1, y1 = (int(round(v)) for v in face.xyxy)
                changed = np.abs(out_a[y0:y1, x0:x1].astype(np.int16) - frame.bgr[y0:y1, x0:x1]).mean()
                scores.append(FaceScore(
                    face_id=face.face_id, kind=frame.kind, width=face.width,
                    distance_a=float(np.linalg.norm(original - embedded_a)),
                    distance_b=float(np.linalg.norm(original - embedded_b)),
                    distance_ab=float(np.linalg.norm(embedded_a - embedded_b)),
                    replaced=bool(changed > 1.0),
                    found_in_surrogate=detection_inside(found, face.xyxy) is not None,
                ))
            if progress is not None:
                progress(1)
    finally:
        detector.close()
    return scores


def summarize(scores: Sequence[FaceScore], threshold: float) -> dict[str, object]:
    def share(values) -> float | None:
        values = list(values)
        return round(float(np.mean(values)), 4) if values else None

    summary: dict[str, object] = {
        "faces": len(scores),
        "identities": len({score.face_id for score in scores}),
        "spr": share(score.distance_a >= threshold for score in scores),
        "spr_second_key": share(score.distance_b >= threshold for score in scores),
        "two_keys_differ": share(score.distance_ab >= threshold for score in scores),
        "replaced": share(score.replaced for score in scores),
        "centerface_finds_surrogate": share(score.found_in_surrogate for score in scores),
        "mean_distance": share(score.distance_a for score in scores),
    }
    for kind in ("photo", "video"):
        subset = [score for score in scores if score.kind == kind]
        summary[f"spr_{kind}"] = share(score.distance_a >= threshold for score in subset)
        summary[f"faces_{kind}"] = len(subset)
    per_identity = {}
    for face_id in sorted({score.face_id for score in scores}):
        subset = [score for score in scores if score.face_id == face_id]
        per_identity[face_id] = {"faces": len(subset), "spr": share(s.distance_a >= threshold for s in subset)}
    summary["per_identity"] = per_identity
    return summary
