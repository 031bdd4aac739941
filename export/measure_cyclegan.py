"""Measure an exported CycleGAN pixelation model on held-out faces through onnxruntime (the daemon's path)
with the cyclic-learning paper's metrics.

    python -m export.measure_cyclegan --models-dir models --name cyclegan-tiny --out cyclegan-tiny-metrics.json \
        [--photos extra1.jpg] [--save-sheet sheet.png]

Held-out faces: the offline set's held-out faces (export.sdn_data), plus every face CenterFace finds in
--photos. For each face: De-ID = G(ID); Re-ID = F(De-ID) with De-ID passed as 8-bit pixels (the paper's
setting) and, separately, after a JPEG round trip (--jpeg-quality, what a recording does to it).
Reported, next to the same numbers for the target pixelation itself (blocks of min(M, N) / blocks_per_side
over the canonical face region, `streamd.anonymize.pixelate`, with the model's recorded rule; the
paper's 20 when the manifest records none):
- anonymization accuracy (paper eq. 5): share of the face region's complex pixels in ID that are
  smooth in De-ID, threshold `streamd.evaluation.metrics.PIXEL_COMPLEXITY_THRESHOLD`;
- identity: dlib 128-D embeddings of the whole crop upscaled to 150x150: cosine similarity (eq. 6;
  the paper uses FaceNet, which cannot be installed here) and Euclidean distance (threshold 0.6),
  ID vs De-ID, ID vs Re-ID, and between different ID faces as the baseline;
- fidelity: PSNR and SSIM (Gaussian 11x11, sigma 1.5) of Re-ID and De-ID against ID;
- latency of G and F per face (median of repeated runs).
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from export.measure_sdn_restore import IdentityJudge, is_grey
from export.measure_cli import emit_report, held_out_faces, measurement_parser
from export.sdn_data import jpeg_round_trip_bgr
from streamd.anonymize.pixelate import PAPER_BLOCKS_PER_SIDE, canonical_face_box, pixelate_face_crop
from streamd.evaluation.metrics import anonymization_accuracy, cosine_similarity, psnr, ssim
from streamd.runtime.cyclegan import load_cyclegan_deidentifier, load_cyclegan_reidentifier

DLIB_THRESHOLD = 0.6
PAPER_REID = {"celeba": {"psnr": 37.44, "ssim": 0.9017}, "ffhq": {"psnr": 35.21, "ssim": 0.8823}}


def face_region_mask(size: int) -> np.ndarray:
    x0, y0, x1, y1 = canonical_face_box(size)
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def main(argv: list[str] | None = None) -> int:
    parser = measurement_parser(__doc__, "cyclegan-tiny")
    parser.add_argument("--save-sheet", type=Path, help="write a PNG: ID, target pixelation, De-ID, Re-ID")
    args = parser.parse_args(argv)

    deidentifier = load_cyclegan_deidentifier(args.models_dir, args.name, intra_op_threads=args.threads)
    reidentifier = load_cyclegan_reidentifier(args.models_dir, args.name, intra_op_threads=args.threads)
    size = deidentifier.spec.resolution
    faces = held_out_faces(size, 1, args.photos)

    crops = np.stack([crop for _, crop in faces])
    n = len(crops)
    deid = deidentifier.deidentify(crops)
    reid = reidentifier.reidentify(deid)
    reid_jpeg = reidentifier.reidentify(np.stack([jpeg_round_trip_bgr(d, args.jpeg_quality) for d in deid]))
    blocks = deidentifier.spec.blocks_per_side or PAPER_BLOCKS_PER_SIDE
    target = np.stack([pixelate_face_crop(crop, blocks) for crop in crops])
    region = face_region_mask(size)
    groups = {"all": list(range(n)), "colour": [i for i in range(n) if not is_grey(crops[i])],
              "grey": [i for i in range(n) if is_grey(crops[i])]}

    report: dict[str, object] = {
        "model": args.name, "faces": {k: len(v) for k, v in groups.items()}, "face_sources": [s for s, _ in faces],
        "crop_size": size, "blocks_per_side": blocks, "face_region_xyxy": list(canonical_face_box(size)), "jpeg_quality": args.jpeg_quality,
        "paper_reid": PAPER_REID,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "onnxruntime_threads": args.threads},
    }
    pixel: dict[str, dict[str, float | None]] = {}
    for group, indices in groups.items():
        if not indices:
            continue
        pixel[group] = {
            "anonymization_accuracy_deid": mean([anonymization_accuracy(crops[i], deid[i], region).accuracy for i in indices]),
            "anonymization_accuracy_target_pixelation": mean(
                [anonymization_accuracy(crops[i], target[i], region).accuracy for i in indices]),
            "psnr_reid": mean([psnr(crops[i], reid[i]) for i in indices]),
            "ssim_reid": mean([ssim(crops[i], reid[i]) for i in indices]),
            "psnr_reid_after_jpeg": mean([psnr(crops[i], reid_jpeg[i]) for i in indices]),
            "ssim_reid_after_jpeg": mean([ssim(crops[i], reid_jpeg[i]) for i in indices]),
            "psnr_deid": mean([psnr(crops[i], deid[i]) for i in indices]),
            "ssim_deid": mean([ssim(crops[i], deid[i]) for i in indices]),
            "psnr_deid_vs_target_pixelation": mean([psnr(target[i], deid[i]) for i in indices]),
            "psnr_target_pixelation": mean([psnr(crops[i], target[i]) for i in indices]),
        }
    report["pixel"] = pixel

    try:
        judge = IdentityJudge()
    except Exception as error:  # dlib missing or its models absent: say so in the report
        report["identity"] = {"skipped": str(error)}
    else:
        embeddings = {name: [judge.embed(image) for image in images]
                      for name, images in (("id", crops), ("deid", deid), ("reid", reid), ("target", target))}
        identity: dict[str, object] = {"judge": "dlib_face_recognition_resnet_model_v1 on the whole crop at 150x150",
                                       "threshold": DLIB_THRESHOLD}
        for group, indices in groups.items():
            if len(indices) < 2:
                continue
            result: dict[str, object] = {}
            for name in ("deid", "reid", "target"):
                distances = [float(np.linalg.norm(embeddings["id"][i] - embeddings[name][i])) for i in indices]
                result[f"id_vs_{name}"] = {
                    "cosine": mean([cosine_similarity(embeddings["id"][i], embeddings[name][i]) for i in indices]),
                    "distance": mean(distances),
                    "same_person_rate": float(np.mean(np.array(distances) < DLIB_THRESHOLD)),
                }
            pairs = list(itertools.combinations(indices, 2))
            distances = [float(np.linalg.norm(embeddings["id"][a] - embeddings["id"][b])) for a, b in pairs]
            result["different_ids"] = {
                "pairs": len(pairs),
                "cosine": mean([cosine_similarity(embeddings["id"][a], embeddings["id"][b]) for a, b in pairs]),
                "distance": mean(distances),
                "same_person_rate": float(np.mean(np.array(distances) < DLIB_THRESHOLD)),
            }
            identity[group] = result
        report["identity"] = identity

    timings: dict[str, list[float]] = {"g": [], "f": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        pixelated = deidentifier.deidentify(crops[:1])
        middle = time.perf_counter()
        reidentifier.reidentify(pixelated)
        timings["g"].append((middle - start) * 1000)
        timings["f"].append((time.perf_counter() - middle) * 1000)
    report["latency_ms_per_face"] = {name: statistics.median(values) for name, values in timings.items()}
    if args.save_sheet:
        rows = [np.concatenate([crops[i], target[i], deid[i], reid[i], reid_jpeg[i]], axis=1) for i in range(n)]
        cv2.imwrite(str(args.save_sheet), np.concatenate(rows, axis=0))
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
