"""Train the reversible-pixelation CycleGAN (paper section 4, equations 1-4).

The two domains are built here from the same aligned face crops: X holds the faces, Y the faces
pixelated over their canonical face region with blocks of min(M, N) / 20 (paper section 4.3,
`streamd.anonymize.pixelate`). Training is unpaired, as in the paper: each batch draws its X and Y
samples independently.

The offline default model (CPU, faces from installed packages):

    nice -n 19 python -m export.train_cyclegan --size tiny --data offline --threads 1 \
        --max-minutes 30 --out runs/cyclegan-tiny

The 128-pixel model (blocks of a sixth of the face region, chosen with export.choose_cyclegan_block;
G starts as that pixelation and is also pulled towards it pixel by pixel: two departures from the paper,
see models/cyclegan-128.md):

    nice -n 19 python -m export.train_cyclegan --size tiny --crop-size 128 --blocks-per-side 6 \
        --g-pixelated-skip --paired-weight 5 --learning-rate 4e-4 --batch-size 2 --threads 1 \
        --max-minutes 26 --out runs/cyclegan-128

The paper's setup on a GPU with CelebA:

    python -m export.train_cyclegan --size paper --data celeba --data-root /data/celeba \
        --iterations 200000 --batch-size 1 --out runs/cyclegan-paper

Every iteration updates G and F on eq. (1) (LSGAN terms plus `--cycle-weight` times the cycle loss of
eq. 4), then D_X and D_Y on their LSGAN terms, with a history pool of generated images (CycleGAN's
practice). `--adversarial wgan-gp` swaps both adversarial terms for WGAN-GP (the paper's model-theft
variant). With the codec channel on (default), the x -> G -> F cycle passes G's output through the
storage stand-in of `export.train_sdn.codec_channel` (resize round trip, straight-through JPEG or
8-bit quantisation), so F learns to re-identify what a recording actually holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from export.sdn_data import (
    AugmentSettings,
    CelebADataset,
    FaceRecord,
    InMemoryFaceDataset,
    NO_AUGMENT,
    augment_face_bgr,
    bgr_to_tensor,
    build_offline_faces,
    jpeg_round_trip_bgr,
    tensor_to_bgr,
)
from export.train_sdn import ChannelSettings, codec_channel, infinite_batches, psnr, select_device
from streamd.anonymize.pixelate import (
    PAPER_BLOCKS_PER_SIDE,
    canonical_face_box,
    pixel_block_size,
    pixelate_face_crop,
)
from streamd.nets.cyclegan import (
    CycleGan,
    CycleGanConfig,
    count_parameters,
    cycle_consistency_loss,
    cyclegan_config,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    wgan_generator_loss,
    wgan_gp_discriminator_loss,
)

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
GENERATOR_WEIGHTS_NAME = "generators.pt"
ADVERSARIAL_LOSSES = ("lsgan", "wgan-gp")


class PixelationDomainsDataset(InMemoryFaceDataset):
    """Unpaired samples of both domains: {"x": a face, "y": another face pixelated}, (3, S, S) in [-1, 1],
    plus "x_pixelated": the X face itself pixelated (used only by the optional paired term).

    Crops come from `records` (aligned BGR crops), augmented on every read with the SDN training
    augmentation; the Y sample is pixelated after augmentation so its blocks stay clean.
    """

    def __init__(
        self,
        records: Sequence[FaceRecord],
        augment: AugmentSettings,
        length: int,
        seed: int,
        blocks_per_side: int = PAPER_BLOCKS_PER_SIDE,
    ) -> None:
        super().__init__(records, augment, length, seed)
        self.blocks_per_side = blocks_per_side

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = random.Random(self.seed * 1_000_003 + index)
        face = augment_face_bgr(self.records[rng.randrange(len(self.records))].bgr, rng, self.augment)
        other = augment_face_bgr(self.records[rng.randrange(len(self.records))].bgr, rng, self.augment)
        return {"x": bgr_to_tensor(face), "y": bgr_to_tensor(pixelate_face_crop(other, self.blocks_per_side)),
                "x_pixelated": bgr_to_tensor(pixelate_face_crop(face, self.blocks_per_side))}


class CelebAPixelationDomains(Dataset):
    """CelebA crops (aligned by the dataset's landmarks) as the two unpaired domains."""

    def __init__(self, celeba: CelebADataset, blocks_per_side: int, seed: int) -> None:
        self.celeba = celeba
        self.blocks_per_side = blocks_per_side
        self.seed = seed

    def __len__(self) -> int:
        return len(self.celeba)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        other_index = random.Random(self.seed * 1_000_003 + index).randrange(len(self.celeba))
        other = tensor_to_bgr(self.celeba[other_index]["image"])
        face = self.celeba[index]["image"]
        return {"x": face, "y": bgr_to_tensor(pixelate_face_crop(other, self.blocks_per_side)),
                "x_pixelated": bgr_to_tensor(pixelate_face_crop(tensor_to_bgr(face), self.blocks_per_side))}


class ImagePool:
    """History of generated images (CycleGAN): half of each batch given to D comes from older samples."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.rng = rng
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images.detach()
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.random() < 0.5:
                slot = self.rng.randrange(self.size)
                out.append(self.images[slot].clone())
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)


class CycleGanTrainer:
    """The networks, two optimizers and one training iteration."""

    def __init__(
        self,
        network: CycleGan,
        device: torch.device,
        learning_rate: float,
        cycle_weight: float,
        adversarial: str,
        channel: ChannelSettings | None,
        pool_size: int,
        seed: int,
        paired_weight: float = 0.0,
    ) -> None:
        if adversarial not in ADVERSARIAL_LOSSES:
            raise ValueError(f"adversarial must be one of {ADVERSARIAL_LOSSES}, got {adversarial!r}")
        self.network = network.to(device)
        self.device = device
        self.cycle_weight = cycle_weight
        self.paired_weight = paired_weight
        self.adversarial = adversarial
        self.channel = channel
        betas = (0.5, 0.999) if adversarial == "lsgan" else (0.5, 0.9)
        self.optimizer_g = torch.optim.Adam(network.generators.parameters(), lr=learning_rate, betas=betas)
        discriminator_parameters = list(network.discriminator_x.parameters()) + list(
            network.discriminator_y.parameters()
        )
        self.optimizer_d = torch.optim.Adam(discriminator_parameters, lr=learning_rate, betas=betas)
        self.iteration = 0
        self.py_rng = random.Random(seed)
        self.pool_x = ImagePool(pool_size, self.py_rng)
        self.pool_y = ImagePool(pool_size, self.py_rng)

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        net = self.network
        x = batch["x"].to(self.device, non_blocking=True)
        y = batch["y"].to(self.device, non_blocking=True)

        # Generators: eq. (1).
        for module in (net.discriminator_x, net.discriminator_y):
            module.requires_grad_(False)
        fake_y = net.g(x)
        received_y = codec_channel(fake_y, self.channel, self.py_rng) if self.channel is not None else fake_y
        cycled_x = net.f(received_y)
        fake_x = net.f(y)
        cycled_y = net.g(fake_x)
        loss_cycle = cycle_consistency_loss(x, cycled_x, y, cycled_y)
        if self.adversarial == "lsgan":
            loss_gan = lsgan_generator_loss(net.discriminator_y(fake_y)) + lsgan_generator_loss(
                net.discriminator_x(fake_x)
            )
        else:
            loss_gan = wgan_generator_loss(net.discriminator_y(fake_y)) + wgan_generator_loss(
                net.discriminator_x(fake_x)
            )
        loss_generators = loss_gan + self.cycle_weight * loss_cycle
        loss_paired = torch.zeros(())
        if self.paired_weight > 0:
            # Not in the paper: G is also told, pixel by pixel, what its own input pixelated looks like.
            loss_paired = torch.nn.functional.l1_loss(fake_y, batch["x_pixelated"].to(self.device, non_blocking=True))
            loss_generators = loss_generators + self.paired_weight * loss_paired
        self.optimizer_g.zero_grad(set_to_none=True)
        loss_generators.backward()
        self.optimizer_g.step()
        for module in (net.discriminator_x, net.discriminator_y):
            module.requires_grad_(True)

        # Discriminators.
        pooled_y = self.pool_y.query(fake_y)
        pooled_x = self.pool_x.query(fake_x)
        if self.adversarial == "lsgan":
            loss_d_y = lsgan_discriminator_loss(net.discriminator_y(y), net.discriminator_y(pooled_y))
            loss_d_x = lsgan_discriminator_loss(net.discriminator_x(x), net.discriminator_x(pooled_x))
        else:
            loss_d_y = wgan_gp_discriminator_loss(net.discriminator_y, y, pooled_y)
            loss_d_x = wgan_gp_discriminator_loss(net.discriminator_x, x, pooled_x)
        loss_d = loss_d_x + loss_d_y
        self.optimizer_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizer_d.step()
        self.iteration += 1
        return {
            "generators": float(loss_generators.detach()),
            "gan": float(loss_gan.detach()),
            "cycle": float(loss_cycle.detach()),
            "paired": float(loss_paired.detach()),
            "d": float(loss_d.detach()),
        }

    def state_dict(self) -> dict:
        return {
            "config": self.network.config.to_dict(),
            "adversarial": self.adversarial,
            "network": self.network.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "iteration": self.iteration,
            "torch_rng": torch.get_rng_state(),
            "py_rng": self.py_rng.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["adversarial"] != self.adversarial:
            raise ValueError(f"the checkpoint was trained with {state['adversarial']}, not {self.adversarial}")
        self.network.load_state_dict(state["network"], strict=True)
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        self.iteration = int(state["iteration"])
        torch.set_rng_state(state["torch_rng"])
        version, internal, gauss = state["py_rng"]
        self.py_rng.setstate((int(version), tuple(int(v) for v in internal), gauss))


@torch.no_grad()
def evaluate_held_out(network: CycleGan, faces_bgr: list[np.ndarray], jpeg_quality: int,
                      blocks_per_side: int = PAPER_BLOCKS_PER_SIDE) -> dict[str, float]:
    """Mean PSNR on held-out crops: re-ID F(JPEG(G(x))) vs x, de-ID G(x) vs x and vs pixelated x."""
    network.eval()
    device = next(network.parameters()).device
    images = torch.stack([bgr_to_tensor(face) for face in faces_bgr]).to(device)
    deidentified = network.generators.deidentify(images)
    received = torch.stack(
        [bgr_to_tensor(jpeg_round_trip_bgr(tensor_to_bgr(image), jpeg_quality)) for image in deidentified]
    ).to(device)
    reidentified = network.generators.reidentify(received)
    values: dict[str, list[float]] = {"psnr_reid": [], "psnr_deid": [], "psnr_deid_vs_pixelated": []}
    for index, face in enumerate(faces_bgr):
        deid = tensor_to_bgr(deidentified[index])
        values["psnr_reid"].append(psnr(face, tensor_to_bgr(reidentified[index])))
        values["psnr_deid"].append(psnr(face, deid))
        values["psnr_deid_vs_pixelated"].append(psnr(pixelate_face_crop(face, blocks_per_side), deid))
    network.train()
    return {key: float(np.mean([v for v in items if math.isfinite(v)] or [float("inf")])) for key, items in values.items()}


def build_domains(args: argparse.Namespace, resolution: int) -> tuple[Dataset, list[np.ndarray]]:
    """(training dataset of both domains, held-out aligned BGR faces)."""
    if args.data == "offline":
        train_records, held_out = build_offline_faces(resolution, num_attributes=1)
        dataset = PixelationDomainsDataset(train_records, AugmentSettings(), args.epoch_size, args.seed,
                                           args.blocks_per_side)
        return dataset, [record.bgr for record in held_out]
    if args.data == "celeba":
        if args.data_root is None:
            raise SystemExit("--data celeba needs --data-root")
        names = ("Male",)
        train = CelebADataset(args.data_root, resolution, names, split=0, augment=AugmentSettings(), seed=args.seed)
        held = CelebADataset(args.data_root, resolution, names, split=2, augment=NO_AUGMENT, seed=args.seed)
        held_faces = [tensor_to_bgr(held[i]["image"]) for i in range(min(64, len(held)))]
        return CelebAPixelationDomains(train, args.blocks_per_side, args.seed), held_faces
    raise SystemExit(f"unknown --data {args.data}")


def build_parser(description: str | None = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", help="named CycleGAN size: tiny, small, paper")
    parser.add_argument("--residual-blocks", type=int, help="override the size's number of residual blocks")
    parser.add_argument("--data", choices=("offline", "celeba"), default="offline")
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--crop-size", type=int,
                        help="aligned crop side in pixels (default: the size's resolution; tiny 64, small 128)")
    parser.add_argument("--blocks-per-side", type=int, default=PAPER_BLOCKS_PER_SIDE,
                        help="pixel block side = min(M, N) / this over the face region (paper: 20; "
                             "choose it with export.choose_cyclegan_block)")
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--max-minutes", type=float, default=0.0, help="stop (and save) after this wall time")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--cycle-weight", type=float, default=10.0, help="weight of eq. (4) in eq. (1)")
    parser.add_argument("--g-pixelated-skip", action="store_true",
                        help="G adds its residual to its input pixelated with --blocks-per-side (and starts as "
                             "that pixelation) instead of to its input (not in the paper)")
    parser.add_argument("--paired-weight", type=float, default=0.0,
                        help="weight of an L1 term G(x) ~ pixelate(x) (not in the paper, which is unpaired; "
                             "0 keeps the paper's objective)")
    parser.add_argument("--adversarial", choices=ADVERSARIAL_LOSSES, default="lsgan")
    parser.add_argument("--pool-size", type=int, default=50, help="history of generated images for D")
    parser.add_argument("--no-channel", action="store_true", help="train without the codec channel")
    parser.add_argument("--epoch-size", type=int, default=20_000, help="samples per epoch of the offline set")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def model_config(args: argparse.Namespace) -> CycleGanConfig:
    overrides: dict[str, object] = {}
    if args.residual_blocks is not None:
        overrides["num_residual_blocks"] = args.residual_blocks
    if args.crop_size is not None:
        overrides["resolution"] = args.crop_size
    if args.g_pixelated_skip:
        overrides["g_skip_blocks_per_side"] = args.blocks_per_side
    return cyclegan_config(args.size, **overrides)


def pixelation_rule(blocks_per_side: int, resolution: int) -> dict[str, object]:
    """The target domain's block rule as saved with the weights and recorded in the manifest."""
    x0, y0, x1, y1 = canonical_face_box(resolution)
    return {"blocks_per_side": blocks_per_side, "face_region_xyxy": [x0, y0, x1, y1],
            "block_px": pixel_block_size((x1 - x0, y1 - y0), blocks_per_side)}


def save_checkpoint(trainer: CycleGanTrainer, out: Path, blocks_per_side: int) -> None:
    temporary = out / (CHECKPOINT_NAME + ".tmp")
    torch.save(trainer.state_dict(), temporary)
    temporary.replace(out / CHECKPOINT_NAME)
    config = trainer.network.config
    torch.save({"config": config.to_dict(), "state_dict": trainer.network.generators.state_dict(),
                "pixelation": pixelation_rule(blocks_per_side, config.resolution)},
               out / GENERATOR_WEIGHTS_NAME)


def train(args: argparse.Namespace, out: Path, resume: bool) -> CycleGanTrainer:
    """Run (or continue) one training run into `out`; returns the trainer at its last iteration."""
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    out.mkdir(parents=True, exist_ok=True)
    config = model_config(args)
    dataset, held_out = build_domains(args, config.resolution)
    device = select_device(args.device)
    channel = None if args.no_channel else ChannelSettings()
    trainer = CycleGanTrainer(CycleGan(config), device, args.learning_rate, args.cycle_weight, args.adversarial,
                              channel, args.pool_size, args.seed, args.paired_weight)
    checkpoint_path = out / CHECKPOINT_NAME
    if resume:
        if not checkpoint_path.exists():
            raise SystemExit(f"--resume: {checkpoint_path} does not exist")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if CycleGanConfig.from_dict(state["config"]) != config:
            raise SystemExit("--resume: the checkpoint was trained with a different configuration")
        trainer.load_state_dict(state)
        logger.info("resumed at iteration %d", trainer.iteration)
    logger.info("device %s, generators %d parameters, discriminators %d", device,
                count_parameters(trainer.network.generators),
                count_parameters(trainer.network) - count_parameters(trainer.network.generators))
    (out / "config.json").write_text(json.dumps(
        {"cyclegan": config.to_dict(), "pixelation": pixelation_rule(args.blocks_per_side, config.resolution),
         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))

    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers, pin_memory=device.type == "cuda")
    batches = infinite_batches(loader)
    from tqdm import tqdm

    progress = tqdm(total=args.iterations, initial=trainer.iteration, disable=args.no_progress, dynamic_ncols=True)
    started = time.monotonic()
    with (out / "metrics.jsonl").open("a") as metrics_log:
        while trainer.iteration < args.iterations:
            logs = trainer.step(next(batches))
            progress.update(1)
            progress.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
            iteration = trainer.iteration
            minutes = (time.monotonic() - started) / 60.0
            out_of_time = args.max_minutes > 0 and minutes >= args.max_minutes
            if (iteration % args.eval_every == 0 or out_of_time) and held_out:
                evaluation = evaluate_held_out(trainer.network, held_out, 90, args.blocks_per_side)
                record = {"iteration": iteration, "minutes": minutes, **logs, **evaluation}
                metrics_log.write(json.dumps(record) + "\n")
                metrics_log.flush()
                logger.info("iteration %d: %s", iteration, {k: round(v, 3) for k, v in record.items()})
            if iteration % args.checkpoint_every == 0 or out_of_time:
                save_checkpoint(trainer, out, args.blocks_per_side)
            if out_of_time:
                logger.info("stopping after %.1f minutes at iteration %d", minutes, iteration)
                break
    progress.close()
    save_checkpoint(trainer, out, args.blocks_per_side)
    return trainer


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, log, weights)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    trainer = train(args, args.out, args.resume)
    print(f"trained to iteration {trainer.iteration}; weights in {args.out / GENERATOR_WEIGHTS_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
