"""The Secure Dual Network (SDN): pure nn.Modules and a builder with named sizes.

Paper: Pan, Chen, Wu, "Secure Dual Network for Reversible Facial Image Anonymization Through the
Latent Space Manipulation", Electronics 2024, 13(22), 4398, sections 3.1-3.2 and Figure 2. The parts:

- Feature Extractor Fext (image -> latent feature map) and Feature Classifier Fcls (feature map ->
  identity logits); together the paper's EC.
- Identity Network: password bits and attribute vector -> identity code, a latent map of the same
  shape as Fext's output, added element-wise to the latent.
- Erasing Network: latent (+ identity code) -> de-identified face.
- Reveal Network: de-identified face (+ identity code) -> restored face.
- Encoder En = Identity Network + Erasing Network; Decoder De = Identity Network + Reveal Network.
  Figure 2 shows one Identity Network in both; by default (`shared_identity_network`) encoder and
  decoder share its weights, so the decoder sees exactly the code the encoder added.
- Discriminator D: PatchGAN with an identity head (compared with Fcls) and an attribute head.

How this reads the paper where it leaves a choice (the shipped graphs take only crop, password bits and
attributes, DESIGN.md section 6):
- The encoder's latent is Fext of the face being anonymized; the identity code from (password,
  attributes) plays the part of the foreign identity feature Fext(I_x) of the paper's training
  equations. Without an identity code (`password_bits=None`) the encoder is the paper's
  "same face feature" path S_y and is trained to give its input back.
- Erasing and Reveal networks predict a residual added to their input image, so background and pose
  carry through and the decoder starts from the surrogate.
- Password bits enter the networks as +-1 (bit b -> 2b - 1); attributes as values in [0, 1].
- No normalization layers in the generators: the decoder must restore absolute intensities.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from streamd.nets.blocks import LEAKY_SLOPE, ResidualBlock, downsampler, upsampler

MIN_PASSWORD_BITS = 32

CELEBA_DEFAULT_ATTRIBUTES: tuple[str, ...] = (
    "Male",
    "Young",
    "Smiling",
    "Eyeglasses",
    "Black_Hair",
    "Blond_Hair",
    "Brown_Hair",
    "Gray_Hair",
)


@dataclasses.dataclass(frozen=True)
class SdnConfig:
    """Hyperparameters of one SDN size."""

    size_name: str
    resolution: int
    width: int
    num_residual_blocks: int
    password_bits: int
    attribute_names: tuple[str, ...]
    identity_hidden: int
    identity_grid: int
    num_identities: int
    shared_identity_network: bool = True

    def __post_init__(self) -> None:
        if self.password_bits < MIN_PASSWORD_BITS:
            raise ValueError(f"password_bits must be >= {MIN_PASSWORD_BITS}, got {self.password_bits}")
        if self.resolution % 8 != 0 or self.resolution < 32:
            raise ValueError(f"resolution must be a multiple of 8 and >= 32, got {self.resolution}")
        if (self.resolution // 4) % self.identity_grid != 0:
            raise ValueError(
                f"identity_grid {self.identity_grid} must divide the latent size {self.resolution // 4}"
            )
        if not self.attribute_names:
            raise ValueError("attribute_names must name at least one attribute")
        if len(set(self.attribute_names)) != len(self.attribute_names):
            raise ValueError(f"attribute_names has duplicates: {self.attribute_names}")
        if self.width < 4 or self.num_identities < 1 or self.num_residual_blocks < 1:
            raise ValueError("width >= 4, num_identities >= 1 and num_residual_blocks >= 1 are required")

    @property
    def latent_channels(self) -> int:
        return 4 * self.width

    @property
    def latent_size(self) -> int:
        return self.resolution // 4

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["attribute_names"] = list(self.attribute_names)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "SdnConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown SdnConfig keys: {sorted(unknown)}")
        values = dict(data)
        values["attribute_names"] = tuple(values["attribute_names"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


SDN_SIZES: dict[str, dict[str, object]] = {
    # CPU training and live CPU inference on small crops.
    "tiny": dict(resolution=64, width=16, num_residual_blocks=2, password_bits=32, identity_hidden=128, identity_grid=4),
    # Live CPU/GPU use at the paper's crop size.
    "small": dict(resolution=128, width=32, num_residual_blocks=4, password_bits=64, identity_hidden=256, identity_grid=4),
    # GPU training at the paper's crop size with wider layers.
    "paper": dict(resolution=128, width=64, num_residual_blocks=6, password_bits=128, identity_hidden=512, identity_grid=8),
}


def sdn_config(
    size: str,
    *,
    attribute_names: Sequence[str] = CELEBA_DEFAULT_ATTRIBUTES,
    num_identities: int = 1,
    **overrides: object,
) -> SdnConfig:
    """The configuration of a named size, with optional overrides of any field."""
    if size not in SDN_SIZES:
        raise ValueError(f"unknown SDN size {size!r}; choose one of {sorted(SDN_SIZES)}")
    values: dict[str, object] = dict(SDN_SIZES[size])
    values.update(overrides)
    return SdnConfig(
        size_name=size, attribute_names=tuple(attribute_names), num_identities=num_identities, **values  # type: ignore[arg-type]
    )


def _check_condition(config: SdnConfig, password_bits: torch.Tensor, attributes: torch.Tensor) -> None:
    if torch.jit.is_tracing():
        return  # shapes are symbolic while exporting; the exported graph checks them itself
    if password_bits.ndim != 2 or password_bits.shape[1] != config.password_bits:
        raise ValueError(f"password_bits must be (N, {config.password_bits}), got {tuple(password_bits.shape)}")
    if attributes.ndim != 2 or attributes.shape[1] != config.num_attributes:
        raise ValueError(f"attributes must be (N, {config.num_attributes}), got {tuple(attributes.shape)}")


class FeatureExtractor(nn.Module):
    """Fext: image in [-1, 1] (N, 3, S, S) -> latent feature map (N, 4w, S/4, S/4)."""

    def __init__(self, config: SdnConfig) -> None:
        super().__init__()
        self.down = downsampler(config.width, config.latent_channels)
        self.blocks = nn.Sequential(*[ResidualBlock(config.latent_channels) for _ in range(config.num_residual_blocks)])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.down(image))


class FeatureClassifier(nn.Module):
    """Fcls: latent feature map -> identity logits (N, num_identities)."""

    def __init__(self, config: SdnConfig) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv2d(config.latent_channels, config.latent_channels, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(config.latent_channels, config.num_identities),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


class IdentityNetwork(nn.Module):
    """Password bits (N, P) in {0, 1} and attributes (N, A) in [0, 1] -> identity code (N, 4w, S/4, S/4)."""

    def __init__(self, config: SdnConfig) -> None:
        super().__init__()
        self.config = config
        grid = config.identity_grid
        self.mlp = nn.Sequential(
            nn.Linear(config.password_bits + config.num_attributes, config.identity_hidden),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Linear(config.identity_hidden, config.identity_hidden),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Linear(config.identity_hidden, config.latent_channels * grid * grid),
        )
        self.refine = nn.Sequential(
            nn.Upsample(scale_factor=config.latent_size // grid, mode="bilinear", align_corners=False),
            nn.Conv2d(config.latent_channels, config.latent_channels, kernel_size=3, padding=1),
        )

    def forward(self, password_bits: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        _check_condition(self.config, password_bits, attributes)
        signed_bits = 2.0 * password_bits - 1.0
        code = self.mlp(torch.cat([signed_bits, attributes], dim=1))
        grid = self.config.identity_grid
        return self.refine(code.view(-1, self.config.latent_channels, grid, grid))


class ErasingNetwork(nn.Module):
    """Latent (+ identity code) -> residual that turns the input face into the de-identified face."""

    def __init__(self, config: SdnConfig) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualBlock(config.latent_channels) for _ in range(config.num_residual_blocks)])
        self.up = upsampler(config.width, config.latent_channels)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.up(self.blocks(latent))


class RevealNetwork(nn.Module):
    """De-identified face + identity code -> residual that turns it into the restored face."""

    def __init__(self, config: SdnConfig) -> None:
        super().__init__()
        self.down = downsampler(config.width, config.latent_channels)
        self.blocks = nn.Sequential(*[ResidualBlock(config.latent_channels) for _ in range(config.num_residual_blocks)])
        self.up = upsampler(config.width, config.latent_channels)

    def forward(self, surrogate: torch.Tensor, identity_code: torch.Tensor) -> torch.Tensor:
        return self.up(self.blocks(self.down(surrogate) + identity_code))


class Encoder(nn.Module):
    """En = Identity Network + Erasing Network: (face, Fext(face), password, attributes) -> surrogate."""

    def __init__(self, config: SdnConfig) -> None:
        super().__init__()
        self.identity_network = IdentityNetwork(config)
        self.erasing_network = ErasingNetwork(config)

    def forward(
        self,
        image: torch.Tensor,
        features: torch.Tensor,
        password_bits: torch.Tensor | None,
        attributes: torch.Tensor | None,
        latent_shift: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`password_bits=None` (and `attributes=None`) is the identity-code-free path S_y.

        `latent_shift` (N, 4w, S/4, S/4) is added to the latent before the Erasing Network: the
        manipulation of the paper's section 6.2 (Figure 12, i = De(f + v))."""
        latent = self.latent(features, password_bits, attributes)
        if latent_shift is not None:
            latent = latent + latent_shift
        return torch.clamp(image + self.erasing_network(latent), -1.0, 1.0)

    def latent(self, features: torch.Tensor, password_bits: torch.Tensor | None,
               attributes: torch.Tensor | None) -> torch.Tensor:
        """The bottleneck the Erasing Network reads: Fext(face) + identity code."""
        if (password_bits is None) != (attributes is None):
            raise ValueError("give both password_bits and attributes, or neither")
        if password_bits is not None and attributes is not None:
            return features + self.identity_network(password_bits, attributes)
        return features


class Decoder(nn.Module):
    """De = Identity Network + Reveal Network: (surrogate, password, attributes) -> restored face."""

    def __init__(self, config: SdnConfig) -> None:
        super().__init__()
        self.identity_network = IdentityNetwork(config)
        self.reveal_network = RevealNetwork(config)

    def forward(self, surrogate: torch.Tensor, password_bits: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        code = self.identity_network(password_bits, attributes)
        return torch.clamp(surrogate + self.reveal_network(surrogate, code), -1.0, 1.0)


class Discriminator(nn.Module):
    """PatchGAN discriminator with an identity head (N, num_identities) and an attribute head (N, A)."""

    def __init__(self, config: SdnConfig) -> None:
        super().__init__()
        w = config.width
        self.trunk = nn.Sequential(
            nn.Conv2d(3, w, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Conv2d(w, 2 * w, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Conv2d(2 * w, 4 * w, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )
        self.patch_head = nn.Conv2d(4 * w, 1, kernel_size=3, padding=1)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.identity_head = nn.Linear(4 * w, config.num_identities)
        self.attribute_head = nn.Linear(4 * w, config.num_attributes)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (patch logits (N, 1, S/8, S/8), identity logits, attribute logits)."""
        trunk = self.trunk(image)
        pooled = self.pool(trunk)
        return self.patch_head(trunk), self.identity_head(pooled), self.attribute_head(pooled)


class SdnGenerators(nn.Module):
    """What inference needs: Fext, En and De. `anonymize` and `restore` are the two shipped graphs."""

    def __init__(self, config: SdnConfig) -> None:
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureExtractor(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if config.shared_identity_network:
            self.decoder.identity_network = self.encoder.identity_network

    def anonymize(self, crop: torch.Tensor, password_bits: torch.Tensor, attributes: torch.Tensor,
                  latent_shift: torch.Tensor | None = None) -> torch.Tensor:
        """crop (N, 3, S, S) RGB in [-1, 1] -> surrogate (N, 3, S, S) in [-1, 1]; `latent_shift`
        (N, 4w, S/4, S/4) moves the bottleneck along manipulation directions (None: no manipulation)."""
        return self.encoder(crop, self.feature_extractor(crop), password_bits, attributes, latent_shift)

    def bottleneck(self, crop: torch.Tensor, password_bits: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """The encoder latent Fext(crop) + IdentityNetwork(password, attributes), (N, 4w, S/4, S/4)."""
        return self.encoder.latent(self.feature_extractor(crop), password_bits, attributes)

    def restore(self, surrogate: torch.Tensor, password_bits: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """surrogate (N, 3, S, S) in [-1, 1] -> restored face (N, 3, S, S) in [-1, 1]."""
        return self.decoder(surrogate, password_bits, attributes)


class SecureDualNetwork(nn.Module):
    """Everything training needs: the generators, Fcls and the discriminator."""

    def __init__(self, config: SdnConfig) -> None:
        super().__init__()
        self.config = config
        self.generators = SdnGenerators(config)
        self.feature_classifier = FeatureClassifier(config)
        self.discriminator = Discriminator(config)

    @property
    def feature_extractor(self) -> FeatureExtractor:
        return self.generators.feature_extractor

    @property
    def encoder(self) -> Encoder:
        return self.generators.encoder

    @property
    def decoder(self) -> Decoder:
        return self.generators.decoder

    def classify(self, image: torch.Tensor) -> torch.Tensor:
        """EC = Fcls(Fext(image)): identity logits."""
        return self.feature_classifier(self.feature_extractor(image))


def build_sdn(size: str, **config_overrides: object) -> SecureDualNetwork:
    """Build the full training network of a named size ("tiny", "small", "paper")."""
    return SecureDualNetwork(sdn_config(size, **config_overrides))  # type: ignore[arg-type]


def build_sdn_from_config(config: SdnConfig) -> SecureDualNetwork:
    return SecureDualNetwork(config)


def save_generators(generators: SdnGenerators, path: str | Path) -> None:
    """Save inference weights: {"config": SdnConfig dict, "state_dict": Fext + En + De}."""
    torch.save({"config": generators.config.to_dict(), "state_dict": generators.state_dict()}, path)


def load_generators(path: str | Path) -> SdnGenerators:
    """Load inference weights saved by `save_generators` (or train_sdn's generators.pt), strictly."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SDN weights {path} do not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or set(payload) != {"config", "state_dict"}:
        raise ValueError(f"{path} is not an SDN generator weights file (expected keys config, state_dict)")
    generators = SdnGenerators(SdnConfig.from_dict(payload["config"]))
    generators.load_state_dict(payload["state_dict"], strict=True)
    return generators.eval()


def count_parameters(module: nn.Module) -> int:
    """Parameters of `module`, each shared tensor counted once."""
    return sum(p.numel() for p in module.parameters())


def unique_parameters(*modules: nn.Module) -> list[nn.Parameter]:
    """The parameters of all `modules`, each shared tensor once (for optimizers)."""
    seen: dict[int, nn.Parameter] = {}
    for module in modules:
        for parameter in module.parameters():
            seen.setdefault(id(parameter), parameter)
    return list(seen.values())


def random_password_bits(batch: int, num_bits: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random password bits (N, P) as float32 0/1."""
    return torch.randint(0, 2, (batch, num_bits), generator=generator).float()


def l1_image_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample mean absolute difference (N,)."""
    return F.l1_loss(a, b, reduction="none").flatten(1).mean(1)
