"""The model-theft simulation of the cyclic-learning paper (section 5.3, Figures 10-12).

An attacker knows the architecture and holds the same training data, trains a forged CycleGAN, and
uses its F to re-identify the De-ID images of the defender's G. Attackers, as in the paper:

- identical: the defender's settings, another random seed;
- fewer-blocks: residual blocks cut by the paper's ratio 6/9 (9 -> 6);
- shorter: training cut by the paper's ratio 150/250 of the defender's iterations;
- wgan-gp: WGAN-GP adversarial losses instead of LSGAN.

The defender is trained here with the same budget (so "identical" is identical) unless --defender
names a trained run directory (then --iterations should match the defender's). For each held-out face
of the offline set the figure shows ID, De-ID (defender G), the authentic Re-ID (defender F) and each
forged Re-ID, and the table gives PSNR and SSIM of every Re-ID against the original and against the
authentic Re-ID.

    nice -n 19 python -m export.model_theft --size tiny --iterations 400 --threads 1 \
        --out runs/cyclegan-theft
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch

from export.sdn_data import bgr_to_tensor, build_offline_faces, jpeg_round_trip_bgr, tensor_to_bgr
from export.train_cyclegan import GENERATOR_WEIGHTS_NAME, build_parser, train
from streamd.evaluation.metrics import psnr, ssim
from streamd.nets.cyclegan import CycleGanGenerators, load_cyclegan_generators

logger = logging.getLogger(__name__)

PAPER_DEFENDER_BLOCKS = 9
PAPER_ATTACKER_BLOCKS = 6
PAPER_DEFENDER_EPOCHS = 250
PAPER_ATTACKER_EPOCHS = 150
FIGURE_FACES = 6
JPEG_QUALITY = 90


@dataclasses.dataclass(frozen=True)
class AttackerSettings:
    name: str
    description: str
    overrides: dict[str, object]


def attacker_settings(iterations: int, defender_blocks: int, seed: int) -> list[AttackerSettings]:
    fewer_blocks = max(1, round(defender_blocks * PAPER_ATTACKER_BLOCKS / PAPER_DEFENDER_BLOCKS))
    shorter = max(1, round(iterations * PAPER_ATTACKER_EPOCHS / PAPER_DEFENDER_EPOCHS))
    other_seed = seed + 1
    return [
        AttackerSettings("identical", "same settings, another seed", {"seed": other_seed}),
        AttackerSettings("fewer-blocks", f"{fewer_blocks} instead of {defender_blocks} residual blocks",
                         {"seed": other_seed, "residual_blocks": fewer_blocks}),
        AttackerSettings("shorter", f"{shorter} instead of {iterations} iterations",
                         {"seed": other_seed, "iterations": shorter}),
        AttackerSettings("wgan-gp", "WGAN-GP instead of LSGAN", {"seed": other_seed, "adversarial": "wgan-gp"}),
    ]


def with_overrides(args: argparse.Namespace, overrides: dict[str, object]) -> argparse.Namespace:
    values = vars(args).copy()
    values.update(overrides)
    return argparse.Namespace(**values)


@torch.no_grad()
def run_generator(generator: torch.nn.Module, crops_bgr: list[np.ndarray]) -> list[np.ndarray]:
    images = torch.stack([bgr_to_tensor(crop) for crop in crops_bgr])
    return [tensor_to_bgr(image) for image in generator(images)]


def save_figure(path: Path, originals: list[np.ndarray], deidentified: list[np.ndarray],
                authentic: list[np.ndarray], forged: dict[str, list[np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [("ID", originals), ("De-ID (G)", deidentified), ("Re-ID (F)", authentic)]
    columns += [(f"forged F:\n{name}", images) for name, images in forged.items()]
    columns.append(("|Re-ID - forged\nidentical| x4", [
        np.clip(4 * np.abs(a.astype(np.int16) - f.astype(np.int16)), 0, 255).astype(np.uint8)
        for a, f in zip(authentic, forged["identical"])
    ]))
    rows = min(FIGURE_FACES, len(originals))
    figure, axes = plt.subplots(rows, len(columns), figsize=(1.6 * len(columns), 1.6 * rows + 0.6), squeeze=False)
    for column, (title, images) in enumerate(columns):
        for row in range(rows):
            axis = axes[row][column]
            axis.imshow(images[row][:, :, ::-1])
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=7)
    figure.suptitle("Model theft: forged Re-ID networks on the defender's De-ID images", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs, figure and table")
    parser.add_argument("--defender", type=Path, help="a trained run directory to attack instead of training one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.defender is not None:
        defender = load_cyclegan_generators(args.defender / GENERATOR_WEIGHTS_NAME)
    else:
        train(args, args.out / "defender", resume=False)
        defender = load_cyclegan_generators(args.out / "defender" / GENERATOR_WEIGHTS_NAME)

    attackers: dict[str, CycleGanGenerators] = {}
    settings = attacker_settings(args.iterations, defender.config.num_residual_blocks, args.seed)
    for attacker in settings:
        logger.info("attacker %s: %s", attacker.name, attacker.description)
        train(with_overrides(args, attacker.overrides), args.out / attacker.name, resume=False)
        attackers[attacker.name] = load_cyclegan_generators(args.out / attacker.name / GENERATOR_WEIGHTS_NAME)

    _, held_out = build_offline_faces(defender.config.resolution, num_attributes=1)
    originals = [record.bgr for record in held_out]
    deidentified = [jpeg_round_trip_bgr(crop, JPEG_QUALITY) for crop in run_generator(defender.g, originals)]
    authentic = run_generator(defender.f, deidentified)
    forged = {name: run_generator(generators.f, deidentified) for name, generators in attackers.items()}

    def scores(images: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, float]:
        return {"psnr": float(np.mean([psnr(r, i) for r, i in zip(reference, images)])),
                "ssim": float(np.mean([ssim(r, i) for r, i in zip(reference, images)]))}

    table = {
        "faces": len(originals),
        "iterations": args.iterations,
        "jpeg_quality_of_deid": JPEG_QUALITY,
        "deid_vs_id": scores(deidentified, originals),
        "authentic_reid_vs_id": scores(authentic, originals),
        "attackers": {
            attacker.name: {"description": attacker.description,
                            "forged_reid_vs_id": scores(forged[attacker.name], originals),
                            "forged_reid_vs_authentic_reid": scores(forged[attacker.name], authentic)}
            for attacker in settings
        },
    }
    (args.out / "theft.json").write_text(json.dumps(table, indent=2) + "\n")
    save_figure(args.out / "theft.png", originals, deidentified, authentic, forged)
    print(json.dumps(table, indent=2))
    print(f"figure: {args.out / 'theft.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
