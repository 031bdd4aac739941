"""Attack suite: how many held-out faces an attacker without the key gets back from a keyed model's surrogates.

    python -m export.attack_sdn --models-dir models --name sdn-synth128 \
        --photos t1.jpg messi5.jpg face_swapped.jpg --out-dir docs/results/sdn-synth128-attacks [--record]

Faces: dlib's faces in --photos (numbered left to right), minus the model's `not_for_evaluation` faces
and --exclude (as export/measure_sdn.py). Each face is cut as the daemon cuts the model's crop (from
CenterFace's landmarks) with the photo scaled so the face is each of --face-widths pixels wide.
Each crop is anonymized under a fresh random track key, and the attacks of
`streamd.evaluation.attacks` (ignore the password, per-bit probe, local search, hill-climbing, SPSA
gradient descent, all scored by cycle consistency through decoder and encoder) each make one guess.
A face is recovered by an attack when dlib (128-D, threshold 0.6, landmarks placed inside the face's
dlib box mapped into the crop) matches the guess to the original crop. `surrogate_itself` is the
surrogate taken as the guess; `right_key` is the decoder with the true key (what the key holder gets).

Writes OUT_DIR/attacks.json and OUT_DIR/attacks.md and prints the Markdown; --record writes the
summary into the model's manifest entry (`attacks`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from export.measure_sdn import JUDGE_SIDE, ProgressBar, crop_box
from streamd.evaluation.attacks import ATTACKS, AttackBudget, attack_face, summarize_attacks
from streamd.evaluation.held_out_frames import load_photos, parse_face_ids
from streamd.evaluation.keyed_models import load_keyed_model
from streamd.runtime.manifest import MANIFEST_NAME, load_manifest
from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr

logger = logging.getLogger("export.attack_sdn")

DLIB_THRESHOLD = 0.6


def face_crops(photos, model, widths: list[int]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(face id, uint8 BGR crop, dlib box in the crop scaled to JUDGE_SIDE) per face and width."""
    from export.sdn_data import detect_faces_centerface
    from streamd.evaluation.frame_protection import detection_inside
    from streamd.types import Detections

    crops = []
    for photo in photos:
        for width in widths:
            for face in photo.faces:
                scale = width / float(face.xyxy[2] - face.xyxy[0])
                image = cv2.resize(photo.bgr, None, fx=scale, fy=scale,
                                   interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
                found = detect_faces_centerface(image)
                boxes = np.array([[k[:, 0].min(), k[:, 1].min(), k[:, 0].max(), k[:, 1].max()] for k in found]
                                 ).reshape(-1, 4)
                detections = Detections(boxes.astype(np.float32), np.array(found, np.float32).reshape(-1, 5, 2),
                                        np.ones(len(found), np.float32))
                box = face.xyxy * scale
                index = detection_inside(detections, box)
                if index is None:
                    logger.info("%s at %d px: CenterFace finds no face, skipped", face.face_id, width)
                    continue
                matrix = model.crop_matrix(detections.kps5[index])
                size = model.crop_size
                crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                crops.append((f"{face.face_id}@{width}px", crop, crop_box(matrix, box, JUDGE_SIDE / size)))
    return crops


def markdown(report: dict[str, object]) -> str:
    summary = report["summary"]
    code_word = "wrong bits" if report["code_kind"] == "bits" else "mean absolute code error"
    lines = [f"# Attack suite: {report['model']}", "",
             f"{summary['faces']} held-out face crops ({', '.join(report['faces'])}); {report['code_size']} "
             f"{'password bits' if report['code_kind'] == 'bits' else 'key-code values'}; dlib threshold 0.6.", "",
             f"| attack | faces recovered | mean dlib distance | {code_word} |", "|---|---|---|---|"]
    for name in (*ATTACKS, "surrogate_itself", "right_key"):
        error = summary["mean_code_error"].get(name, "")
        lines.append(f"| {name} | {summary['recovered'][name]} | {summary['mean_distance'][name]} | {error} |")
    lines += ["", f"Recovered by any attack (right_key excluded): **{summary['recovered_by_any_attack']}** "
              f"(target at most 0.01). {report['seconds']} s on {report['threads']} thread(s).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="sdn-synth128")
    parser.add_argument("--photos", type=Path, nargs="+", required=True)
    parser.add_argument("--exclude", nargs="*", default=[])
    parser.add_argument("--face-widths", type=int, nargs="+", default=[70, 110, 160])
    parser.add_argument("--hill-steps", type=int, default=AttackBudget.hill_steps)
    parser.add_argument("--gradient-steps", type=int, default=AttackBudget.gradient_steps)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--record", action="store_true", help="write the summary into the model's manifest entry")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from streamd.errors import StreamdError
    from streamd.evaluation.identity import DlibIdentityJudge

    try:
        entry = load_manifest(args.models_dir).model(args.name)
        roles = entry.metadata.get("data_roles", {})
        not_for_evaluation = list(roles.get("not_for_evaluation", [])) if isinstance(roles, dict) else []
        photos = load_photos(args.photos, parse_face_ids([*not_for_evaluation, *args.exclude]))
        model = load_keyed_model(args.models_dir, args.name, args.threads)
        judge = DlibIdentityJudge()
    except StreamdError as error:
        print(f"attack_sdn: {error}", file=sys.stderr)
        return 2
    crops = face_crops(photos, model, args.face_widths)
    budget = AttackBudget(hill_steps=args.hill_steps, gradient_steps=args.gradient_steps)
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    progress = ProgressBar(len(crops), "attacks")
    results = []
    for face_id, crop, box in crops:
        original = judge.embed(cv2.resize(crop, (JUDGE_SIDE, JUDGE_SIDE), interpolation=cv2.INTER_CUBIC), box)

        def distance(_original: np.ndarray, guess: np.ndarray, box=box, original=original) -> float:
            image = cv2.resize(nchw_to_crops_bgr(guess[None])[0], (JUDGE_SIDE, JUDGE_SIDE), interpolation=cv2.INTER_CUBIC)
            return float(np.linalg.norm(original - judge.embed(image, box)))

        results.append(attack_face(model, face_id, crops_bgr_to_nchw(crop[None])[0], distance, budget, rng))
        progress(1)
    progress.close()
    summary = summarize_attacks(results, DLIB_THRESHOLD)
    report = {"model": args.name, "code_kind": model.code_kind, "code_size": model.code_size,
              "faces": sorted({face.face_id for photo in photos for face in photo.faces}),
              "face_widths": args.face_widths, "budget": budget.__dict__, "threads": args.threads,
              "seconds": round(time.monotonic() - started, 1), "summary": summary,
              "per_face": [{"face": r.face_id, "distances": r.distances, "code_errors": r.code_errors} for r in results]}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "attacks.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out_dir / "attacks.md").write_text(text)
    print(text)
    if args.record:
        manifest_path = args.models_dir / MANIFEST_NAME
        manifest = json.loads(manifest_path.read_text())
        manifest["models"][args.name]["attacks"] = {
            "faces": summary["faces"], "recovered_by_any_attack": summary["recovered_by_any_attack"],
            "recovered": summary["recovered"], "measured_by": "export/attack_sdn.py",
            "judge": f"dlib 128-D ResNet, distance threshold {DLIB_THRESHOLD}",
            "details": str(args.out_dir / "attacks.json")}
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
