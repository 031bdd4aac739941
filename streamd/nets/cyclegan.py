"""CycleGAN for reversible pixelation: pure nn.Modules, a builder with named sizes, and the losses.

Paper: Xu, Chang, Nguyen, Echizen, "Reversible anonymization for privacy of facial biometrics via
cyclic learning", EURASIP J. on Info. Security 2024, section 4. The parts:

- G (De-ID): face -> face pixelated over the face region; F (Re-ID): pixelated face -> face.
  Both are ResNet generators: a 7x7 stride-1 convolution (c7s1), two stride-2 convolutions,
  `num_residual_blocks` residual blocks (the paper: 9), two stride-2 transposed convolutions and a
  7x7 convolution to RGB with tanh.
- D_X and D_Y: 70x70 PatchGAN discriminators (three stride-2 4x4 convolutions, one stride-1, then a
  1-channel patch map).
- Losses: LSGAN adversarial terms for X -> Y and Y -> X (equations 2-3 with least squares in place of
  the log terms, as the paper trains with LSGAN) and the L1 cycle-consistency loss (equation 4);
  equation 1 is their sum with the cycle term weighted by `cycle_weight`.

Choices the paper leaves open:
- Instance normalization without affine parameters in generators and discriminators (CycleGAN's
  default); the first discriminator layer has none.
- `global_skip`: the generator predicts a residual added to its input (then clamped to [-1, 1]), so a
  small network trained for minutes on a CPU starts from the identity mapping; the "paper" size keeps
  the plain CycleGAN output.
- `g_skip_blocks_per_side` (0: off): G's residual is added to its input pixelated over the canonical face
  region with blocks of min(M, N) / g_skip_blocks_per_side (`FacePixelation`, an exact block mean, the
  same rule as the target domain) instead of to its input, and G's last convolution starts at zero. G
  then starts as the target pixelation and learns only what it adds on top of it (what lets F restore
  the face); F keeps the plain skip. Not in the paper: a CPU budget of minutes cannot teach a small G
  to pixelate from scratch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from streamd.nets.blocks import LEAKY_SLOPE

GENERATOR_NAMES = ("g", "f")


@dataclasses.dataclass(frozen=True)
class CycleGanConfig:
    """Hyperparameters of one CycleGAN size."""

    size_name: str
    resolution: int
    generator_width: int
    num_residual_blocks: int
    discriminator_width: int
    discriminator_layers: int = 3
    global_skip: bool = False
    g_skip_blocks_per_side: int = 0

    def __post_init__(self) -> None:
        if self.resolution % 4 != 0 or self.resolution < 32:
            raise ValueError(f"resolution must be a multiple of 4 and >= 32, got {self.resolution}")
        if self.generator_width < 4 or self.discriminator_width < 4:
            raise ValueError("generator_width and discriminator_width must be >= 4")
        if self.num_residual_blocks < 1 or self.discriminator_layers < 1:
            raise ValueError("num_residual_blocks and discriminator_layers must be >= 1")
        if self.g_skip_blocks_per_side < 0:
            raise ValueError(f"g_skip_blocks_per_side must be >= 0, got {self.g_skip_blocks_per_side}")
        if self.g_skip_blocks_per_side and not self.global_skip:
            raise ValueError("g_skip_blocks_per_side needs global_skip")

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "CycleGanConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown CycleGanConfig keys: {sorted(unknown)}")
        return cls(**data)  # type: ignore[arg-type]


CYCLEGAN_SIZES: dict[str, dict[str, object]] = {
    # CPU training in minutes and live CPU inference on small crops.
    "tiny": dict(resolution=64, generator_width=16, num_residual_blocks=3, discriminator_width=16, global_skip=True),
    # Live CPU/GPU use at 128x128 crops.
    "small": dict(resolution=128, generator_width=32, num_residual_blocks=6, discriminator_width=32, global_skip=True),
    # The paper's generators (9 residual blocks, 64 base channels) and 70x70 PatchGAN.
    "paper": dict(resolution=128, generator_width=64, num_residual_blocks=9, discriminator_width=64),
}


def cyclegan_config(size: str, **overrides: object) -> CycleGanConfig:
    """The configuration of a named size, with optional overrides of any field."""
    if size not in CYCLEGAN_SIZES:
        raise ValueError(f"unknown CycleGAN size {size!r}; choose one of {sorted(CYCLEGAN_SIZES)}")
    values: dict[str, object] = dict(CYCLEGAN_SIZES[size])
    values.update(overrides)
    return CycleGanConfig(size_name=size, **values)  # type: ignore[arg-type]


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with instance norm and an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _block_mean_matrix(length: int, block: int) -> torch.Tensor:
    """(length, length) matrix whose product with a vector replaces each run of `block` values (the last
    run shorter) by its mean."""
    matrix = torch.zeros(length, length)
    for start in range(0, length, block):
        end = min(start + block, length)
        matrix[start:end, start:end] = 1.0 / (end - start)
    return matrix


class FacePixelation(nn.Module):
    """The target pixelation of `streamd.anonymize.pixelate` as a fixed layer (without the rounding to
    8 bits): block means over the canonical face region of an (N, C, S, S) crop, the rest unchanged."""

    def __init__(self, resolution: int, blocks_per_side: int) -> None:
        super().__init__()
        from streamd.anonymize.pixelate import canonical_face_box, pixel_block_size

        self.box = canonical_face_box(resolution)
        x0, y0, x1, y1 = self.box
        block = pixel_block_size((x1 - x0, y1 - y0), blocks_per_side)
        self.register_buffer("rows", _block_mean_matrix(y1 - y0, block), persistent=False)
        self.register_buffer("columns", _block_mean_matrix(x1 - x0, block).t().contiguous(), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x0, y0, x1, y1 = self.box
        pixelated = torch.matmul(torch.matmul(self.rows, image[:, :, y0:y1, x0:x1]), self.columns)
        middle = torch.cat([image[:, :, y0:y1, :x0], pixelated, image[:, :, y0:y1, x1:]], dim=3)
        return torch.cat([image[:, :, :y0], middle, image[:, :, y1:]], dim=2)


class ResnetGenerator(nn.Module):
    """c7s1-w, d2w, d4w, R4w x N, u2w, uw, c7s1-3: image (N, 3, S, S) in [-1, 1] -> same shape.

    With `pixelated_skip_blocks` > 0 (and the global skip) the residual is added to the input pixelated
    over the face region (`FacePixelation`) and the last convolution starts at zero."""

    def __init__(self, config: CycleGanConfig, pixelated_skip_blocks: int = 0) -> None:
        super().__init__()
        w = config.generator_width
        blocks = config.num_residual_blocks
        self.global_skip = config.global_skip
        self.skip = FacePixelation(config.resolution, pixelated_skip_blocks) if pixelated_skip_blocks else None
        self.model = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, w, kernel_size=7),
            _norm(w),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, kernel_size=3, stride=2, padding=1),
            _norm(2 * w),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 4 * w, kernel_size=3, stride=2, padding=1),
            _norm(4 * w),
            nn.ReLU(inplace=True),
            *[ResnetBlock(4 * w) for _ in range(blocks)],
            nn.ConvTranspose2d(4 * w, 2 * w, kernel_size=3, stride=2, padding=1, output_padding=1),
            _norm(2 * w),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * w, w, kernel_size=3, stride=2, padding=1, output_padding=1),
            _norm(w),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(w, 3, kernel_size=7),
        )

        if self.skip is not None:
            last = self.model[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.model(image)
        if self.global_skip:
            base = self.skip(image) if self.skip is not None else image
            return torch.clamp(base + out, -1.0, 1.0)
        return torch.tanh(out)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (with 3 layers): image -> patch scores (N, 1, H', W'), unbounded (LSGAN/WGAN)."""

    def __init__(self, config: CycleGanConfig) -> None:
        super().__init__()
        w = config.discriminator_width
        layers: list[nn.Module] = [nn.Conv2d(3, w, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(LEAKY_SLOPE, True)]
        channels = w
        for index in range(1, config.discriminator_layers + 1):
            stride = 2 if index < config.discriminator_layers else 1
            out_channels = w * min(2**index, 8)
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size=4, stride=stride, padding=1),
                _norm(out_channels),
                nn.LeakyReLU(LEAKY_SLOPE, True),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


class CycleGanGenerators(nn.Module):
    """What inference needs: G (de-identify: face -> pixelated) and F (re-identify: pixelated -> face)."""

    def __init__(self, config: CycleGanConfig) -> None:
        super().__init__()
        self.config = config
        self.g = ResnetGenerator(config, config.g_skip_blocks_per_side)
        self.f = ResnetGenerator(config)

    def deidentify(self, crop: torch.Tensor) -> torch.Tensor:
        """crop (N, 3, S, S) RGB in [-1, 1] -> pixelated-looking crop (N, 3, S, S) in [-1, 1]."""
        return self.g(crop)

    def reidentify(self, pixelated: torch.Tensor) -> torch.Tensor:
        """pixelated crop (N, 3, S, S) RGB in [-1, 1] -> restored face (N, 3, S, S) in [-1, 1]."""
        return self.f(pixelated)


class CycleGan(nn.Module):
    """Everything training needs: G, F, D_X (judges faces) and D_Y (judges pixelated faces)."""

    def __init__(self, config: CycleGanConfig) -> None:
        super().__init__()
        self.config = config
        self.generators = CycleGanGenerators(config)
        self.discriminator_x = PatchDiscriminator(config)
        self.discriminator_y = PatchDiscriminator(config)

    @property
    def g(self) -> ResnetGenerator:
        return self.generators.g

    @property
    def f(self) -> ResnetGenerator:
        return self.generators.f


def build_cyclegan(size: str, **overrides: object) -> CycleGan:
    return CycleGan(cyclegan_config(size, **overrides))


# --- losses (equations 1-4) -------------------------------------------------------------------------


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Least-squares form of eq. (2)/(3) for the discriminator: real -> 1, generated -> 0."""
    return 0.5 * (((real_scores.float() - 1.0) ** 2).mean() + (fake_scores.float() ** 2).mean())


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Least-squares form of eq. (2)/(3) for the generator: generated -> 1."""
    return ((fake_scores.float() - 1.0) ** 2).mean()


def cycle_consistency_loss(
    x: torch.Tensor, x_cycled: torch.Tensor, y: torch.Tensor, y_cycled: torch.Tensor
) -> torch.Tensor:
    """Eq. (4): |F(G(x)) - x|_1 + |G(F(y)) - y|_1 (pixel means)."""
    return (x_cycled.float() - x.float()).abs().mean() + (y_cycled.float() - y.float()).abs().mean()


def generator_objective(
    fake_y_scores: torch.Tensor,
    fake_x_scores: torch.Tensor,
    cycle_loss: torch.Tensor,
    cycle_weight: float,
) -> torch.Tensor:
    """Eq. (1) as the generators minimise it: LGAN(X->Y) + LGAN(Y->X) + cycle_weight * L_cyc."""
    return lsgan_generator_loss(fake_y_scores) + lsgan_generator_loss(fake_x_scores) + cycle_weight * cycle_loss


def wgan_gp_discriminator_loss(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, gp_weight: float = 10.0
) -> torch.Tensor:
    """WGAN-GP critic loss: E[D(fake)] - E[D(real)] + gp_weight * (|grad D(interp)|_2 - 1)^2."""
    fake = fake.detach()
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    interpolated = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = discriminator(interpolated)
    (gradients,) = torch.autograd.grad(scores.sum(), interpolated, create_graph=True)
    penalty = ((gradients.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()
    return discriminator(fake).mean() - discriminator(real).mean() + gp_weight * penalty


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.float().mean()


# --- weights -----------------------------------------------------------------------------------------


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_cyclegan_generators(generators: CycleGanGenerators, path: Path) -> None:
    torch.save({"config": generators.config.to_dict(), "state_dict": generators.state_dict()}, path)


def load_cyclegan_generators(path: Path) -> CycleGanGenerators:
    """Generators saved by `save_cyclegan_generators` (or a training run), loaded strictly on the CPU."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = CycleGanConfig.from_dict(state["config"])
    generators = CycleGanGenerators(config)
    generators.load_state_dict(state["state_dict"], strict=True)
    generators.eval()
    return generators
