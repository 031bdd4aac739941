import numpy as np
import pytest

from streamd.anonymize import build_anonymizer
from streamd.anonymize.classical import margin_fade_mask, mosaic_region
from streamd.config import AnonymizerConfig
from streamd.types import TrackedFace


def face(track_id: int, xyxy: tuple[float, float, float, float]) -> TrackedFace:
    x0, y0, x1, y1 = xyxy
    kps5 = np.array([[x0 + (x1 - x0) * fx, y0 + (y1 - y0) * fy] for fx, fy in
                     [(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]], np.float32)
    return TrackedFace(track_id, np.array(xyxy, np.float32), kps5, 0.9, True, 1)


@pytest.fixture
def noise_frame() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)


@pytest.mark.parametrize("method", ["blur", "mosaic", "solid"])
def test_face_box_replaced_and_background_untouched(method: str, noise_frame: np.ndarray) -> None:
    anonymizer = build_anonymizer(AnonymizerConfig(method=method, margin=0.2))
    faces = [face(1, (100, 60, 160, 140))]
    out = anonymizer.apply(noise_frame, faces)
    assert out is not noise_frame and out.shape == noise_frame.shape
    inside = np.abs(out[60:140, 100:160].astype(int) - noise_frame[60:140, 100:160]).mean()
    assert inside > 40, f"{method} left the face region nearly as it was ({inside:.1f})"
    # outside the margin-grown box nothing changes at all
    grown = np.zeros(noise_frame.shape[:2], bool)
    grown[44:156, 88:172] = True
    assert np.array_equal(out[~grown], noise_frame[~grown])


def test_solid_fills_the_whole_detected_box(noise_frame: np.ndarray) -> None:
    out = build_anonymizer(AnonymizerConfig(method="solid", solid_bgr=(0, 255, 0))).apply(
        noise_frame, [face(1, (100, 60, 160, 140))]
    )
    assert np.all(out[60:140, 100:160] == (0, 255, 0))


def test_input_frame_is_not_modified(noise_frame: np.ndarray) -> None:
    before = noise_frame.copy()
    build_anonymizer(AnonymizerConfig(method="blur")).apply(noise_frame, [face(1, (10, 10, 80, 90))])
    assert np.array_equal(before, noise_frame)


def test_faces_at_the_frame_edge_and_empty_list(noise_frame: np.ndarray) -> None:
    anonymizer = build_anonymizer(AnonymizerConfig(method="mosaic"))
    assert np.array_equal(anonymizer.apply(noise_frame, []), noise_frame)
    out = anonymizer.apply(noise_frame, [face(1, (-20, -10, 30, 40)), face(2, (300, 200, 360, 280))])
    assert out.shape == noise_frame.shape
    assert not np.array_equal(out[0:40, 0:30], noise_frame[0:40, 0:30])


def test_margin_fade_mask_core_is_full_and_edges_fade() -> None:
    mask = margin_fade_mask((100, 80), np.array([20, 25, 60, 75], np.float32))
    assert mask.dtype == np.float32
    assert np.all(mask[25:75, 20:60] == 1.0)
    assert mask[0, 0] == 0.0 and mask[-1, -1] == 0.0
    row = mask[50, :20]
    assert np.all(np.diff(row) >= 0), "fade must increase towards the core"


def test_mosaic_has_the_requested_block_count() -> None:
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (64, 1, 3))
    out = mosaic_region(ramp, blocks_across=8)
    assert len(np.unique(out[0, :, 0])) == 8
