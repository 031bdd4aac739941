"""Choose the pixelation block of a CycleGAN target domain on training faces only.

    python -m export.choose_cyclegan_block --crop-size 128 --candidates 20 16 12 10 8 6 5 4 \
        --required-rate 0.95 --out docs/results/cyclegan-128/block-choice.json

The target Y of the CycleGAN method is the aligned crop pixelated over its canonical face region with
square blocks of min(M, N) / blocks_per_side pixels (`streamd.anonymize.pixelate`). G can hide no more
than its target hides, so the target itself must defeat a face matcher. For each candidate
blocks_per_side this script pixelates every TRAINING face of the offline set (export.sdn_data; the
held-out faces are never read) and measures the dlib 128-D distance between the crop and its
pixelation (whole crop at 150x150, same person below 0.6). The chosen rule is the finest block (the
largest blocks_per_side) whose hidden rate (distance >= 0.6) reaches --required-rate.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from export.measure_cli import emit_report
from export.measure_sdn_restore import IdentityJudge
from export.sdn_data import build_offline_faces
from streamd.anonymize.pixelate import canonical_face_box, pixel_block_size, pixelate_face_crop

logger = logging.getLogger("export.choose_cyclegan_block")

DLIB_THRESHOLD = 0.6


def hidden_rates(crops: list[np.ndarray], candidates: list[int], judge: IdentityJudge) -> dict[int, dict[str, float]]:
    """For each blocks_per_side: mean dlib distance crop vs pixelated crop, and the share >= 0.6."""
    originals = [judge.embed(crop) for crop in crops]
    results: dict[int, dict[str, float]] = {}
    for blocks in candidates:
        distances = np.array([float(np.linalg.norm(original - judge.embed(pixelate_face_crop(crop, blocks))))
                              for original, crop in zip(originals, crops)])
        results[blocks] = {"mean_distance": float(distances.mean()), "min_distance": float(distances.min()),
                           "hidden_rate": float(np.mean(distances >= DLIB_THRESHOLD))}
        logger.info("blocks_per_side %d: %s", blocks, results[blocks])
    return results


def choose(results: dict[int, dict[str, float]], required_rate: float) -> int | None:
    """The largest blocks_per_side (finest blocks) whose hidden rate reaches `required_rate`."""
    passing = [blocks for blocks, values in results.items() if values["hidden_rate"] >= required_rate]
    return max(passing) if passing else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop-size", type=int, default=128)
    parser.add_argument("--candidates", type=int, nargs="+", default=[20, 16, 12, 10, 8, 6, 5, 4])
    parser.add_argument("--required-rate", type=float, default=0.95)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    train, _ = build_offline_faces(args.crop_size, num_attributes=1)
    crops = [record.bgr for record in train]
    results = hidden_rates(crops, args.candidates, IdentityJudge())
    box = canonical_face_box(args.crop_size)
    chosen = choose(results, args.required_rate)
    report = {
        "crop_size": args.crop_size,
        "face_region_xyxy": list(box),
        "training_faces": len(crops),
        "sources": sorted({record.source.rsplit(" ", 1)[0] if "lfw" in record.source else record.source
                           for record in train}),
        "judge": "dlib 128-D ResNet on the whole crop at 150x150, hidden when distance >= 0.6",
        "required_hidden_rate": args.required_rate,
        "candidates": {str(blocks): {"block_px": pixel_block_size((box[2] - box[0], box[3] - box[1]), blocks), **values}
                       for blocks, values in results.items()},
        "chosen_blocks_per_side": chosen,
    }
    emit_report(report, args.out)
    return 0 if chosen is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
