"""Frame-level protection of a CycleGAN pixelation model on held-out faces: the number the daemon's gate reads.

    python -m export.measure_cyclegan_frames --models-dir models --name cyclegan-128 \
        --photos t1.jpg messi5.jpg face_swapped.jpg --exclude t1.jpg:0-3 \
        --out-dir docs/results/cyclegan-128 --sheet docs/images/cyclegan-128-sheet.jpg [--record-protection]

The same held-out frames as export/measure_sdn.py (`streamd.evaluation.held_out_frames`): each face of
the photos, found by dlib and numbered left to right, in --photo-frames 1280x720 frames (60-200 px
wide) and in a zooming H.264 clip per photo. Faces used in training go in --exclude (the offline
training set holds t1.jpg faces 0-3).

Frame level: the frames go through the daemon's CenterFace, tracker and `method: cyclegan` with this
model (`streamd.evaluation.frame_protection.run_daemon`); dlib (128-D ResNet, threshold 0.6) compares
each face on the written frame with the original frame. The method has no key, so one run suffices.

Crop level, on the model's aligned crop (CenterFace landmarks, `streamd.align`, as the daemon cuts it):
- G: share of faces whose De-ID G(x) is >= 0.6 from x (crop-level SPR), and the same for the target
  pixelation G imitates (the block rule of the model's manifest entry);
- F: Re-ID = F(JPEG(G(x))) at --jpeg-quality (what a recording holds): PSNR against x and dlib match
  rate (< 0.6), i.e. what whoever holds F, a restore authority or a thief, gets back.

Writes OUT_DIR/frames-report.json and a contact sheet (original | target | G | F(G), one row per held-out
identity). --record-protection writes the frame-level SPR into the model's manifest entry.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

from export.measure_sdn import JUDGE_SIDE, SIZE_RANGE, ProgressBar, crop_box, psnr
from export.sdn_data import jpeg_round_trip_bgr
from streamd.anonymize.pixelate import PAPER_BLOCKS_PER_SIDE, pixelate_face_crop
from streamd.config import DETECTOR_PROFILES, AnonymizerConfig, CenterFaceConfig
from streamd.evaluation.frame_protection import detection_inside, run_daemon, score_frames, summarize
from streamd.evaluation.held_out_frames import EvaluationFrame, evaluation_frames, load_photos, parse_face_ids
from streamd.runtime.cyclegan import CycleganDeidentifier, CycleganReidentifier
from streamd.runtime.manifest import record_protection

logger = logging.getLogger("export.measure_cyclegan_frames")

DLIB_THRESHOLD = 0.6
FRAME_KEYS = ("faces", "identities", "spr", "replaced", "centerface_finds_surrogate", "mean_distance",
              "spr_photo", "faces_photo", "spr_video", "faces_video", "per_identity")


def share(values: list[bool]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def crop_level(deidentifier: CycleganDeidentifier, reidentifier: CycleganReidentifier, frames: list[EvaluationFrame],
               judge, detector_config: CenterFaceConfig, jpeg_quality: int,
               progress) -> tuple[dict[str, object], list[np.ndarray]]:
    """Crop-level SPR of G and of its target, Re-ID fidelity of F; one contact-sheet row per identity."""
    from streamd.align import similarity_transform
    from streamd.detect import build_detector

    size = deidentifier.spec.resolution
    blocks = deidentifier.spec.blocks_per_side or PAPER_BLOCKS_PER_SIDE
    detector = build_detector(detector_config)
    distances: dict[str, list[float]] = {"deid": [], "target": [], "reid": []}
    psnr_reid: list[float] = []
    psnr_deid: list[float] = []
    rows, seen = [], set()
    scale = JUDGE_SIDE / size
    try:
        for frame in frames:
            if not frame.judged:
                continue
            found = detector.detect_still(frame.bgr)
            for face in frame.faces:
                index = detection_inside(found, face.xyxy)
                if index is None:
                    continue
                matrix = similarity_transform(found.kps5[index], size)
                crop = cv2.warpAffine(frame.bgr, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)
                deid = deidentifier.deidentify(crop[None])[0]
                reid = reidentifier.reidentify(jpeg_round_trip_bgr(deid, jpeg_quality)[None])[0]
                target = pixelate_face_crop(crop, blocks)
                box = crop_box(matrix, face.xyxy, scale)
                big = [cv2.resize(image, (JUDGE_SIDE, JUDGE_SIDE), interpolation=cv2.INTER_CUBIC)
                       for image in (crop, deid, target, reid)]
                original = judge.embed(big[0], box)
                for name, image in zip(("deid", "target", "reid"), big[1:]):
                    distances[name].append(float(np.linalg.norm(original - judge.embed(image, box))))
                psnr_reid.append(psnr(crop, reid))
                psnr_deid.append(psnr(crop, deid))
                if face.face_id not in seen:
                    seen.add(face.face_id)
                    rows.append(np.concatenate([crop, target, deid, reid], axis=1))
            progress(1)
    finally:
        detector.close()
    n = len(distances["deid"])
    arrays = {name: np.array(values) for name, values in distances.items()}
    metrics = {
        "faces": n,
        "crop_size": size,
        "blocks_per_side": blocks,
        "spr_deid": share(list(arrays["deid"] >= DLIB_THRESHOLD)),
        "spr_target_pixelation": share(list(arrays["target"] >= DLIB_THRESHOLD)),
        "reid_match_rate": share(list(arrays["reid"] < DLIB_THRESHOLD)),
        "reid_psnr_db": round(float(np.mean(psnr_reid)), 2) if n else None,
        "deid_psnr_db": round(float(np.mean(psnr_deid)), 2) if n else None,
        "mean_distances": {name: round(float(values.mean()), 4) for name, values in arrays.items() if len(values)},
        "jpeg_quality_before_reid": jpeg_quality,
    }
    return metrics, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="cyclegan-128")
    parser.add_argument("--photos", type=Path, nargs="+", required=True, help="photos whose faces are evaluated")
    parser.add_argument("--exclude", nargs="*", default=[],
                        help="faces not to evaluate: PHOTO:INDEX, PHOTO:A-B, PHOTO:* (training faces: t1.jpg:0-3)")
    parser.add_argument("--photo-frames", type=int, default=8, help="photo frames per held-out face")
    parser.add_argument("--clip-frames", type=int, default=32, help="frames of each photo's video clip")
    parser.add_argument("--judge-every", type=int, default=4, help="judge every n-th clip frame")
    parser.add_argument("--detector-profile", choices=DETECTOR_PROFILES, default="fast")
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--sheet", type=Path, help="contact sheet JPEG (default OUT_DIR/contact-sheet.jpg)")
    parser.add_argument("--record-protection", action="store_true",
                        help="write the frame-level SPR into the model's manifest entry")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from streamd.errors import StreamdError
    from streamd.evaluation.identity import DlibIdentityJudge
    from streamd.runtime.cyclegan import load_cyclegan_deidentifier, load_cyclegan_reidentifier

    try:
        excluded = parse_face_ids(args.exclude)
        photos = load_photos(args.photos, excluded)
        deidentifier = load_cyclegan_deidentifier(args.models_dir, args.name, intra_op_threads=args.threads)
        reidentifier = load_cyclegan_reidentifier(args.models_dir, args.name, intra_op_threads=args.threads)
        judge = DlibIdentityJudge()
    except StreamdError as error:
        print(f"measure_cyclegan_frames: {error}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    frames = evaluation_frames(photos, args.photo_frames, args.clip_frames, args.judge_every, SIZE_RANGE, rng)
    judged = [frame for frame in frames if frame.judged]

    cyclegan = {"model": args.name, "models_dir": args.models_dir, "intra_op_threads": args.threads,
                "allow_unprotective_model": True}  # measuring is how a model earns its protection record
    anonymizer_config = AnonymizerConfig(method="cyclegan", cyclegan=cyclegan)
    detector_config = CenterFaceConfig(profile=args.detector_profile)
    progress = ProgressBar(len(frames) + 2 * len(judged), "evaluation")
    written = run_daemon(frames, anonymizer_config, detector_config, progress)
    # No key: the second run of score_frames' two-key comparison is the same output.
    scores = score_frames(frames, written, written, judge, detector_config, progress)
    crop_metrics, rows = crop_level(deidentifier, reidentifier, frames, judge, detector_config,
                                    args.jpeg_quality, progress)
    progress.close()
    summary = summarize(scores, DLIB_THRESHOLD)

    report: dict[str, object] = {
        "model": args.name,
        "judge": judge.describe(),
        "faces": {"held_out": sorted({face.face_id for photo in photos for face in photo.faces}),
                  "dropped": sorted(excluded)},
        "photos": [path.name for path in args.photos],
        "detector": detector_config.model_dump(mode="json"),
        "frames": {"total": len(frames), "judged": len(judged), "photo_frames_per_face": args.photo_frames,
                   "clip_frames": args.clip_frames, "judge_every": args.judge_every, "size_range_px": SIZE_RANGE},
        "frame_level": {key: summary[key] for key in FRAME_KEYS},
        "crop_level": crop_metrics,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "onnxruntime_threads": args.threads},
        "scores": [{key: value for key, value in score.to_dict().items()
                    if key not in ("distance_b", "distance_ab")} for score in scores],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "frames-report.json").write_text(json.dumps(report, indent=2) + "\n")
    sheet = args.sheet or args.out_dir / "contact-sheet.jpg"
    if rows:
        sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sheet), np.concatenate(rows, axis=0), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(json.dumps({"frame_level": report["frame_level"], "crop_level": crop_metrics}, indent=2))
    if args.record_protection:
        frame = report["frame_level"]
        record_protection(args.models_dir, args.name, {
            "spr": frame["spr"], "faces": frame["faces"], "identities": frame["identities"],
            "replaced": frame["replaced"], "crop_level_spr": crop_metrics["spr_deid"],
            "crop_level_spr_target_pixelation": crop_metrics["spr_target_pixelation"],
            "level": "frame (what the daemon writes)",
            "judge": f"dlib 128-D ResNet, distance threshold {DLIB_THRESHOLD}",
            "measured_by": "export/measure_cyclegan_frames.py",
            "details": str(args.out_dir / "frames-report.json"),
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
