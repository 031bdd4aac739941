"""Frame-level protection of a keyed surrogate model on held-out faces: the number the daemon's gate reads.

    python -m export.measure_sdn --models-dir models --name sdn-synth128 \
        --photos t1.jpg messi5.jpg face_swapped.jpg --out-dir docs/results/sdn-synth128 \
        [--exclude t1.jpg:0-3] [--record-protection]

Faces. The photos come from the command line (nothing is read from anywhere else). dlib finds their
faces (numbered left to right, `photo.jpg:0`...). Faces the model's manifest entry lists under
`not_for_evaluation` (used in its training, tuning or calibration) and faces given with --exclude are
dropped; the report lists every face used and every face dropped, with the model's data roles.

Frames. Each held-out face appears in --photo-frames frames of 1280x720 (the photo scaled so that face
is 60-200 px wide, at a random place) and in a zooming clip per photo (--clip-frames frames, H.264
through PyAV and back, every --judge-every-th frame judged): `streamd.evaluation.held_out_frames`.

Daemon. The frames go through the daemon's own parts: CenterFace (profile --detector-profile, fast
by default: the balanced profile's extra passes are for faces smaller than these),
the tracker, and `method: sdn` with this model (`streamd.evaluation.frame_protection`), twice, with
fresh random track keys each time (keys A and B).

Judged (dlib 128-D ResNet, threshold 0.6, landmarks placed by dlib inside each face's dlib box from
the original photo, on the judged image):
- frame level: SPR (written frame under key A vs original frame), the same under key B, two keys give
  different identities (A vs B), faces the daemon replaced, CenterFace still finds the surrogate;
- crop level, on the model's aligned crop: SPR of the surrogate; restore with the right key after
  JPEG q90 (match rate, PSNR) and with a random wrong key (protection rate);
- encoder latency per face at the model's crop size (onnxruntime, --threads, batch 1, median).

Writes OUT_DIR/report.json, OUT_DIR/report.md and OUT_DIR/contact-sheet.jpg (original crop, key A,
key B, right-key restore, wrong-key restore; first face of each identity) and prints the Markdown.
--record-protection writes the frame-level SPR into the model's manifest entry (`protection`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from export.sdn_data import jpeg_round_trip_bgr
from streamd.config import DETECTOR_PROFILES, AnonymizerConfig, CenterFaceConfig
from streamd.evaluation.frame_protection import detection_inside, run_daemon, score_frames, summarize
from streamd.evaluation.held_out_frames import (
    EvaluationFrame,
    evaluation_frames,
    load_photos,
    parse_face_ids,
)
from streamd.evaluation.keyed_models import KeyedModel, load_keyed_model, random_codes
from streamd.runtime.manifest import load_manifest, record_protection
from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr

__all__ = ["jpeg_round_trip_bgr", "psnr", "main"]

logger = logging.getLogger("export.measure_sdn")

DLIB_THRESHOLD = 0.6
JUDGE_SIDE = 256
SIZE_RANGE = (60, 200)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


class ProgressBar:
    """tqdm on a terminal, a log line every few seconds otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self.last = total, label, 0, time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="frame")

    def __call__(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif time.monotonic() - self.last > 5 or self.done == self.total:
            self.last = time.monotonic()
            logger.info("%s: %d/%d", self.label, self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def crop_box(matrix: np.ndarray, xyxy: np.ndarray, scale: float) -> np.ndarray:
    """The dlib box of a frame mapped into the crop (bounding box of its corners), times `scale`."""
    x0, y0, x1, y1 = xyxy
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
    mapped = corners @ matrix[:, :2].T.astype(np.float64) + matrix[:, 2]
    return np.array([*mapped.min(axis=0), *mapped.max(axis=0)]) * scale


def crop_level(model: KeyedModel, frames: list[EvaluationFrame], written: list[np.ndarray], judge,
               detector_config: CenterFaceConfig, jpeg_quality: int, progress) -> tuple[dict[str, object], list[np.ndarray]]:
    """Crop-level SPR, restores under the right and a wrong key; contact-sheet rows (one per identity)."""
    from streamd.detect import build_detector

    detector = build_detector(detector_config)
    rows, seen = [], set()
    distances: dict[str, list[float]] = {"surrogate": [], "right": [], "wrong": []}
    psnr_right: list[float] = []
    scale = JUDGE_SIDE / model.crop_size
    try:
        for frame, out in zip(frames, written):
            if not frame.judged:
                continue
            found = detector.detect_still(frame.bgr)
            for face in frame.faces:
                index = detection_inside(found, face.xyxy)
                if index is None:
                    continue
                matrix = model.crop_matrix(found.kps5[index])
                size = model.crop_size
                crop = cv2.warpAffine(frame.bgr, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)
                codes = random_codes(model, 2)
                surrogate = nchw_to_crops_bgr(model.encode(crops_bgr_to_nchw(crop[None]), codes[:1]))[0]
                stored = crops_bgr_to_nchw(jpeg_round_trip_bgr(surrogate, jpeg_quality)[None])
                right = nchw_to_crops_bgr(model.decode(stored, codes[:1]))[0]
                wrong = nchw_to_crops_bgr(model.decode(stored, codes[1:]))[0]
                box = crop_box(matrix, face.xyxy, scale)
                big = [cv2.resize(image, (JUDGE_SIDE, JUDGE_SIDE), interpolation=cv2.INTER_CUBIC)
                       for image in (crop, surrogate, right, wrong)]
                original = judge.embed(big[0], box)
                for name, image in zip(("surrogate", "right", "wrong"), big[1:]):
                    distances[name].append(float(np.linalg.norm(original - judge.embed(image, box))))
                psnr_right.append(psnr(crop, right))
                if face.face_id not in seen:
                    seen.add(face.face_id)
                    written_crop = cv2.warpAffine(out, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_REPLICATE)
                    second = nchw_to_crops_bgr(model.encode(crops_bgr_to_nchw(crop[None]), codes[1:]))[0]
                    rows.append(np.concatenate([crop, written_crop, second, right, wrong], axis=1))
            progress(1)
    finally:
        detector.close()
    n = len(distances["surrogate"])
    metrics = {
        "faces": n,
        "spr": round(float(np.mean(np.array(distances["surrogate"]) >= DLIB_THRESHOLD)), 4) if n else None,
        "restore_right_key_match_rate": round(float(np.mean(np.array(distances["right"]) < DLIB_THRESHOLD)), 4) if n else None,
        "restore_right_key_psnr_db": round(float(np.mean(psnr_right)), 2) if n else None,
        "restore_wrong_key_spr": round(float(np.mean(np.array(distances["wrong"]) >= DLIB_THRESHOLD)), 4) if n else None,
        "mean_distances": {key: round(float(np.mean(values)), 4) for key, values in distances.items() if values},
        "jpeg_quality_before_restore": jpeg_quality,
    }
    return metrics, rows


def encoder_latency_ms(model: KeyedModel, repeats: int) -> float:
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (1, 3, model.crop_size, model.crop_size)).astype(np.float32)
    codes = random_codes(model, 1)
    for _ in range(5):
        model.encode(images, codes)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.encode(images, codes)
        timings.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(timings), 3)


def markdown(report: dict[str, object]) -> str:
    frame, crop = report["frame_level"], report["crop_level"]
    faces = report["faces"]
    lines = [
        f"# Frame-level evaluation: {report['model']}",
        "",
        f"Held-out: {frame['faces']} face instances of {frame['identities']} identities "
        f"({frame['faces_photo']} in photo frames, {frame['faces_video']} in H.264 video frames), "
        f"{SIZE_RANGE[0]}-{SIZE_RANGE[1]} px wide, colour. Faces: {', '.join(faces['held_out'])}. "
        f"Not evaluated (used in training, tuning or calibration): {', '.join(faces['dropped']) or 'none'}.",
        "",
        "| metric | value | target |",
        "|---|---|---|",
        f"| frame-level SPR (dlib >= 0.6 from the original, key A) | **{frame['spr']}** | 0.95 |",
        f"| frame-level SPR, key B | {frame['spr_second_key']} | 0.95 |",
        f"| frame-level SPR, photo frames / video frames | {frame['spr_photo']} / {frame['spr_video']} | |",
        f"| two keys give different identities (A vs B >= 0.6) | {frame['two_keys_differ']} | 0.90 |",
        f"| faces the daemon replaced | {frame['replaced']} | 1.00 |",
        f"| CenterFace finds the surrogate | {frame['centerface_finds_surrogate']} | 0.90 |",
        f"| crop-level SPR | {crop['spr']} | |",
        f"| crop-level restore, right key: dlib match / PSNR | {crop['restore_right_key_match_rate']} / "
        f"{crop['restore_right_key_psnr_db']} dB | |",
        f"| crop-level restore, wrong key: SPR | {crop['restore_wrong_key_spr']} | 0.99 |",
        f"| encoder, ms per face at {report['crop_size']} px (onnxruntime, {report['machine']['onnxruntime_threads']} "
        f"thread) | {report['encoder_ms_per_face']} | 10 |",
        "",
        "Per identity (frame-level SPR): " + ", ".join(
            f"{face_id} {values['spr']} ({values['faces']})" for face_id, values in frame["per_identity"].items()),
        "",
        f"Model data roles: {json.dumps(report['data_roles'])}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="sdn-synth128")
    parser.add_argument("--photos", type=Path, nargs="+", required=True, help="photos whose faces are evaluated")
    parser.add_argument("--exclude", nargs="*", default=[], help="faces not to evaluate: PHOTO:INDEX, PHOTO:A-B, PHOTO:*")
    parser.add_argument("--photo-frames", type=int, default=8, help="photo frames per held-out face")
    parser.add_argument("--clip-frames", type=int, default=32, help="frames of each photo's video clip")
    parser.add_argument("--judge-every", type=int, default=4, help="judge every n-th clip frame")
    parser.add_argument("--detector-profile", choices=DETECTOR_PROFILES, default="fast",
                        help="the daemon's CenterFace profile (fast: one pass a frame; the faces here are 60-200 px)")
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--record-protection", action="store_true",
                        help="write the frame-level SPR into the model's manifest entry")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from streamd.errors import StreamdError
    from streamd.evaluation.identity import DlibIdentityJudge

    try:
        entry = load_manifest(args.models_dir).model(args.name)
        roles = entry.metadata.get("data_roles", {})
        not_for_evaluation = list(roles.get("not_for_evaluation", [])) if isinstance(roles, dict) else []
        excluded = parse_face_ids([*not_for_evaluation, *args.exclude])
        photos = load_photos(args.photos, excluded)
        model = load_keyed_model(args.models_dir, args.name, args.threads)
        judge = DlibIdentityJudge()
    except StreamdError as error:
        print(f"measure_sdn: {error}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    frames = evaluation_frames(photos, args.photo_frames, args.clip_frames, args.judge_every, SIZE_RANGE, rng)
    judged = [frame for frame in frames if frame.judged]

    sdn = {"model": args.name, "models_dir": args.models_dir, "intra_op_threads": args.threads,
           "allow_unprotective_model": True}  # measuring is how a model earns its protection record
    anonymizer_config = AnonymizerConfig(method="sdn", sdn=sdn)
    detector_config = CenterFaceConfig(profile=args.detector_profile)
    progress = ProgressBar(2 * len(frames) + 2 * len(judged), "evaluation")
    written_a = run_daemon(frames, anonymizer_config, detector_config, progress)
    written_b = run_daemon(frames, anonymizer_config, detector_config, progress)
    scores = score_frames(frames, written_a, written_b, judge, detector_config, progress)
    crop_metrics, rows = crop_level(model, frames, written_a, judge, detector_config, args.jpeg_quality, progress)
    progress.close()

    held_out = sorted({face.face_id for photo in photos for face in photo.faces})
    report: dict[str, object] = {
        "model": args.name, "kind": entry.kind, "crop_size": model.crop_size,
        "judge": judge.describe(),
        "faces": {"held_out": held_out, "dropped": sorted(excluded)},
        "data_roles": roles,
        "photos": [str(path.name) for path in args.photos],
        "detector": detector_config.model_dump(mode="json"),
        "frames": {"total": len(frames), "judged": len(judged), "photo_frames_per_face": args.photo_frames,
                   "clip_frames": args.clip_frames, "judge_every": args.judge_every, "size_range_px": SIZE_RANGE},
        "frame_level": summarize(scores, DLIB_THRESHOLD),
        "crop_level": crop_metrics,
        "encoder_ms_per_face": encoder_latency_ms(model, 100),
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "onnxruntime_threads": args.threads},
        "scores": [score.to_dict() for score in scores],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out_dir / "report.md").write_text(text)
    if rows:
        cv2.imwrite(str(args.out_dir / "contact-sheet.jpg"), np.concatenate(rows, axis=0), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(text)
    if args.record_protection:
        frame = report["frame_level"]
        record_protection(args.models_dir, args.name, {
            "spr": frame["spr"], "faces": frame["faces"], "identities": frame["identities"],
            "spr_second_key": frame["spr_second_key"], "two_keys_differ": frame["two_keys_differ"],
            "centerface_finds_surrogate": frame["centerface_finds_surrogate"],
            "restore_wrong_key_spr": crop_metrics["restore_wrong_key_spr"],
            "level": "frame (what the daemon writes)",
            "judge": f"dlib 128-D ResNet, distance threshold {DLIB_THRESHOLD}",
            "measured_by": "export/measure_sdn.py", "details": str(args.out_dir / "report.json"),
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
