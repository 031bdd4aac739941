"""Miss scoring on hand-made frames: size buckets, the scored region, unchanged vs masked faces, false masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamd.truth.misses import (
    SIZE_BUCKETS,
    central_region,
    false_mask_share,
    score_instance,
    size_bucket,
    tally_by_bucket,
    to_grey,
)


@pytest.mark.parametrize(
    ("width", "bucket"),
    [(8, "<24"), (23.9, "<24"), (24, "24-48"), (47.99, "24-48"), (48, "48-96"), (95.5, "48-96"), (96, ">=96"), (400, ">=96")],
)
def test_size_bucket_edges(width: float, bucket: str) -> None:
    assert size_bucket(width) == bucket


def test_tally_by_bucket_counts_and_percentages() -> None:
    tallies = tally_by_bucket([(10, True), (20, False), (30, True), (30, True), (50, False), (100, False)])
    assert list(tallies) == list(SIZE_BUCKETS)
    assert (tallies["<24"].missed, tallies["<24"].total, tallies["<24"].missed_pct) == (1, 2, 50.0)
    assert (tallies["24-48"].missed, tallies["24-48"].total) == (2, 2)
    assert tallies["48-96"].missed_pct == 0.0
    assert tallies[">=96"].total == 1


def test_central_region_is_the_middle_half_grown_to_eight_pixels_and_clipped() -> None:
    assert central_region((100, 100, 200, 160), (1280, 720)) == (125, 115, 175, 145)
    assert central_region((50, 50, 56, 58), (1280, 720)) == (49, 50, 57, 58)  # 6x8 box -> 8x8 region
    assert central_region((-40, 680, 40, 760), (1280, 720)) == (0, 700, 20, 720)
    assert central_region((1300, 10, 1400, 60), (1280, 720)) is None


def _textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)
    return cv2.resize(small, (1280, 720), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("box", [(600, 300, 700, 420), (100, 100, 120, 124), (400, 500, 412, 514)])
def test_unchanged_face_is_missed_and_a_masked_one_is_not(box: tuple[int, int, int, int]) -> None:
    original = _textured()
    lossy = np.clip(original.astype(np.int16) + np.random.default_rng(1).integers(-3, 4, original.shape), 0, 255)
    lossy = lossy.astype(np.uint8)
    x0, y0, x1, y1 = box
    blurred = lossy.copy()
    blurred[y0:y1, x0:x1] = cv2.GaussianBlur(lossy[y0 - 20 : y1 + 20, x0 - 20 : x1 + 20], (0, 0), 6)[20:-20, 20:-20]
    filled = lossy.copy()
    filled[y0:y1, x0:x1] = 128
    grey = to_grey(original)
    unchanged = score_instance(grey, to_grey(lossy), 1, 1, box)
    assert unchanged.missed and unchanged.ssim > 0.9
    for masked in (blurred, filled):
        score = score_instance(grey, to_grey(masked), 1, 1, box)
        assert not score.missed and score.ssim < 0.7


def test_mask_beside_the_middle_does_not_count() -> None:
    original = _textured(2)
    output = original.copy()
    output[300:320, 600:700] = 0  # only the top band of the box (600,300)-(700,420) is covered
    score = score_instance(to_grey(original), to_grey(output), 1, 1, (600, 300, 700, 420))
    assert score.missed


def test_false_mask_share_ignores_changes_near_faces() -> None:
    original = np.full((720, 1280), 100, np.uint8)
    face = (600, 300, 650, 360)
    near = original.copy()
    near[250:420, 560:690] = 0  # inside one box size of the face
    assert false_mask_share(original, near, [face]) == 0.0
    far = original.copy()
    far[0:100, 0:128] = 0
    assert false_mask_share(original, far, [face]) == pytest.approx(100 * 128 / (720 * 1280))
    slight = original + 20
    assert false_mask_share(original, slight.astype(np.uint8), [face]) == 0.0


def test_dark_noisy_face_untouched_is_missed_and_blurred_is_not() -> None:
    """At gain 0.15 with sensor noise, a codec-like denoise must still read as unchanged and a blur as masked
    (without brightness normalisation this blur scores SSIM 0.83 and would count as missed)."""
    rng = np.random.default_rng(3)
    face = (600, 300, 660, 372)
    bright = _textured(4).astype(np.float32)
    original = np.clip(bright * 0.15 + rng.normal(0, 4, bright.shape), 0, 255).astype(np.uint8)
    denoised = cv2.GaussianBlur(original, (0, 0), 0.8)
    masked = denoised.copy()
    x0, y0, x1, y1 = face
    masked[y0:y1, x0:x1] = cv2.GaussianBlur(denoised[y0 - 30 : y1 + 30, x0 - 30 : x1 + 30], (0, 0), 5)[30:-30, 30:-30]
    grey = to_grey(original)
    assert score_instance(grey, to_grey(denoised), 1, 1, face).missed
    assert not score_instance(grey, to_grey(masked), 1, 1, face).missed
