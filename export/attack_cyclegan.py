"""What an attacker can do against a CycleGAN pixelation model: with only the public G, or with a stolen F.

    nice -n 19 python -m export.attack_cyclegan --models-dir models --name cyclegan-128 \
        --photos messi5.jpg face_swapped.jpg --max-minutes 6 --threads 1 \
        --out docs/results/cyclegan-128/attacks.json [--record]

G (`deid_onnx`) runs on every camera host, so an attacker can assume it. With G alone the attacker can
make as many (face, G(face)) pairs as they have faces and fit an inverse network by plain regression,
which is easier than the paper's unpaired model theft (section 5.3: a forged CycleGAN trained without
G). This script does exactly that: the attacker's faces are the offline TRAINING faces (export.sdn_data,
augmented), G runs through onnxruntime on the public file and its output passes a JPEG round trip
(--jpeg-quality, as in a recording); the inverse F' has the model's generator architecture (with its
global skip) and is trained with L1 for --max-minutes on one CPU thread.

A second inverse, trained the same way on the target pixelation itself (JPEG(pixelate(x)), x), tells
how much of what the first recovers G adds (its hidden textures) and how much any learned de-pixelation
would recover from the block rule alone.

Evaluated on held-out faces only (the offline set's held-out faces and every face CenterFace finds in
--photos), all and split into colour and grey faces: for De-ID as published (no attack),
F'(JPEG(G(x))) (public G only), F(JPEG(G(x))) (the stolen or authentic F) and the pixelation inverse on
JPEG(pixelate(x)): PSNR against x and the dlib match rate (distance < 0.6, whole crop at 150x150).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from export.measure_cli import emit_report, held_out_faces
from export.measure_sdn_restore import IdentityJudge, is_grey
from export.sdn_data import AugmentSettings, augment_face_bgr, bgr_to_tensor, build_offline_faces, jpeg_round_trip_bgr
from export.train_sdn import psnr
from streamd.anonymize.pixelate import PAPER_BLOCKS_PER_SIDE, pixelate_face_crop
from streamd.nets.cyclegan import CycleGanConfig, ResnetGenerator, count_parameters
from streamd.runtime.cyclegan import load_cyclegan_deidentifier, load_cyclegan_reidentifier
from streamd.runtime.manifest import MANIFEST_NAME, load_manifest
from streamd.runtime.sdn import nchw_to_crops_bgr

logger = logging.getLogger("export.attack_cyclegan")

DLIB_THRESHOLD = 0.6


def attacker_batches(faces: list[np.ndarray], deidentify, batch_size: int, jpeg_quality: int,
                     rng: random.Random):
    """Endless (JPEG(deidentify(x)), x) batches as float tensors in [-1, 1], x drawn from `faces` and
    augmented; `deidentify` maps (N, S, S, 3) uint8 BGR crops to the same."""
    augment = AugmentSettings(jpeg_probability=0.0, resize_probability=0.0)
    while True:
        originals = np.stack([augment_face_bgr(faces[rng.randrange(len(faces))], rng, augment)
                              for _ in range(batch_size)])
        pixelated = deidentify(originals)
        received = [jpeg_round_trip_bgr(image, jpeg_quality) for image in pixelated]
        yield (torch.stack([bgr_to_tensor(image) for image in received]),
               torch.stack([bgr_to_tensor(image) for image in originals]))


def train_inverse(config: CycleGanConfig, batches, max_minutes: float, max_iterations: int,
                  learning_rate: float) -> tuple[ResnetGenerator, int]:
    """F' fitted by L1 regression from G's output back to the face."""
    inverse = ResnetGenerator(config)
    optimizer = torch.optim.Adam(inverse.parameters(), lr=learning_rate, betas=(0.5, 0.999))
    started = last_log = time.monotonic()
    iteration = 0
    while iteration < max_iterations and time.monotonic() - started < max_minutes * 60:
        received, originals = next(batches)
        loss = torch.nn.functional.l1_loss(inverse(received), originals)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        iteration += 1
        if time.monotonic() - last_log > 10:
            last_log = time.monotonic()
            logger.info("attacker iteration %d, %.1f min, L1 %.4f", iteration,
                        (last_log - started) / 60, float(loss.detach()))
    return inverse.eval(), iteration


def judge_outputs(judge: IdentityJudge, crops: np.ndarray, outputs: np.ndarray) -> dict[str, dict[str, float]]:
    """PSNR and dlib match rate of `outputs` against `crops`: all faces, colour faces, grey faces."""
    distances = np.array([float(np.linalg.norm(judge.embed(a) - judge.embed(b))) for a, b in zip(crops, outputs)])
    psnrs = np.array([psnr(a, b) for a, b in zip(crops, outputs)])
    grey = np.array([is_grey(crop) for crop in crops])
    result = {}
    for group, members in (("all", np.ones(len(crops), bool)), ("colour", ~grey), ("grey", grey)):
        if members.any():
            result[group] = {"faces": int(members.sum()), "psnr_db": round(float(psnrs[members].mean()), 2),
                             "mean_distance": round(float(distances[members].mean()), 4),
                             "match_rate": round(float(np.mean(distances[members] < DLIB_THRESHOLD)), 4)}
    return result


def pixelate_batch(blocks_per_side: int):
    def pixelate(crops: np.ndarray) -> np.ndarray:
        return np.stack([pixelate_face_crop(crop, blocks_per_side) for crop in crops])
    return pixelate


def forge(inverse: ResnetGenerator, received: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return nchw_to_crops_bgr(inverse(torch.stack([bgr_to_tensor(image) for image in received])).numpy())


NO_SECRET_ATTACKS = ("public_g_inverse", "pixelation_inverse")


def record_attacks(models_dir: Path, name: str, report: dict[str, object], details: str) -> Path:
    """Write the attack summary into NAME's manifest entry (`attacks`, which the daemon's gate reads)."""
    manifest_path = models_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    if name not in manifest.get("models", {}):
        raise SystemExit(f"{manifest_path}: no model {name!r}")
    recovered = {attack: report[attack]["all"]["match_rate"] for attack in (*NO_SECRET_ATTACKS, "stolen_f")}
    manifest["models"][name]["attacks"] = {
        "faces": report["held_out_faces"],
        # The best single attack that needs no secret: a lower bound of the share any of them recovers.
        "recovered_by_any_attack": max(recovered[attack] for attack in NO_SECRET_ATTACKS),
        "recovered": recovered,
        "judge": f"dlib 128-D ResNet on the whole crop, distance threshold {DLIB_THRESHOLD}",
        "measured_by": "export/attack_cyclegan.py",
        "details": details,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="cyclegan-128")
    parser.add_argument("--photos", type=Path, nargs="*", default=[], help="extra photos; every face found is held out")
    parser.add_argument("--max-minutes", type=float, default=8.0)
    parser.add_argument("--max-iterations", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--record", action="store_true",
                        help="write the attack summary into the model's manifest entry (needs --out)")
    args = parser.parse_args(argv)
    if args.record and args.out is None:
        parser.error("--record needs --out")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    entry = load_manifest(args.models_dir).model(args.name)
    config = CycleGanConfig.from_dict(dict(entry.require("config")))  # type: ignore[arg-type]
    deidentifier = load_cyclegan_deidentifier(args.models_dir, args.name, intra_op_threads=args.threads)
    reidentifier = load_cyclegan_reidentifier(args.models_dir, args.name, intra_op_threads=args.threads)
    size = deidentifier.spec.resolution
    blocks = deidentifier.spec.blocks_per_side or PAPER_BLOCKS_PER_SIDE
    train_records, _ = build_offline_faces(size, num_attributes=1)
    attacker_faces = [record.bgr for record in train_records]
    inverses = {}
    for name, transform in (("public_g_inverse", deidentifier.deidentify),
                            ("pixelation_inverse", pixelate_batch(blocks))):
        batches = attacker_batches(attacker_faces, transform, args.batch_size, args.jpeg_quality,
                                   random.Random(args.seed))
        logger.info("training %s", name)
        inverses[name] = train_inverse(config, batches, args.max_minutes, args.max_iterations, args.learning_rate)

    faces = held_out_faces(size, 1, args.photos)
    crops = np.stack([crop for _, crop in faces])
    deid = deidentifier.deidentify(crops)
    received = np.stack([jpeg_round_trip_bgr(image, args.jpeg_quality) for image in deid])
    pixelated = np.stack([jpeg_round_trip_bgr(image, args.jpeg_quality) for image in pixelate_batch(blocks)(crops)])
    forged = forge(inverses["public_g_inverse"][0], received)
    depixelated = forge(inverses["pixelation_inverse"][0], pixelated)
    stolen = reidentifier.reidentify(received)
    judge = IdentityJudge()
    report = {
        "model": args.name,
        "held_out_faces": len(crops),
        "face_sources": [source for source, _ in faces],
        "jpeg_quality_of_deid": args.jpeg_quality,
        "judge": "dlib 128-D ResNet on the whole crop at 150x150, same person below 0.6",
        "blocks_per_side": blocks,
        "attackers": {
            name: {
                "faces": f"{len(train_records)} offline training faces, augmented",
                "network": f"generator of the model's architecture, {count_parameters(inverse)} parameters",
                "loss": "L1 regression on (JPEG(G(x)), x) pairs" if name == "public_g_inverse"
                else "L1 regression on (JPEG(pixelate(x)), x) pairs",
                "iterations": iterations, "batch_size": args.batch_size, "max_minutes": args.max_minutes,
            } for name, (inverse, iterations) in inverses.items()
        },
        "no_attack_deid": judge_outputs(judge, crops, deid),
        "no_attack_target_pixelation": judge_outputs(judge, crops, pixelated),
        "public_g_inverse": judge_outputs(judge, crops, forged),
        "pixelation_inverse": judge_outputs(judge, crops, depixelated),
        "stolen_f": judge_outputs(judge, crops, stolen),
    }
    emit_report(report, args.out)
    if args.record:
        record_attacks(args.models_dir, args.name, report, str(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
