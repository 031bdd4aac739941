"""A keyed synthetic identity rendered with the original's light: the surrogate graph of `sdn-synth*`.

No part of the surrogate's face is learned from the original face. The key code (streamd.anonymize.
key_code, a Gaussian vector expanded from the track key) selects a face in a linear face space built
from donor faces (mean plus principal components, `export/build_synthetic_identity.py`): one of a
bank of faces chosen at build time to be far apart for a face recognizer, none of them a donor. The
code picks its bank entry by its largest value among the first `bank_size` (independent standard
normal values, so every entry is equally likely). That face replaces everything inside an oval
covering forehead, eyes, cheeks, jaw and chin of the aligned crop. What the original still gives it
is its light, reduced to a few numbers (`light` "plane", the default): a plane (brightness and its
left-right and up-down gradient) fitted inside the oval to each colour channel and to the
luminance; the synthetic face is multiplied by the ratio of the original's and its own luminance
plane and takes the original's colour planes. (`light` "lowpass" uses a Gaussian low-pass of
`shading_sigma` px instead, which carries more of the original's shading; "flat" keeps only the
mean of each channel.) Outside the oval the crop stays the original (with `context_sigma`, blurred
around the oval and less so toward the crop's border), so the paste-back has no outline of the
original's face.

Graphs (all NCHW float32, batch axis dynamic):
- surrogate: (crop RGB in [-1, 1], key_code) -> surrogate RGB in [-1, 1];
- decoder:   (surrogate, key_code) -> the original's light (its planes) inside the oval (all that a
  surrogate carries of the original; best effort, never the face itself);
- identity:  (key_code) -> the synthetic face alone, grey in [-1, 1] (contact sheets, attacks).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

#: Added to both low-passed luminances before their ratio is taken (keeps dark regions stable).
SHADING_EPSILON = 0.02
#: Low-pass filters run on the crop averaged over LOWPASS_POOL x LOWPASS_POOL blocks.
LOWPASS_POOL = 4
COEFFICIENT_CLIP = 2.5


@dataclasses.dataclass(frozen=True)
class SyntheticIdentityConfig:
    resolution: int = 128
    #: Side of the stored face space; its faces are upsampled to `resolution`.
    basis_resolution: int = 64
    code_dimensions: int = 128
    components: int = 16
    #: Synthetic identities the key code chooses among (at most `code_dimensions`).
    bank_size: int = 16
    #: Each component moves by `amplitude` times its standard deviation per unit of code.
    amplitude: float = 2.5
    #: How the original's light is carried: "plane" (a plane fitted inside the oval per channel),
    #: "flat" (the mean per channel) or "lowpass" (a Gaussian low-pass of `shading_sigma`).
    light: str = "plane"
    #: Gaussian sigma of the "lowpass" light transfer, in pixels of the `resolution` crop.
    shading_sigma: float = 16.0
    #: The aligned crop is the ArcFace template zoomed by `zoom` about its landmarks' centre, put at
    #: (0.5, `centre_y`) of the crop: room for hairline, jaw and ears.
    zoom: float = 0.8
    centre_y: float = 0.52
    #: Oval covered by the synthetic face, as shares of the crop.
    oval_centre_y: float = 0.49
    oval_radius_x: float = 0.36
    oval_radius_y: float = 0.44
    oval_feather: float = 0.12
    #: Around the oval, up to an outer oval of these radii (shares of the crop), the original is
    #: blended toward its own Gaussian low-pass of `context_sigma` px (hair, ears and head outline lose
    #: their detail); the blend falls to none over the outer `context_feather` of that oval's radius,
    #: so the crop's border stays the original. `context_sigma` 0 keeps the original untouched.
    context_sigma: float = 0.0
    context_radius_x: float = 0.49
    context_radius_y: float = 0.48
    context_feather: float = 0.3

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def soft_oval(config: SyntheticIdentityConfig, radius_x: float, radius_y: float, feather: float,
              centred_edge: bool = True) -> torch.Tensor:
    """(1, 1, S, S) float32: 1 inside an oval centred at (0.5, oval_centre_y), 0 outside, with a linear
    edge `feather` of its radius wide (centred on the oval's edge, or ending on it)."""
    size = config.resolution
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    distance = torch.sqrt(((xx - 0.5) / radius_x) ** 2 + ((yy - config.oval_centre_y) / radius_y) ** 2)
    mask = torch.clamp((1.0 - distance) / feather + (0.5 if centred_edge else 0.0), 0.0, 1.0)
    return mask.float()[None, None]


def oval_mask(config: SyntheticIdentityConfig) -> torch.Tensor:
    """(1, 1, S, S) float32: 1 inside the oval, a soft edge of `oval_feather` of its radius, 0 outside."""
    return soft_oval(config, config.oval_radius_x, config.oval_radius_y, config.oval_feather)


def context_mask(config: SyntheticIdentityConfig) -> torch.Tensor:
    """(1, 1, S, S) float32: how much of the original's low-pass replaces it around the oval (0 where
    `context_sigma` is 0, and always 0 at the outer oval's edge)."""
    if config.context_sigma <= 0:
        return torch.zeros(1, 1, config.resolution, config.resolution)
    return soft_oval(config, config.context_radius_x, config.context_radius_y, config.context_feather, centred_edge=False)


def plane_fit(config: SyntheticIdentityConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The light plane as two fixed linear maps: `fit` (3, s*s) takes a LOWPASS_POOL-pooled image to
    its plane's coefficients (least squares weighted by the oval), `basis` (3, S*S) draws the plane at
    full size. Coordinates are shares of the crop centred on the oval."""
    def grid(side: int) -> torch.Tensor:
        centres = (torch.arange(side, dtype=torch.float64) + 0.5) / side
        yy, xx = torch.meshgrid(centres - config.oval_centre_y, centres - 0.5, indexing="ij")
        terms = [torch.ones_like(xx)] if config.light == "flat" else [torch.ones_like(xx), xx, yy]
        return torch.stack(terms).reshape(len(terms), -1)

    side = config.resolution // LOWPASS_POOL
    small = grid(side)
    weight = F.avg_pool2d(oval_mask(config).double(), LOWPASS_POOL).reshape(-1)
    normal = (small * weight) @ small.t()
    fit = torch.linalg.solve(normal, small * weight)
    return fit.float(), grid(config.resolution).float()


def gaussian_kernel_1d(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    positions = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (positions / sigma) ** 2)
    return (kernel / kernel.sum()).float()


class SyntheticIdentity(nn.Module):
    """The three graphs' arithmetic over one face space (buffers only: nothing here is trained)."""

    def __init__(self, config: SyntheticIdentityConfig, mean_face: torch.Tensor, components: torch.Tensor,
                 component_std: torch.Tensor, bank: torch.Tensor) -> None:
        super().__init__()
        side = config.basis_resolution
        if mean_face.shape != (side * side,):
            raise ValueError(f"mean_face must be ({side * side},), got {tuple(mean_face.shape)}")
        if components.shape != (config.components, side * side) or component_std.shape != (config.components,):
            raise ValueError("components must be (K, side*side) and component_std (K,) with K = config.components")
        if not 2 <= config.bank_size <= config.code_dimensions:
            raise ValueError(f"bank_size must be in 2..{config.code_dimensions}, got {config.bank_size}")
        if bank.shape != (config.bank_size, config.components):
            raise ValueError(f"bank must be ({config.bank_size}, {config.components}): one coefficient row per identity")
        if config.resolution % LOWPASS_POOL:
            raise ValueError(f"resolution must be a multiple of {LOWPASS_POOL}")
        if config.light not in ("plane", "flat", "lowpass"):
            raise ValueError(f"light must be 'plane', 'flat' or 'lowpass', got {config.light!r}")
        self.config = config
        self.register_buffer("mean_face", mean_face.float())
        self.register_buffer("scaled_components", (components * (config.amplitude * component_std)[:, None]).float())
        self.register_buffer("bank", torch.clamp(bank.float(), -COEFFICIENT_CLIP, COEFFICIENT_CLIP))
        self.register_buffer("mask", oval_mask(config))
        self.register_buffer("kernel", gaussian_kernel_1d(config.shading_sigma / LOWPASS_POOL))
        if config.context_sigma > 0:  # registered only when used: graphs without it stay as they were
            self.register_buffer("context", context_mask(config))
            self.register_buffer("context_kernel", gaussian_kernel_1d(config.context_sigma / LOWPASS_POOL))
        fit, basis = plane_fit(config)
        self.register_buffer("plane_fit", fit)
        self.register_buffer("plane_basis", basis)

    def choice(self, key_code: torch.Tensor) -> torch.Tensor:
        """(N, code) -> (N, bank_size) one-hot: the bank entry of the largest of the first bank_size values."""
        votes = key_code[:, :self.config.bank_size]
        return (votes >= votes.max(dim=1, keepdim=True).values).float()

    def identity(self, key_code: torch.Tensor) -> torch.Tensor:
        """(N, code) -> (N, 1, S, S) synthetic face luminance in [0, 1]."""
        return self.face_from_coefficients(self.choice(key_code) @ self.bank)

    def face_from_coefficients(self, coefficients: torch.Tensor) -> torch.Tensor:
        """(N, components) in standard deviations -> (N, 1, S, S) face luminance in [0, 1]."""
        coefficients = torch.clamp(coefficients, -COEFFICIENT_CLIP, COEFFICIENT_CLIP)
        side = self.config.basis_resolution
        faces = (self.mean_face + coefficients @ self.scaled_components).reshape(-1, 1, side, side)
        faces = F.interpolate(faces, size=(self.config.resolution, self.config.resolution), mode="bilinear",
                              align_corners=False)
        return torch.clamp(faces, 0.0, 1.0)

    def light(self, image: torch.Tensor) -> torch.Tensor:
        """What the surrogate keeps of the light of (N, C, S, S): its plane, or its low-pass."""
        if self.config.light == "lowpass":
            return self.lowpass(image)
        size = self.config.resolution
        small = F.avg_pool2d(image, LOWPASS_POOL).reshape(image.shape[0] * image.shape[1], -1)
        plane = (small @ self.plane_fit.t()) @ self.plane_basis
        return torch.clamp(plane, min=0.0).reshape(image.shape[0], image.shape[1], size, size)

    def lowpass(self, image: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """Gaussian low-pass of (N, C, S, S), computed on LOWPASS_POOL-pooled blocks (the light's
        kernel unless another is given)."""
        kernel = self.kernel if kernel is None else kernel
        size = self.config.resolution
        small = F.avg_pool2d(image, LOWPASS_POOL)
        side = size // LOWPASS_POOL
        radius = kernel.shape[0] // 2
        flat = small.reshape(-1, 1, side, side)
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.reshape(1, 1, 1, -1))
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.reshape(1, 1, -1, 1))
        small = flat.reshape(image.shape[0], image.shape[1], side, side)
        return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)

    def surrogate(self, crop: torch.Tensor, key_code: torch.Tensor) -> torch.Tensor:
        return self.render(crop, self.identity(key_code))

    def render(self, crop: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        """The (N, 1, S, S) synthetic `face` in the oval of `crop`, with the crop's low-passed light."""
        original = (crop + 1.0) * 0.5
        luminance = original.mean(dim=1, keepdim=True)
        light = self.light(torch.cat([luminance, original, face], dim=1))
        light_luminance, light_colour, face_light = light[:, :1], light[:, 1:4], light[:, 4:5]
        shaded = torch.clamp(face * (light_luminance + SHADING_EPSILON) / (face_light + SHADING_EPSILON), 0.0, 1.0)
        colour = light_colour / (light_luminance + SHADING_EPSILON)
        rendered = torch.clamp(shaded * colour, 0.0, 1.0)
        if self.config.context_sigma > 0:
            original = self.context * self.lowpass(original, self.context_kernel) + (1.0 - self.context) * original
        mixed = self.mask * rendered + (1.0 - self.mask) * original
        return mixed * 2.0 - 1.0

    def reveal(self, surrogate: torch.Tensor, key_code: torch.Tensor) -> torch.Tensor:
        """The original's light (plane or low-pass) inside the oval, from a surrogate and its code."""
        seen = (surrogate + 1.0) * 0.5
        face = self.identity(key_code)
        face_light = self.light(face)
        light_colour = seen * (face_light + SHADING_EPSILON) / (face + SHADING_EPSILON)
        light_colour = torch.clamp(self.light(light_colour), 0.0, 1.0)
        inside = torch.clamp(self.mask * 1.25 - 0.25, 0.0, 1.0)
        return (inside * light_colour + (1.0 - inside) * seen) * 2.0 - 1.0


class SurrogateGraph(nn.Module):
    def __init__(self, model: SyntheticIdentity) -> None:
        super().__init__()
        self.model = model

    def forward(self, crop: torch.Tensor, key_code: torch.Tensor) -> torch.Tensor:
        return self.model.surrogate(crop, key_code)


class RevealGraph(nn.Module):
    def __init__(self, model: SyntheticIdentity) -> None:
        super().__init__()
        self.model = model

    def forward(self, surrogate: torch.Tensor, key_code: torch.Tensor) -> torch.Tensor:
        return self.model.reveal(surrogate, key_code)


class IdentityGraph(nn.Module):
    def __init__(self, model: SyntheticIdentity) -> None:
        super().__init__()
        self.model = model

    def forward(self, key_code: torch.Tensor) -> torch.Tensor:
        return self.model.identity(key_code) * 2.0 - 1.0
