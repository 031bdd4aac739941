"""The tuning objective of a keyed synthetic identity model, measured on the tuning faces only.

    python -m export.tune_synthetic_identity --models-dir models --name sdn-synth128 \
        --widths 60 70 80 90 100 110 120 130 140 150 160 180 200 --out docs/results/sdn-synth128/tuning.json

Every bank identity of the model's face space is rendered into every tuning crop (skimage's astronaut
and insightface's Tom_Hanks_54745.png and their mirror images, each face scaled to each of --widths px
and cut as the daemon cuts it), and dlib (128-D, landmarks placed inside the face's dlib box) gives its
distance from that crop's original face. Reported: the mean and the low tail (1st and 5th
percentile, smallest, shares under 0.6 and 0.65) over all (crop, identity) pairs, and the share of
identity pairs that dlib places at least 0.6 apart, averaged over the crops (what "two keys differ"
reads). Render settings can be changed from the model's (--context-sigma, --light, --oval,
--amplitude) to compare a variant on the same bank. No held-out face is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from export.attack_sdn import face_crops
from export.build_synthetic_identity import model_from_space, tuning_photo_paths
from export.identity_bank import distances_to, pairwise_distances
from export.measure_sdn import JUDGE_SIDE, ProgressBar
from streamd.anonymize.synthetic import synthetic_crop_matrix
from streamd.nets.synthetic_identity import SyntheticIdentityConfig
from streamd.runtime.manifest import load_manifest

logger = logging.getLogger("export.tune_synthetic_identity")

DLIB_THRESHOLD = 0.6


def tail_summary(from_original: np.ndarray, pairs_apart: list[float]) -> dict[str, float]:
    """The tuning objective from (crops, identities) distances to the original and per-crop pair shares."""
    values = np.asarray(from_original, np.float64).ravel()
    return {"pairs": int(values.size), "mean": round(float(values.mean()), 4),
            "p1": round(float(np.percentile(values, 1)), 4), "p5": round(float(np.percentile(values, 5)), 4),
            "min": round(float(values.min()), 4), "below_0.6": round(float(np.mean(values < 0.6)), 4),
            "below_0.65": round(float(np.mean(values < 0.65)), 4),
            "identity_pairs_at_least_0.6": round(float(np.mean(pairs_apart)), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="sdn-synth128")
    parser.add_argument("--widths", type=int, nargs="+", default=[60, 100, 160])
    parser.add_argument("--context-sigma", type=float)
    parser.add_argument("--light", choices=("plane", "flat", "lowpass"))
    parser.add_argument("--oval", type=float, nargs=3, metavar=("RADIUS_X", "RADIUS_Y", "FEATHER"))
    parser.add_argument("--amplitude", type=float)
    parser.add_argument("--out", type=Path, help="write the summary and every distance here (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)

    from streamd.evaluation.held_out_frames import load_photos
    from streamd.evaluation.identity import DlibIdentityJudge
    from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr

    entry = load_manifest(args.models_dir).model(args.name)
    config = SyntheticIdentityConfig(**entry.require("config"))
    changes = {key: value for key, value in (("context_sigma", args.context_sigma), ("light", args.light),
                                             ("amplitude", args.amplitude)) if value is not None}
    if args.oval:
        changes.update(oval_radius_x=args.oval[0], oval_radius_y=args.oval[1], oval_feather=args.oval[2])
    config = dataclasses.replace(config, **changes)
    with np.load(entry.verified_path("face_space")) as stored:
        space = {key: stored[key] for key in stored.files}
    model = model_from_space(config, space)

    class CropGeometry:
        crop_size = config.resolution

        def crop_matrix(self, kps5: np.ndarray) -> np.ndarray:
            return synthetic_crop_matrix(kps5, config.resolution, config.zoom, config.centre_y)

    with tempfile.TemporaryDirectory() as work_dir:
        photos = load_photos(tuning_photo_paths(Path(work_dir), mirrored=True), set())
        crops = face_crops(photos, CropGeometry(), args.widths)
    judge = DlibIdentityJudge()
    size = config.bank_size
    codes = torch.zeros(size, config.code_dimensions)
    codes[torch.arange(size), torch.arange(size)] = 3.0
    progress = ProgressBar(len(crops) * (size + 1), "tuning crops")

    def embed(image: np.ndarray, box: np.ndarray) -> np.ndarray:
        progress(1)
        return judge.embed(cv2.resize(image, (JUDGE_SIDE, JUDGE_SIDE), interpolation=cv2.INTER_CUBIC), box)

    from_original, pairs_apart = [], []
    for _, crop, box in crops:
        with torch.no_grad():
            rendered = model.surrogate(torch.from_numpy(crops_bgr_to_nchw(crop[None])).repeat(size, 1, 1, 1), codes)
        embeddings = np.stack([embed(image, box) for image in nchw_to_crops_bgr(rendered.numpy())])
        from_original.append(distances_to(embeddings, embed(crop, box)))
        pairs_apart.append(float(np.mean(pairwise_distances(embeddings)[np.triu_indices(size, 1)] >= DLIB_THRESHOLD)))
    progress.close()
    summary = tail_summary(np.stack(from_original), pairs_apart)
    summary.update(model=args.name, crops=len(crops), changes=changes)
    print(json.dumps(summary))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**summary, "per_crop": {
            face_id: [round(float(value), 4) for value in row] for (face_id, _, _), row in zip(crops, from_original)}},
            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
