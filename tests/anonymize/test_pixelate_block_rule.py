"""The pixelation block rule of the CycleGAN target domain: the paper's 1/20 and the coarser 1/6 of the
128-pixel model, on the canonical face region of the daemon's aligned crop."""

from __future__ import annotations

import numpy as np
import pytest

from export.choose_cyclegan_block import choose
from export.train_cyclegan import pixelation_rule
from streamd.anonymize.pixelate import (
    PAPER_BLOCKS_PER_SIDE,
    canonical_face_box,
    pixel_block_size,
    pixelate_face_crop,
)


def test_face_region_and_block_sides_at_64_and_128_pixels() -> None:
    assert canonical_face_box(64) == (11, 8, 53, 64)
    assert canonical_face_box(128) == (23, 16, 105, 127)
    # 42 and 82 pixels across the face: the paper's twentieth is 2 and 4 pixels, a sixth is 7 and 14.
    assert pixel_block_size((42, 56), PAPER_BLOCKS_PER_SIDE) == 2
    assert pixel_block_size((82, 111), PAPER_BLOCKS_PER_SIDE) == 4
    assert pixel_block_size((82, 111), 8) == 10
    assert pixel_block_size((82, 111), 6) == 14
    assert pixel_block_size((3, 3), 20) == 1, "a block is at least one pixel"
    with pytest.raises(ValueError):
        pixel_block_size((82, 111), 0)


def test_the_rule_saved_with_the_weights_names_the_block_in_pixels() -> None:
    assert pixelation_rule(6, 128) == {"blocks_per_side": 6, "face_region_xyxy": [23, 16, 105, 127], "block_px": 14}
    assert pixelation_rule(20, 64) == {"blocks_per_side": 20, "face_region_xyxy": [11, 8, 53, 64], "block_px": 2}


def test_a_128_pixel_crop_is_pixelated_in_14_pixel_blocks_inside_the_face_only() -> None:
    crop = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    out = pixelate_face_crop(crop, 6)
    x0, y0, x1, y1 = canonical_face_box(128)
    outside = np.ones((128, 128), bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], crop[outside])
    block = out[y0:y0 + 14, x0:x0 + 14].reshape(-1, 3)
    assert (block == block[0]).all(), "one colour per block"
    expected = np.round(crop[y0:y0 + 14, x0:x0 + 14].reshape(-1, 3).astype(np.float64).mean(axis=0))
    assert np.array_equal(block[0], expected)
    assert not np.array_equal(out[y0:y0 + 14, x0 + 14], out[y0:y0 + 14, x0 + 13]), "a new block starts at 14"
    # The last column and row of blocks are the remainders: 82 = 5 * 14 + 12, 111 = 7 * 14 + 13.
    last = out[y0 + 98:y1, x0 + 70:x1].reshape(-1, 3)
    assert (last == last[0]).all()


def test_the_chosen_rule_is_the_finest_block_that_hides_enough_training_faces() -> None:
    results = {20: {"hidden_rate": 0.0}, 8: {"hidden_rate": 0.78}, 6: {"hidden_rate": 0.953},
               5: {"hidden_rate": 0.94}, 4: {"hidden_rate": 0.965}}
    assert choose(results, 0.95) == 6
    assert choose(results, 0.96) == 4
    assert choose(results, 0.99) is None
