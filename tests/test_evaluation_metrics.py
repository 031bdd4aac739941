"""Each evaluation metric against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamd.anonymize.classical import mosaic_region
from streamd.evaluation import metrics


def step_edge(height: int = 8, width: int = 8, value: float = 80.0) -> np.ndarray:
    image = np.zeros((height, width), np.float64)
    image[:, width // 2 :] = value
    return image


def checkerboard(size: int = 8, high: int = 200) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size]
    return (((ys + xs) % 2) * high).astype(np.uint8)


def test_psnr_identical_images_is_infinite() -> None:
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert metrics.psnr(image, image) == math.inf


def test_psnr_constant_offset() -> None:
    image = np.full((6, 5, 3), 100, np.uint8)
    # MSE = 10^2 = 100, so PSNR = 10 log10(255^2 / 100)
    assert metrics.psnr(image, image + 10) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-9)
    assert metrics.psnr(image, image + 10) == pytest.approx(28.1308, abs=1e-4)


def test_psnr_known_shift() -> None:
    image = np.zeros((16, 16), np.uint8)
    image[:, 8:] = 255
    shifted = np.roll(image, 1, axis=1)
    shifted[:, 0] = 0
    # one column of 16 pixels differs by 255: MSE = 255^2 * 16 / 256, PSNR = 10 log10(16)
    assert metrics.psnr(image, shifted) == pytest.approx(10 * math.log10(16), abs=1e-9)


def test_psnr_rejects_different_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(np.zeros((4, 4)), np.zeros((4, 5)))


def test_ssim_identical_images_is_one() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_two_flat_images_is_the_luminance_term() -> None:
    # No variance anywhere: contrast-structure term is C2/C2 = 1, luminance (2ab + C1) / (a^2 + b^2 + C1).
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert metrics.ssim(np.full((16, 16), 100, np.uint8), np.full((16, 16), 110, np.uint8)) == pytest.approx(
        expected, abs=1e-9)
    assert expected == pytest.approx(0.995476, abs=1e-6)


def test_ssim_matches_the_scikit_image_setting() -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(2)
    reference = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    noisy = np.clip(reference.astype(int) + rng.integers(-40, 40, reference.shape), 0, 255).astype(np.uint8)
    expected = structural_similarity(reference, noisy, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255, channel_axis=2)
    assert metrics.ssim(reference, noisy) == pytest.approx(expected, abs=1e-9)


def test_ssim_needs_a_full_window() -> None:
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(np.zeros((10, 30), np.uint8), np.zeros((10, 30), np.uint8))


def test_identity_distance_and_spr() -> None:
    assert metrics.identity_distance(np.array([0.0, 0.0]), np.array([3.0, 4.0])) == pytest.approx(5.0)
    assert metrics.successful_protection_rate([0.5, 0.6, 0.7], 0.6) == pytest.approx(2 / 3)
    assert metrics.successful_protection_rate([], 0.6) is None


def test_cosine_similarity_of_known_vectors() -> None:
    assert metrics.cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(0.0)
    assert metrics.cosine_similarity(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert metrics.cosine_similarity(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(1 / math.sqrt(2))
    assert metrics.cosine_similarity(np.array([1.0, 0.0]), np.array([-1.0, 0.0])) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="zero vector"):
        metrics.cosine_similarity(np.zeros(3), np.ones(3))


def test_pixel_complexity_of_a_step_edge() -> None:
    value = 80.0
    complexity = metrics.pixel_complexity(step_edge(value=value))
    # Next to the edge 3 of 8 neighbour gradients are +-v and 5 are 0: mean 3v/8,
    # P = 3 (5v/8)^2 + 5 (3v/8)^2 = 15 v^2 / 8. Everywhere else all gradients are 0.
    expected = np.zeros((8, 8))
    expected[:, 3] = expected[:, 4] = 15 * value**2 / 8
    np.testing.assert_allclose(complexity, expected)


def test_pixel_complexity_of_an_isolated_peak_is_zero_at_the_peak() -> None:
    image = np.zeros((3, 3))
    image[1, 1] = 50.0
    # all eight gradients are -50: no deviation from their mean
    assert metrics.pixel_complexity(image)[1, 1] == 0.0


def test_pixel_complexity_uses_bt601_grey_for_colour_images() -> None:
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[:, 4:] = (0, 0, 100)  # red 100 -> grey 29.9
    np.testing.assert_allclose(metrics.pixel_complexity(bgr)[0, 3], 15 * 29.9**2 / 8)


def test_anonymization_accuracy_of_a_full_pixelation() -> None:
    original = checkerboard()
    pixelated = mosaic_region(np.dstack([original] * 3), blocks_across=4)[:, :, 0]
    # every 1-pixel checkerboard cell is complex (P = 8 * 100^2), every pixelated one is flat
    assert np.all(pixelated == 100)
    result = metrics.anonymization_accuracy(original, pixelated)
    assert result.complex_pixels == 64
    assert result.accuracy == pytest.approx(1.0)
    assert result.smooth_kept_share is None


def test_anonymization_accuracy_of_a_half_pixelation() -> None:
    original = checkerboard()
    half = original.copy()
    half[:, :4] = 100
    # columns 0-2 become flat; column 3 borders the untouched checkerboard and stays complex
    result = metrics.anonymization_accuracy(original, half)
    assert result.accuracy == pytest.approx(24 / 64)


def test_anonymization_accuracy_inside_a_region_only() -> None:
    original = checkerboard()
    region = np.zeros((8, 8), bool)
    region[:, :2] = True
    half = original.copy()
    half[:, :4] = 100
    result = metrics.anonymization_accuracy(original, half, region)
    assert result.complex_pixels == 16 and result.accuracy == pytest.approx(1.0)


def test_background_change_outside_the_footprint() -> None:
    original = np.zeros((4, 5, 3), np.uint8)
    changed = original.copy()
    footprint = np.zeros((4, 5), bool)
    footprint[1:3, 1:3] = True
    changed[1:3, 1:3] = 255
    untouched = metrics.background_change(original, changed, footprint)
    assert untouched.pixels == 16 and untouched.changed_share == 0.0 and untouched.max_abs_difference == 0
    changed[0, 0, 2] = 7
    leaked = metrics.background_change(original, changed, footprint)
    assert leaked.changed_share == pytest.approx(1 / 16) and leaked.max_abs_difference == 7
