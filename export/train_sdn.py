"""Train the Secure Dual Network (paper Algorithm 1, equations 5-15).

One documented command for the paper's setup on a GPU with CelebA:

    python -m export.train_sdn --size paper --data celeba --data-root /data/celeba \
        --iterations 200000 --batch-size 16 --out runs/sdn-paper

The offline default model (CPU, faces from installed packages):

    nice -n 19 python -m export.train_sdn --size tiny --data offline --max-minutes 45 --out runs/sdn-tiny

Every iteration updates the Feature Extractor/Classifier EC (eq. 5) and the discriminator D (eq. 11);
every `--generator-every`-th iteration (paper: 10) updates the encoder and decoder with
L_total = lambda_En * L_En + lambda_De * L_De (eqs. 8, 14, 15). Which parts of the paper's equations
this code reads how (the paper leaves choices open; the shipped graphs take one face only):

- eq. 5  L_EC = CE(Fcls(Fext(I_x)), FaceID_x) + CE(Fcls(Fext(Q_y)), FaceID_y): EC learns identities
  from real faces and keeps trying to recognise y in its surrogate Q_y (the paper labels Q_y with x,
  whose features it injects; here the identity code from the password takes the place of Fext(I_x)).
- eq. 6  L_rec = |I_y - En(I_y, no code)|_1 + w_revert |I_y - En(Q_y, Fext(I_y), no code)|_1.
- eq. 7  L_attr = BCE(D_attr(Q_y), A_target), masked where the dataset has no attribute labels.
- eq. 8  L_En = L_rec + L_attr, plus the terms that make Q_y a different identity: adversarial
  realism (section 4 minimax V(D, MP)), identity removal -log(1 - p_EC(y | Q_y)), a minimum pixel
  distance from I_y and password diversity (two passwords -> two surrogates), each with a flag.
- eq. 9-11 L_D = |softmax D_id(I_x) - softmax Fcls(I_x)|_1 + BCE(D_attr(I_x), A_x)
  + BCE(D_attr(Q_y), A_target) + LSGAN real/fake.
- eq. 12 L_reid = |I_y - De(C(Q_y), P)|_2^2 + |I_y - De(C(Q_y), P)|_1 where C is the codec channel
  (straight-through JPEG, resize round trip, quantisation) so restore survives compression.
- eq. 13 wrong password P^ (fully random, or 1-4 flipped bits) and wrong attributes:
  CE(Fcls(Fext(R_z)), FaceID_z) plus a minimum pixel distance of R_z from I_y.
- Section 4 mutual-information regularizers (optional, default 0): variational moment matching
  of Fext features, surrogate to original (lambda_1) and restored to original (lambda_2).
- Eigenface guide (optional, `--w-guide`, default 0), after the k-Same-Eigen family of de-identification
  the paper cites: |Q_y - ((1 - alpha) I_y + alpha T(P))|_1, where T(P) is a face that does not exist,
  the training faces' mean plus their first K principal components, each added with the sign of one
  password bit (+-scale standard deviations). It pulls the surrogate most of the way to a
  password-dependent synthetic face, which a face matcher needs (blending a crop less than about 0.7
  of the way to another face leaves it recognisable), while the decoder, which knows P, restores I_y.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from export.sdn_data import (
    AugmentSettings,
    CelebADataset,
    IdentityFolderDataset,
    InMemoryFaceDataset,
    NO_AUGMENT,
    bgr_to_tensor,
    build_offline_faces,
    jpeg_round_trip_bgr,
    tensor_to_bgr,
)
from streamd.nets.sdn import (
    CELEBA_DEFAULT_ATTRIBUTES,
    SecureDualNetwork,
    SdnConfig,
    build_sdn_from_config,
    count_parameters,
    l1_image_distance,
    load_generators,
    random_password_bits,
    save_generators,
    sdn_config,
    unique_parameters,
)

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
GENERATOR_WEIGHTS_NAME = "generators.pt"
BEST_GENERATOR_WEIGHTS_NAME = "generators-best.pt"
TOTAL_EMA_DECAY = 0.98


@dataclasses.dataclass
class LossWeights:
    lambda_en: float = 10.0
    lambda_de: float = 10.0
    revert: float = 0.0
    attribute: float = 1.0
    adversarial: float = 0.05
    identity_removal: float = 0.1
    surrogate_min_l1: float = 0.2
    surrogate_distance: float = 1.0
    diversity_min_l1: float = 0.08
    diversity: float = 0.5
    wrong_min_l1: float = 0.2
    wrong_distance: float = 1.0
    wrong_identity: float = 0.1
    mi_surrogate: float = 0.0
    mi_restore: float = 0.0
    guide: float = 0.0


@dataclasses.dataclass(frozen=True)
class GuideSettings:
    """The eigenface guide target T(P): K components, each +-scale standard deviations, blend alpha."""

    alpha: float = 0.85
    components: int = 32
    scale: float = 2.0
    luma: bool = False


class EigenfaceGuide(nn.Module):
    """T(P) = mean + sum_k (2 P_k - 1) * scale * sd_k * u_k over the first K principal components of a
    set of face crops, clamped to [-1, 1]: a password-dependent face that is none of the training faces."""

    def __init__(self, mean: torch.Tensor, directions: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("directions", directions)

    @classmethod
    def fit(cls, images: torch.Tensor, components: int, scale: float) -> "EigenfaceGuide":
        """images (N, 3, S, S) in [-1, 1]; directions are the unit components times scale * their sd."""
        if images.ndim != 4 or images.shape[0] < 2:
            raise ValueError("the guide needs at least two face crops (N, 3, S, S)")
        flat = images.float().flatten(1)
        mean = flat.mean(0)
        _, singular, vectors = torch.linalg.svd(flat - mean, full_matrices=False)
        count = min(components, vectors.shape[0])
        sd = singular[:count] / math.sqrt(flat.shape[0] - 1)
        directions = vectors[:count] * (scale * sd).unsqueeze(1)
        return cls(mean.view(images.shape[1:]), directions.view(count, *images.shape[1:]))

    def forward(self, password_bits: torch.Tensor) -> torch.Tensor:
        count = self.directions.shape[0]
        if password_bits.shape[1] < count:
            raise ValueError(f"the guide uses {count} password bits, got {password_bits.shape[1]}")
        signs = 2.0 * password_bits[:, :count].float() - 1.0
        return (self.mean + torch.einsum("nk,kchw->nchw", signs, self.directions)).clamp(-1.0, 1.0)


def guide_loss(surrogate: torch.Tensor, image: torch.Tensor, target: torch.Tensor, alpha: float,
               luma: bool = False) -> torch.Tensor:
    """|surrogate - ((1 - alpha) image + alpha target)|_1; with luma, on the channel means only."""
    goal = (1.0 - alpha) * image + alpha * target
    if luma:
        return (surrogate.float().mean(1) - goal.float().mean(1)).abs().mean()
    return (surrogate.float() - goal.float()).abs().mean()


@dataclasses.dataclass
class ChannelSettings:
    """The codec channel between encoder and decoder during training."""

    jpeg_probability: float = 0.5
    jpeg_quality_range: tuple[int, int] = (70, 95)
    resize_probability: float = 0.25
    resize_scale_range: tuple[float, float] = (0.6, 0.95)
    quantize: bool = True


def select_device(requested: str) -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def codec_channel(surrogate: torch.Tensor, settings: ChannelSettings, rng: random.Random) -> torch.Tensor:
    """Differentiable stand-in for storage: resize round trip, then straight-through JPEG/quantisation."""
    out = surrogate
    size = surrogate.shape[-1]
    if rng.random() < settings.resize_probability:
        small = max(8, int(round(size * rng.uniform(*settings.resize_scale_range))))
        out = F.interpolate(out, size=(small, small), mode="bilinear", align_corners=False, antialias=True)
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
    if rng.random() < settings.jpeg_probability:
        quality = rng.randint(*settings.jpeg_quality_range)
        with torch.no_grad():
            coded = torch.stack(
                [bgr_to_tensor(jpeg_round_trip_bgr(tensor_to_bgr(image), quality)) for image in out]
            ).to(out.device, out.dtype)
        out = out + (coded - out).detach()
    elif settings.quantize:
        with torch.no_grad():
            quantized = torch.round((out.clamp(-1, 1) + 1.0) * 127.5) / 127.5 - 1.0
        out = out + (quantized - out).detach()
    return out


def wrong_passwords(password_bits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Half the batch: fresh random passwords; the other half: the right one with 1-4 bits flipped."""
    batch, num_bits = password_bits.shape
    fresh = random_password_bits(batch, num_bits, generator).to(password_bits.device)
    flips = torch.zeros_like(password_bits)
    for row in range(batch):
        count = int(torch.randint(1, 5, (1,), generator=generator))
        flips[row, torch.randperm(num_bits, generator=generator)[:count].to(password_bits.device)] = 1.0
    near = (password_bits + flips) % 2.0
    use_fresh = (torch.arange(batch, device=password_bits.device) % 2 == 0).float().unsqueeze(1)
    wrong = use_fresh * fresh + (1 - use_fresh) * near
    same = (wrong == password_bits).all(dim=1)
    wrong[same, 0] = 1.0 - wrong[same, 0]
    return wrong


def wrong_attributes(attributes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip one to all attributes of each row (always at least one)."""
    batch, count = attributes.shape
    flips = (torch.rand(batch, count, generator=generator) < 0.5).float().to(attributes.device)
    flips[torch.arange(batch), torch.randint(0, count, (batch,), generator=generator)] = 1.0
    return (attributes + flips) % 2.0


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    per_element = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none") * mask
    return per_element.sum() / mask.sum().clamp(min=1.0)


def identity_ce(logits: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    if not bool((identity >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), identity, ignore_index=-1)


def identity_removal(logits: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """-log(1 - p(identity)): small when the classifier no longer sees the identity."""
    known = identity >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    probabilities = F.softmax(logits.float()[known], dim=1)
    p_true = probabilities.gather(1, identity[known].unsqueeze(1)).squeeze(1)
    return -torch.log((1.0 - p_true).clamp(min=1e-6)).mean()


def hinge_min_distance(a: torch.Tensor, b: torch.Tensor, margin: float) -> torch.Tensor:
    return F.relu(margin - l1_image_distance(a, b)).mean()


def pooled(features: torch.Tensor) -> torch.Tensor:
    return features.float().mean(dim=(2, 3))


class SdnTrainer:
    """Holds the networks, the three optimizers and one step of Algorithm 1."""

    def __init__(
        self,
        network: SecureDualNetwork,
        device: torch.device,
        weights: LossWeights,
        channel: ChannelSettings,
        generator_every: int,
        learning_rate: float,
        use_amp: bool,
        seed: int,
        guide: EigenfaceGuide | None = None,
        guide_settings: GuideSettings = GuideSettings(),
        generator_trains_fext: bool = False,
    ) -> None:
        """`generator_trains_fext`: L_total also updates Fext (the encoder graph's first half), not only L_EC."""
        if generator_every < 1:
            raise ValueError("generator_every must be >= 1")
        self.network = network.to(device)
        self.device = device
        self.weights = weights
        self.channel = channel
        self.generator_every = generator_every
        self.use_amp = use_amp and device.type == "cuda"
        if weights.guide and guide is None:
            raise ValueError("the guide loss weight is set but no eigenface guide was given")
        self.guide = guide.to(device) if guide is not None else None
        self.guide_settings = guide_settings
        betas = (0.5, 0.999)
        ec_params = list(network.feature_extractor.parameters()) + list(network.feature_classifier.parameters())
        generator_modules = [network.encoder, network.decoder]
        if generator_trains_fext:
            generator_modules.insert(0, network.feature_extractor)
        generator_params = unique_parameters(*generator_modules)
        self.frozen_in_generator_step = [network.feature_classifier, network.discriminator]
        if not generator_trains_fext:
            self.frozen_in_generator_step.insert(0, network.feature_extractor)
        self.optimizer_ec = torch.optim.Adam(ec_params, lr=learning_rate, betas=betas)
        self.optimizer_d = torch.optim.Adam(network.discriminator.parameters(), lr=learning_rate, betas=betas)
        self.optimizer_g = torch.optim.Adam(generator_params, lr=learning_rate, betas=betas)
        self.iteration = 0
        self.torch_rng = torch.Generator().manual_seed(seed)
        self.py_rng = random.Random(seed)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_amp)

    def step(self, batch_x: dict, batch_y: dict, batch_z: dict) -> dict[str, float]:
        """One iteration of Algorithm 1; returns the losses computed in it."""
        net = self.network
        config = net.config
        to = lambda batch: {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}  # noqa: E731
        x, y, z = to(batch_x), to(batch_y), to(batch_z)
        batch = y["image"].shape[0]
        password = random_password_bits(batch, config.password_bits, self.torch_rng).to(self.device)
        target_attributes = (torch.rand(batch, config.num_attributes, generator=self.torch_rng) < 0.5).float()
        target_attributes = target_attributes.to(self.device)
        logs: dict[str, float] = {}

        # Q_y for the EC and D updates (generators frozen here).
        with torch.no_grad(), self._autocast():
            surrogate_fixed = net.encoder(y["image"], net.feature_extractor(y["image"]), password, target_attributes)

        # EC: eq. (5).
        with self._autocast():
            loss_ec = identity_ce(net.classify(x["image"]), x["identity"]) + identity_ce(
                net.classify(surrogate_fixed), y["identity"]
            )
        self.optimizer_ec.zero_grad(set_to_none=True)
        loss_ec.backward()
        self.optimizer_ec.step()
        logs["ec"] = float(loss_ec.detach())

        # D: eqs. (9)-(11) and the adversarial value function of section 4.
        with self._autocast():
            patch_real, id_real, attr_real = net.discriminator(x["image"])
            patch_fake, _, attr_fake = net.discriminator(surrogate_fixed)
            with torch.no_grad():
                fcls_real = F.softmax(net.classify(x["image"]).float(), dim=1)
            loss_d_id = (F.softmax(id_real.float(), dim=1) - fcls_real).abs().sum(1).mean()
            loss_d_attr = masked_bce(attr_real, x["attributes"], x["attribute_mask"]) + masked_bce(
                attr_fake, target_attributes, torch.ones_like(target_attributes)
            )
            loss_d_adv = ((patch_real.float() - 1) ** 2).mean() + (patch_fake.float() ** 2).mean()
            loss_d = loss_d_id + loss_d_attr + loss_d_adv
        self.optimizer_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizer_d.step()
        logs.update(d=float(loss_d.detach()), d_adv=float(loss_d_adv.detach()))

        if (self.iteration + 1) % self.generator_every == 0:
            logs.update(self._generator_step(y, z, password, target_attributes))
        self.iteration += 1
        return logs

    def _generator_step(self, y: dict, z: dict, password: torch.Tensor, target_attributes: torch.Tensor) -> dict[str, float]:
        net = self.network
        w = self.weights
        image_y = y["image"]
        for module in self.frozen_in_generator_step:
            module.requires_grad_(False)
        try:
            with self._autocast():
                features_y = net.feature_extractor(image_y)
                surrogate = net.encoder(image_y, features_y, password, target_attributes)
                same_face = net.encoder(image_y, features_y, None, None)
                loss_rec = (image_y - same_face).abs().mean()
                if w.revert:
                    reverted = net.encoder(surrogate, features_y, None, None)
                    loss_rec = loss_rec + w.revert * (image_y - reverted).abs().mean()
                patch_fake, _, attr_fake = net.discriminator(surrogate)
                loss_attr = masked_bce(attr_fake, target_attributes, torch.ones_like(target_attributes))
                loss_adv = ((patch_fake.float() - 1) ** 2).mean()
                features_surrogate = net.feature_extractor(surrogate)
                loss_removal = identity_removal(net.feature_classifier(features_surrogate), y["identity"])
                loss_distance = hinge_min_distance(surrogate, image_y, w.surrogate_min_l1)
                other_password = random_password_bits(password.shape[0], password.shape[1], self.torch_rng)
                other_surrogate = net.encoder(image_y, features_y, other_password.to(self.device), target_attributes)
                loss_diversity = hinge_min_distance(surrogate, other_surrogate, w.diversity_min_l1)
                loss_mi_surrogate = F.mse_loss(pooled(features_surrogate), pooled(features_y).detach())
                loss_guide = surrogate.sum() * 0.0
                if self.guide is not None:
                    loss_guide = guide_loss(surrogate, image_y, self.guide(password), self.guide_settings.alpha,
                                            self.guide_settings.luma)
                loss_en = (
                    loss_rec
                    + w.attribute * loss_attr
                    + w.adversarial * loss_adv
                    + w.identity_removal * loss_removal
                    + w.surrogate_distance * loss_distance
                    + w.diversity * loss_diversity
                    + w.mi_surrogate * loss_mi_surrogate
                    + w.guide * loss_guide
                )

                received = codec_channel(surrogate.float(), self.channel, self.py_rng)
                restored = net.decoder(received, password, target_attributes)
                loss_reid = F.mse_loss(restored.float(), image_y) + (restored.float() - image_y).abs().mean()
                bad_password = wrong_passwords(password, self.torch_rng)
                bad_attributes = wrong_attributes(target_attributes, self.torch_rng)
                restored_wrong_password = net.decoder(received, bad_password, target_attributes)
                restored_wrong_attributes = net.decoder(received, password, bad_attributes)
                loss_wrong = 0.5 * (
                    hinge_min_distance(restored_wrong_password, image_y, w.wrong_min_l1)
                    + hinge_min_distance(restored_wrong_attributes, image_y, w.wrong_min_l1)
                )
                loss_wrong_identity = identity_ce(net.classify(restored_wrong_password), z["identity"])
                loss_mi_restore = F.mse_loss(pooled(net.feature_extractor(restored)), pooled(features_y).detach())
                loss_de = (
                    loss_reid
                    + w.wrong_distance * loss_wrong
                    + w.wrong_identity * loss_wrong_identity
                    + w.mi_restore * loss_mi_restore
                )
                loss_total = w.lambda_en * loss_en + w.lambda_de * loss_de
            self.optimizer_g.zero_grad(set_to_none=True)
            loss_total.backward()
            self.optimizer_g.step()
        finally:
            for module in self.frozen_in_generator_step:
                module.requires_grad_(True)
        named = {
            "total": loss_total, "en": loss_en, "de": loss_de, "rec": loss_rec, "attr": loss_attr,
            "reid": loss_reid, "wrong": loss_wrong, "removal": loss_removal, "diversity": loss_diversity,
            "guide": loss_guide,
        }
        return {name: float(value.detach()) for name, value in named.items()}

    def state_dict(self) -> dict:
        return {
            "config": self.network.config.to_dict(),
            "network": self.network.state_dict(),
            "optimizer_ec": self.optimizer_ec.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "iteration": self.iteration,
            "torch_rng": self.torch_rng.get_state(),
            "py_rng": self.py_rng.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.network.load_state_dict(state["network"], strict=True)
        self.optimizer_ec.load_state_dict(state["optimizer_ec"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.iteration = int(state["iteration"])
        self.torch_rng.set_state(state["torch_rng"])
        self.py_rng.setstate(_as_random_state(state["py_rng"]))


def _as_random_state(value: object) -> tuple:
    """random.Random state survives weights_only loading as nested lists; turn it back into tuples."""
    version, internal, gauss = value  # type: ignore[misc]
    return (int(version), tuple(int(v) for v in internal), gauss)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


@torch.no_grad()
def evaluate_held_out(network: SecureDualNetwork, faces_bgr: list[np.ndarray], jpeg_quality: int, seed: int) -> dict[str, float]:
    """PSNR of restore after JPEG (right password / wrong password) and of surrogate vs original."""
    from skimage.metrics import structural_similarity

    network.eval()
    device = next(network.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    config = network.config
    images = torch.stack([bgr_to_tensor(face) for face in faces_bgr]).to(device)
    password = random_password_bits(len(faces_bgr), config.password_bits, generator).to(device)
    attributes = (torch.rand(len(faces_bgr), config.num_attributes, generator=generator) < 0.5).float().to(device)
    surrogate = network.generators.anonymize(images, password, attributes)
    received = torch.stack(
        [bgr_to_tensor(jpeg_round_trip_bgr(tensor_to_bgr(s), jpeg_quality)) for s in surrogate]
    ).to(device)
    restored = network.generators.restore(received, password, attributes)
    restored_wrong = network.generators.restore(received, wrong_passwords(password, generator), attributes)
    metrics: dict[str, list[float]] = {k: [] for k in ("psnr_restore", "ssim_restore", "psnr_wrong", "psnr_surrogate")}
    for index, original in enumerate(faces_bgr):
        right = tensor_to_bgr(restored[index])
        metrics["psnr_restore"].append(psnr(original, right))
        metrics["ssim_restore"].append(_ssim(original, right, structural_similarity))
        metrics["psnr_wrong"].append(psnr(original, tensor_to_bgr(restored_wrong[index])))
        metrics["psnr_surrogate"].append(psnr(original, tensor_to_bgr(surrogate[index])))
    network.train()
    return {key: float(np.mean(values)) for key, values in metrics.items()}


def _ssim(a: np.ndarray, b: np.ndarray, structural_similarity) -> float:
    """SSIM with a Gaussian 11x11 window, sigma 1.5 (the project's fixed setting)."""
    return float(
        structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=255)
    )


def build_datasets(args: argparse.Namespace, config_size: int, attribute_names: tuple[str, ...]) -> tuple[Dataset, int, list[np.ndarray]]:
    """(training dataset, number of identities, held-out aligned BGR faces)."""
    augment = AugmentSettings()
    if args.data == "offline":
        train_records, held_out = build_offline_faces(config_size, len(attribute_names))
        dataset = InMemoryFaceDataset(train_records, augment, length=args.epoch_size, seed=args.seed)
        return dataset, len(train_records), [record.bgr for record in held_out]
    if args.data_root is None:
        raise SystemExit(f"--data {args.data} needs --data-root")
    if args.data == "celeba":
        train = CelebADataset(args.data_root, config_size, attribute_names, split=0, augment=augment, seed=args.seed)
        held = CelebADataset(args.data_root, config_size, attribute_names, split=2, augment=NO_AUGMENT, seed=args.seed)
        held_faces = [tensor_to_bgr(held[i]["image"]) for i in range(min(64, len(held)))]
        return train, train.num_identities, held_faces
    if args.data == "folders":
        dataset = IdentityFolderDataset(args.data_root, config_size, len(attribute_names), augment, args.seed)
        return dataset, dataset.num_identities, []
    raise SystemExit(f"unknown --data {args.data}")


def infinite_batches(loader: DataLoader):
    while True:
        yield from loader


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", help="named SDN size: tiny, small, paper")
    parser.add_argument("--data", choices=("offline", "celeba", "folders"), default="offline")
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--attributes", default=",".join(CELEBA_DEFAULT_ATTRIBUTES), help="comma-separated names")
    parser.add_argument("--password-bits", type=int, help="override the size's password length (>= 32)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, log, weights)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--max-minutes", type=float, default=0.0, help="stop (and save) after this wall time")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--generator-every", type=int, default=10, help="En/De update period (paper: 10)")
    parser.add_argument("--epoch-size", type=int, default=20_000, help="samples per epoch of the offline set")
    parser.add_argument("--checkpoint-every", type=int, default=500,
                        help="save checkpoint.pt and generators.pt; generators-best.pt keeps the lowest L_total EMA")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--no-amp", action="store_true", help="disable bfloat16 autocast on CUDA")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    for field in dataclasses.fields(LossWeights):
        parser.add_argument(f"--w-{field.name.replace('_', '-')}", type=float, default=field.default, dest=f"w_{field.name}")
    parser.add_argument("--guide-alpha", type=float, default=GuideSettings.alpha,
                        help="eigenface guide: how far the surrogate is pulled toward T(P) (with --w-guide)")
    parser.add_argument("--guide-components", type=int, default=GuideSettings.components,
                        help="eigenface guide: principal components, one password bit each")
    parser.add_argument("--guide-scale", type=float, default=GuideSettings.scale,
                        help="eigenface guide: standard deviations added along each component")
    parser.add_argument("--guide-luma", action="store_true", help="eigenface guide on the channel mean only")
    parser.add_argument("--guide-faces", type=int, default=2000, help="crops the guide's components are fitted on")
    parser.add_argument("--generator-trains-fext", action="store_true",
                        help="L_total updates Fext too (default: only L_EC trains Fext)")
    parser.add_argument("--init-generators", type=Path,
                        help="start Fext, En and De from these generator weights (same configuration)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def guide_face_crops(dataset: Dataset, max_faces: int) -> torch.Tensor:
    """Crops to fit the eigenface guide on: the offline set's records unaugmented, else the first samples."""
    records = getattr(dataset, "records", None)
    if records is not None:
        return torch.stack([bgr_to_tensor(record.bgr) for record in records[:max_faces]])
    return torch.stack([dataset[index]["image"] for index in range(min(max_faces, len(dataset)))])


def save_checkpoint(trainer: SdnTrainer, out: Path) -> None:
    temporary = out / (CHECKPOINT_NAME + ".tmp")
    torch.save(trainer.state_dict(), temporary)
    temporary.replace(out / CHECKPOINT_NAME)
    save_generators(trainer.network.generators, out / GENERATOR_WEIGHTS_NAME)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    attribute_names = tuple(name for name in args.attributes.split(",") if name)
    overrides: dict[str, object] = {}
    if args.password_bits is not None:
        overrides["password_bits"] = args.password_bits
    probe = sdn_config(args.size, attribute_names=attribute_names, **overrides)
    dataset, num_identities, held_out = build_datasets(args, probe.resolution, attribute_names)
    config = dataclasses.replace(probe, num_identities=num_identities)

    device = select_device(args.device)
    weights = LossWeights(**{f.name: getattr(args, f"w_{f.name}") for f in dataclasses.fields(LossWeights)})
    guide_settings = GuideSettings(args.guide_alpha, args.guide_components, args.guide_scale, args.guide_luma)
    guide = None
    if weights.guide:
        guide = EigenfaceGuide.fit(guide_face_crops(dataset, args.guide_faces), guide_settings.components,
                                   guide_settings.scale)
        logger.info("eigenface guide: %d components, alpha %.2f", guide.directions.shape[0], guide_settings.alpha)
    network = build_sdn_from_config(config)
    if args.init_generators is not None:
        network.generators.load_state_dict(load_generators(args.init_generators).state_dict(), strict=True)
        logger.info("generators start from %s", args.init_generators)
    trainer = SdnTrainer(
        network, device, weights, ChannelSettings(), args.generator_every,
        args.learning_rate, use_amp=not args.no_amp, seed=args.seed, guide=guide, guide_settings=guide_settings,
        generator_trains_fext=args.generator_trains_fext,
    )
    checkpoint_path = args.out / CHECKPOINT_NAME
    if args.resume:
        if not checkpoint_path.exists():
            raise SystemExit(f"--resume: {checkpoint_path} does not exist")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if SdnConfig.from_dict(state["config"]) != config:
            raise SystemExit("--resume: the checkpoint was trained with a different configuration")
        trainer.load_state_dict(state)
        logger.info("resumed at iteration %d", trainer.iteration)
    logger.info("device %s, generators %d parameters, all %d", device, count_parameters(trainer.network.generators),
                count_parameters(trainer.network))
    (args.out / "config.json").write_text(json.dumps({"sdn": config.to_dict(), "weights": dataclasses.asdict(weights),
                                                      "guide": dataclasses.asdict(guide_settings),
                                                      "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))

    loader = DataLoader(dataset, batch_size=3 * args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers, pin_memory=device.type == "cuda")
    batches = infinite_batches(loader)
    from tqdm import tqdm

    progress = tqdm(total=args.iterations, initial=trainer.iteration, disable=args.no_progress, dynamic_ncols=True)
    started = time.monotonic()
    metrics_log = (args.out / "metrics.jsonl").open("a")
    last_logs: dict[str, float] = {}
    total_ema: float | None = None
    best_total_ema = float("inf")
    while trainer.iteration < args.iterations:
        batch = next(batches)
        parts = [{k: v[i * args.batch_size:(i + 1) * args.batch_size] for k, v in batch.items()} for i in range(3)]
        logs = trainer.step(*parts)
        if "total" in logs:
            last_logs = logs
            previous = logs["total"] if total_ema is None else total_ema
            total_ema = TOTAL_EMA_DECAY * previous + (1 - TOTAL_EMA_DECAY) * logs["total"]
        progress.update(1)
        progress.set_postfix({k: f"{v:.3f}" for k, v in last_logs.items() if k in ("total", "reid", "rec", "wrong")})
        iteration = trainer.iteration
        out_of_time = args.max_minutes > 0 and (time.monotonic() - started) / 60.0 >= args.max_minutes
        if iteration % args.eval_every == 0 and held_out:
            evaluation = evaluate_held_out(trainer.network, held_out, jpeg_quality=90, seed=args.seed)
            record = {"iteration": iteration, "minutes": (time.monotonic() - started) / 60.0, **last_logs, **evaluation}
            metrics_log.write(json.dumps(record) + "\n")
            metrics_log.flush()
            logger.info("iteration %d: %s", iteration, {k: round(v, 3) for k, v in record.items()})
        if iteration % args.checkpoint_every == 0 or out_of_time or iteration >= args.iterations:
            save_checkpoint(trainer, args.out)
            if total_ema is not None and total_ema < best_total_ema:
                # Chosen on the training objective L_total only, never on held-out faces.
                best_total_ema = total_ema
                save_generators(trainer.network.generators, args.out / BEST_GENERATOR_WEIGHTS_NAME)
                logger.info("iteration %d: lowest training L_total so far (EMA %.4f)", iteration, total_ema)
        if out_of_time:
            logger.info("stopping after %.1f minutes at iteration %d", args.max_minutes, iteration)
            break
    progress.close()
    save_checkpoint(trainer, args.out)
    metrics_log.close()
    print(f"trained to iteration {trainer.iteration}; weights in {args.out / GENERATOR_WEIGHTS_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
