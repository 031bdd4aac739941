"""Image and identity metrics, as small pure functions on numpy arrays.

Fixed settings, so numbers compare across runs and machines:

- PSNR: 10 log10(MAX^2 / MSE) over every pixel and channel, MAX = 255 for uint8; identical images
  give +inf.
- SSIM (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255,
  population (not sample) statistics, computed per channel on the full-resolution image and averaged
  over the positions where the whole window lies inside the image (5 pixels cropped on every side),
  then over channels. The same setting as scikit-image's `structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255)`.
- Identity distance (SDN paper eq. 22): Euclidean distance of two face embeddings.
- SPR (SDN paper eq. 23-24): share of pairs whose identity distance is at or above the threshold.
- Pixel complexity (cyclic-learning paper eq. 5): for pixel x with 3x3 neighbours x_1..x_8,
  d_i = I(x_i) - I(x) on the grey image, P(x) = sum_i (d_i - mean_i d_i)^2; borders repeat the edge
  pixel. The paper leaves the complex/smooth threshold T unstated; here T = 8 * 10^2 = 800 grey
  levels squared, i.e. the neighbour gradients deviate from their mean by 10 grey levels RMS.
- Anonymization accuracy (same paper, section 5.1): inside the face region, the share of pixels that
  are complex in the original and smooth after anonymization, out of the pixels complex in the
  original. The paper also counts background pixels that stay smooth; that part is reported
  separately (`smooth_kept_share`) because the paper's ratio leaves its denominator ambiguous.
- Cosine similarity (same paper, eq. 6): a.b / (|a| |b|).
- Background change: over the pixels outside every face's footprint (the region a method may
  touch), the share that differ in any channel and the largest absolute difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PIXEL_MAX = 255.0
SSIM_WINDOW_PX = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
PIXEL_COMPLEXITY_THRESHOLD = 800.0
BT601_BGR_WEIGHTS = np.array([0.114, 0.587, 0.299])

# The eight neighbours of a pixel in a 3x3 window, as (dy, dx).
NEIGHBOUR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")


def psnr(reference: np.ndarray, test: np.ndarray, max_value: float = PIXEL_MAX) -> float:
    """Peak signal-to-noise ratio in dB; +inf when the images are identical."""
    _same_shape(reference, test)
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(max_value**2 / mse)


def _gaussian_filter(channel: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(channel, (SSIM_WINDOW_PX, SSIM_WINDOW_PX), sigmaX=SSIM_SIGMA, sigmaY=SSIM_SIGMA,
                            borderType=cv2.BORDER_REFLECT)


def _ssim_channel(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _gaussian_filter(x), _gaussian_filter(y)
    var_x = _gaussian_filter(x * x) - mu_x * mu_x
    var_y = _gaussian_filter(y * y) - mu_y * mu_y
    cov_xy = _gaussian_filter(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    pad = (SSIM_WINDOW_PX - 1) // 2
    return float(ssim_map[pad:-pad, pad:-pad].mean())


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float = PIXEL_MAX) -> float:
    """Structural similarity with the fixed Gaussian 11x11, sigma 1.5 setting; channels averaged.

    Both images need at least 11 pixels on each side.
    """
    _same_shape(reference, test)
    if min(reference.shape[:2]) < SSIM_WINDOW_PX:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW_PX}x{SSIM_WINDOW_PX}, got {reference.shape[:2]}")
    x = reference.astype(np.float64).reshape(reference.shape[0], reference.shape[1], -1)
    y = test.astype(np.float64).reshape(test.shape[0], test.shape[1], -1)
    return float(np.mean([_ssim_channel(x[:, :, c], y[:, :, c], data_range) for c in range(x.shape[2])]))


def identity_distance(embedding_a: np.ndarray, embedding_b: np.ndarray) -> float:
    """Euclidean distance between two identity embeddings (SDN paper eq. 22)."""
    return float(np.linalg.norm(np.asarray(embedding_a, np.float64) - np.asarray(embedding_b, np.float64)))


def successful_protection_rate(distances: Sequence[float], threshold: float) -> float | None:
    """Share of distances at or above `threshold` (SDN paper eq. 23-24); None for no pairs."""
    values = np.asarray(list(distances), np.float64)
    if values.size == 0:
        return None
    return float(np.mean(values >= threshold))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """a.b / (|a| |b|) (cyclic-learning paper eq. 6); ValueError for a zero vector."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        raise ValueError("cosine similarity is undefined for a zero vector")
    return float(a @ b) / norm


def grey(image: np.ndarray) -> np.ndarray:
    """float64 grey levels: BT.601 luma (0.299 R + 0.587 G + 0.114 B) of a BGR image, or a grey image as is."""
    if image.ndim == 2:
        return image.astype(np.float64)
    return image.astype(np.float64) @ BT601_BGR_WEIGHTS


def pixel_complexity(image: np.ndarray) -> np.ndarray:
    """P(x) of every pixel (cyclic-learning paper eq. 5), as an HxW float64 array."""
    values = grey(image)
    padded = np.pad(values, 1, mode="edge")
    height, width = values.shape
    gradients = np.stack(
        [padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] - values for dy, dx in NEIGHBOUR_OFFSETS]
    )
    return ((gradients - gradients.mean(axis=0)) ** 2).sum(axis=0)


@dataclass(frozen=True)
class AnonymizationAccuracy:
    """The cyclic-learning paper's anonymization accuracy for one face region."""

    accuracy: float | None  # complex in the original and smooth after, out of complex in the original
    complex_pixels: int  # complex pixels of the original inside the region
    smooth_kept_share: float | None  # smooth in the original and still smooth after, out of smooth
    threshold: float


def anonymization_accuracy(original: np.ndarray, anonymized: np.ndarray, region_mask: np.ndarray | None = None,
                           threshold: float = PIXEL_COMPLEXITY_THRESHOLD) -> AnonymizationAccuracy:
    """Accuracy inside `region_mask` (HxW bool; None: the whole image)."""
    _same_shape(original, anonymized)
    complex_before = pixel_complexity(original) > threshold
    complex_after = pixel_complexity(anonymized) > threshold
    region = np.ones(complex_before.shape, bool) if region_mask is None else region_mask.astype(bool)
    complex_in_region = complex_before & region
    smooth_in_region = ~complex_before & region
    complex_count = int(complex_in_region.sum())
    smooth_count = int(smooth_in_region.sum())
    return AnonymizationAccuracy(
        accuracy=float((complex_in_region & ~complex_after).sum() / complex_count) if complex_count else None,
        complex_pixels=complex_count,
        smooth_kept_share=float((smooth_in_region & ~complex_after).sum() / smooth_count) if smooth_count else None,
        threshold=threshold,
    )


@dataclass(frozen=True)
class BackgroundChange:
    """How much an image changed outside the faces' footprints."""

    pixels: int  # pixels outside every footprint
    changed_share: float | None  # share of those that differ in any channel
    max_abs_difference: int  # largest per-channel difference among them


def background_change(original: np.ndarray, anonymized: np.ndarray, footprint_mask: np.ndarray) -> BackgroundChange:
    """Change outside `footprint_mask` (HxW bool, True where the method may touch the image)."""
    _same_shape(original, anonymized)
    outside = ~footprint_mask.astype(bool)
    difference = np.abs(original.astype(np.int16) - anonymized.astype(np.int16))
    if difference.ndim == 3:
        difference = difference.max(axis=2)
    outside_difference = difference[outside]
    count = int(outside.sum())
    return BackgroundChange(
        pixels=count,
        changed_share=float(np.mean(outside_difference > 0)) if count else None,
        max_abs_difference=int(outside_difference.max()) if count else 0,
    )
