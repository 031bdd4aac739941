"""Crop-level restore measurement of a trained `sdn` model on the offline held-out faces (PSNR, SSIM and
dlib distances of restores under right, wrong and one-bit-off passwords). The frame-level protection
evaluation that the manifest records is export/measure_sdn.py.

    python -m export.measure_sdn_restore --models-dir models --name sdn-tiny --out sdn-tiny-metrics.json \
        [--photos extra1.jpg extra2.jpg]

Held-out faces: the offline set's held-out faces (export.sdn_data: two faces of insightface's t1.jpg
and 20 grey skimage lfw_subset faces), plus every face CenterFace finds in --photos. For each face:
surrogates under two random passwords; the first stored as JPEG (--jpeg-quality, default 90), then
restored with the right password, a random wrong password, the right password with one bit flipped,
and the right password with wrong attributes, each the way `streamd restore --mode neural` does it
(decoder, then encoder inversion under that password: streamd.runtime.sdn_inversion), plus the
decoder alone with the right password (`right_decoder_only`). Reported:
- PSNR and SSIM (Gaussian 11x11, sigma 1.5) of each restore against the original crop;
- with dlib (the `eval` extra), 128-D identity distances at threshold 0.6 on crops upscaled to
  150x150 with the whole crop as the face box: protection rate (surrogate >= 0.6 from original),
  restore match rate (< 0.6), wrong-key protection rates, diversity (two passwords >= 0.6 apart);
- utility: share of surrogates in which CenterFace still finds a face (crop upscaled x4 on a grey
  canvas), next to the same share for the originals;
- latency of encoder and decoder per face and per batch of 4 (median of repeated runs).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from export.measure_cli import emit_report, held_out_faces, measurement_parser
from export.sdn_data import detect_faces_centerface, jpeg_round_trip_bgr
from streamd.runtime.sdn import SdnCodec
from streamd.runtime.sdn_inversion import restore_by_inversion

DLIB_THRESHOLD = 0.6
DLIB_CROP = 150


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=255))


def is_grey(bgr: np.ndarray) -> bool:
    return bool(np.all(bgr[..., 0] == bgr[..., 1]) and np.all(bgr[..., 1] == bgr[..., 2]))


class IdentityJudge:
    """dlib 128-D embeddings of whole aligned crops (upscaled)."""

    def __init__(self) -> None:
        from streamd.evaluation.identity import DlibIdentityJudge

        self.judge = DlibIdentityJudge()

    def embed(self, crop_bgr: np.ndarray) -> np.ndarray:
        big = cv2.resize(crop_bgr, (DLIB_CROP, DLIB_CROP), interpolation=cv2.INTER_CUBIC)
        return self.judge.embed(big, np.array([0, 0, DLIB_CROP - 1, DLIB_CROP - 1], np.float32))


def centerface_finds_face(crop_bgr: np.ndarray) -> bool:
    size = crop_bgr.shape[0] * 4
    canvas = np.full((size * 2, size * 2, 3), 127, np.uint8)
    canvas[size // 2:size // 2 + size, size // 2:size // 2 + size] = cv2.resize(crop_bgr, (size, size),
                                                                                   interpolation=cv2.INTER_CUBIC)
    return len(detect_faces_centerface(canvas, threshold=0.5)) > 0


def latency_ms(codec: SdnCodec, batch: int, repeats: int) -> dict[str, float]:
    size = codec.spec.resolution
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    bits = rng.integers(0, 2, (batch, codec.spec.password_bits)).astype(np.float32)
    attributes = np.zeros((batch, len(codec.spec.attribute_names)), np.float32)
    timings = {"encoder": [], "decoder": []}
    for _ in range(repeats):
        start = time.perf_counter()
        surrogates = codec.anonymize(crops, bits, attributes)
        middle = time.perf_counter()
        codec.restore(surrogates, bits, attributes)
        timings["encoder"].append((middle - start) * 1000)
        timings["decoder"].append((time.perf_counter() - middle) * 1000)
    return {f"{name}_ms_per_batch": statistics.median(values) for name, values in timings.items()} | {
        f"{name}_ms_per_face": statistics.median(values) / batch for name, values in timings.items()}


def main(argv: list[str] | None = None) -> int:
    parser = measurement_parser(__doc__, "sdn-tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-sheet", type=Path, help="write a PNG: original, surrogate A, B, restored, wrong")
    args = parser.parse_args(argv)
    codec = SdnCodec.from_manifest(args.models_dir, args.name, intra_op_threads=args.threads)
    size = codec.spec.resolution
    num_attributes = len(codec.spec.attribute_names)
    faces = held_out_faces(size, num_attributes, args.photos)

    rng = np.random.default_rng(args.seed)
    n = len(faces)
    crops = np.stack([crop for _, crop in faces])
    bits_a = rng.integers(0, 2, (n, codec.spec.password_bits)).astype(np.float32)
    bits_b = rng.integers(0, 2, (n, codec.spec.password_bits)).astype(np.float32)
    bits_wrong = rng.integers(0, 2, (n, codec.spec.password_bits)).astype(np.float32)
    bits_one_flip = bits_a.copy()
    flip_positions = (np.arange(n), rng.integers(0, codec.spec.password_bits, n))
    bits_one_flip[flip_positions] = 1.0 - bits_one_flip[flip_positions]
    attributes = np.zeros((n, num_attributes), np.float32)
    surrogate_a = codec.anonymize(crops, bits_a, attributes)
    surrogate_b = codec.anonymize(crops, bits_b, attributes)
    stored = np.stack([jpeg_round_trip_bgr(s, args.jpeg_quality) for s in surrogate_a])
    restored = {
        "right": restore_by_inversion(codec, stored, bits_a, attributes, None),
        "right_decoder_only": codec.restore(stored, bits_a, attributes),
        "wrong_password": restore_by_inversion(codec, stored, bits_wrong, attributes, None),
        "one_bit_flipped": restore_by_inversion(codec, stored, bits_one_flip, attributes, None),
        "wrong_attributes": restore_by_inversion(codec, stored, bits_a, 1.0 - attributes, None),
    }
    groups = {"colour": [i for i in range(n) if not is_grey(crops[i])], "grey": [i for i in range(n) if is_grey(crops[i])]}
    report: dict[str, object] = {
        "model": args.name, "faces": {k: len(v) for k, v in groups.items()}, "face_sources": [s for s, _ in faces],
        "jpeg_quality": args.jpeg_quality,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "onnxruntime_threads": args.threads},
    }
    pixel: dict[str, dict[str, float]] = {}
    for group, indices in groups.items():
        if not indices:
            continue
        metrics = {"psnr_surrogate_vs_original": float(np.mean([psnr(crops[i], surrogate_a[i]) for i in indices]))}
        for name, images in restored.items():
            metrics[f"psnr_restore_{name}"] = float(np.mean([psnr(crops[i], images[i]) for i in indices]))
            metrics[f"ssim_restore_{name}"] = float(np.mean([ssim(crops[i], images[i]) for i in indices]))
        pixel[group] = metrics
    report["pixel"] = pixel

    try:
        judge = IdentityJudge()
    except Exception as error:  # dlib missing or its models absent: say so in the report
        report["identity"] = {"skipped": str(error)}
    else:
        colour = groups["colour"]
        distances: dict[str, list[float]] = {k: [] for k in ("surrogate", "diversity", *restored)}
        for i in colour:
            original = judge.embed(crops[i])
            distances["surrogate"].append(float(np.linalg.norm(original - judge.embed(surrogate_a[i]))))
            distances["diversity"].append(float(np.linalg.norm(judge.embed(surrogate_a[i]) - judge.embed(surrogate_b[i]))))
            for name, images in restored.items():
                distances[name].append(float(np.linalg.norm(original - judge.embed(images[i]))))
        report["identity"] = {
            "faces": len(colour),
            "spr_surrogate": float(np.mean(np.array(distances["surrogate"]) >= DLIB_THRESHOLD)),
            "restore_right_match_rate": float(np.mean(np.array(distances["right"]) < DLIB_THRESHOLD)),
            "wrong_password_protection_rate": float(np.mean(np.array(distances["wrong_password"]) >= DLIB_THRESHOLD)),
            "one_bit_flipped_protection_rate": float(np.mean(np.array(distances["one_bit_flipped"]) >= DLIB_THRESHOLD)),
            "wrong_attributes_protection_rate": float(np.mean(np.array(distances["wrong_attributes"]) >= DLIB_THRESHOLD)),
            "diversity_rate": float(np.mean(np.array(distances["diversity"]) >= DLIB_THRESHOLD)),
            "mean_distances": {k: float(np.mean(v)) for k, v in distances.items()},
        }
    colour = groups["colour"]
    report["utility"] = {
        "centerface_finds_face_in_surrogates": float(np.mean([centerface_finds_face(surrogate_a[i]) for i in colour])),
        "centerface_finds_face_in_originals": float(np.mean([centerface_finds_face(crops[i]) for i in colour])),
        "faces": len(colour),
    }
    report["latency"] = {f"batch_{batch}": latency_ms(codec, batch, args.repeats) for batch in (1, 4)}
    if args.save_sheet:
        rows = [np.concatenate([crops[i], surrogate_a[i], surrogate_b[i], restored["right"][i],
                                restored["wrong_password"][i], restored["one_bit_flipped"][i]], axis=1)
                for i in range(n) if i in colour]
        cv2.imwrite(str(args.save_sheet), np.concatenate(rows, axis=0))
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
