import cv2
import numpy as np
import pytest

from streamd import sample_faces
from streamd.anonymize import build_anonymizer
from streamd.anonymize.classical import (
    BLUR_MIN_SIGMA_PX,
    MOSAIC_MIN_BLOCK_PX,
    blur_region,
    blur_sigma_px,
    margin_fade_mask,
    mosaic_blocks_per_face,
    mosaic_face_region,
    mosaic_region,
)
from streamd.align import expand_box
from streamd.config import AnonymizerConfig
from streamd.types import TrackedFace

# The astronaut's face in scikit-image's astronaut photo (CenterFace's box, rounded).
ASTRONAUT_FACE_XYXY = np.array([181.5, 58.2, 269.9, 177.8])


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


def test_blur_sigma_follows_the_face_width_with_a_floor() -> None:
    assert blur_sigma_px(300, 0.2) == pytest.approx(60.0)
    assert blur_sigma_px(100, 0.2) == pytest.approx(20.0)
    assert blur_sigma_px(4, 0.2) == BLUR_MIN_SIGMA_PX


def test_mosaic_blocks_follow_the_face_width_and_never_get_tiny() -> None:
    assert mosaic_blocks_per_face(300.0, 6) == 6
    # 6 blocks across a 24 px face would be 4 px wide; the floor makes them MOSAIC_MIN_BLOCK_PX
    assert mosaic_blocks_per_face(24.0, 6) == int(24 // MOSAIC_MIN_BLOCK_PX)
    assert mosaic_blocks_per_face(3.0, 6) == 1


def test_mosaic_grid_is_anchored_at_the_face_box() -> None:
    ramp = (np.arange(420) * 0.6).astype(np.uint8)
    region = np.ascontiguousarray(np.broadcast_to(ramp[None, :, None], (420, 420, 3)))
    out = mosaic_face_region(region, np.array([60.0, 60.0, 360.0, 360.0]), 6)
    edges = np.flatnonzero(np.diff(out[200, :, 0].astype(int))) + 1
    assert list(edges) == [10, 60, 110, 160, 210, 260, 310, 360, 410]


def astronaut_face_at(width_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo scaled so the face box is `width_px` wide, and the box in it."""
    photo = sample_faces.astronaut_bgr()
    factor = width_px / (ASTRONAUT_FACE_XYXY[2] - ASTRONAUT_FACE_XYXY[0])
    size = (round(photo.shape[1] * factor), round(photo.shape[0] * factor))
    scaled = cv2.resize(photo, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    return scaled, ASTRONAUT_FACE_XYXY * np.array([size[0] / photo.shape[1], size[1] / photo.shape[0]] * 2)


def detail_energy(bgr: np.ndarray, xyxy: np.ndarray) -> float:
    """Mean energy inside the box of what is finer than a sixteenth of the face width."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    sigma = (xyxy[2] - xyxy[0]) / 16.0
    detail = grey - cv2.GaussianBlur(grey, (0, 0), sigma)
    x0, y0, x1, y1 = (int(round(v)) for v in xyxy)
    return float(np.mean(detail[y0:y1, x0:x1] ** 2))


@pytest.mark.parametrize("width_px", [24, 300])
def test_blur_removes_the_detail_of_small_and_large_faces(width_px: int) -> None:
    photo, box = astronaut_face_at(width_px)
    out = build_anonymizer(AnonymizerConfig(method="blur")).apply(photo, [face(1, tuple(box))])
    before, after = detail_energy(photo, box), detail_energy(out, box)
    assert after < 0.05 * before, f"{width_px} px face kept {after / before:.1%} of its detail energy"


@pytest.mark.parametrize("width_px", [24, 300])
def test_mosaic_blocks_scale_with_small_and_large_faces(width_px: int) -> None:
    photo, box = astronaut_face_at(width_px)
    config = AnonymizerConfig(method="mosaic")
    out = build_anonymizer(config).apply(photo, [face(1, tuple(box))])
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    row = out[(y0 + y1) // 2, x0:x1, 1].astype(int)
    runs = np.split(row, np.flatnonzero(np.diff(row)) + 1)
    # whole blocks across the box: as wide as the face over mosaic_blocks, or the floor when that is more
    block_px = max(MOSAIC_MIN_BLOCK_PX, width_px / config.mosaic_blocks)
    assert min(len(run) for run in runs[1:-1]) >= block_px - 1
    assert len(runs) <= width_px / block_px + 1


@pytest.mark.parametrize("method", ["blur", "mosaic"])
@pytest.mark.parametrize("width_px", [24, 300])
def test_whole_box_replaced_and_nothing_changes_outside_the_margin(method: str, width_px: int) -> None:
    rng = np.random.default_rng(width_px)
    frame = rng.integers(0, 256, (width_px * 3, width_px * 3, 3), dtype=np.uint8)
    box = np.array([width_px, width_px * 0.9, width_px * 2, width_px * 2.2])
    config = AnonymizerConfig(method=method, margin=0.2)
    out = build_anonymizer(config).apply(frame, [face(1, tuple(box))])
    x0, y0, x1, y1 = expand_box(box, config.margin, (frame.shape[1], frame.shape[0]))
    region = frame[y0:y1, x0:x1]
    if method == "blur":
        replaced = blur_region(region, blur_sigma_px(width_px, config.blur_strength))
    else:
        replaced = mosaic_face_region(region, box - np.array([x0, y0, x0, y0]), config.mosaic_blocks)
    bx0, by0 = int(np.ceil(box[0])) - x0, int(np.ceil(box[1])) - y0
    bx1, by1 = int(np.floor(box[2])) - x0, int(np.floor(box[3])) - y0
    # every pixel of the detected box is the replacement, at full strength
    assert np.array_equal(out[y0:y1, x0:x1][by0:by1, bx0:bx1], replaced[by0:by1, bx0:bx1])
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], frame[outside])


def test_blurred_faces_are_not_recognised_at_32_and_200_px() -> None:
    from streamd.errors import ModelError
    from streamd.evaluation.identity import DlibIdentityJudge

    try:
        judge = DlibIdentityJudge()
    except ModelError as exc:
        pytest.skip(f"dlib's face recognizer is not installed (the 'eval' extra): {exc}")
    anonymizer = build_anonymizer(AnonymizerConfig(method="blur"))
    full, full_box = astronaut_face_at(150)
    reference = judge.embed(full, full_box)
    for width_px in (32, 200):
        photo, box = astronaut_face_at(width_px)
        masked = anonymizer.apply(photo, [face(1, tuple(box))])
        # both judged with the face 150 px wide, at the known box (no re-detection)
        factor = 150.0 / (box[2] - box[0])
        size = (round(photo.shape[1] * factor), round(photo.shape[0] * factor))
        interpolation = cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA
        original_embedding = judge.embed(cv2.resize(photo, size, interpolation=interpolation), box * factor)
        masked_embedding = judge.embed(cv2.resize(masked, size, interpolation=interpolation), box * factor)
        # the unmasked face at this size is still the astronaut, so there is an identity to hide
        assert np.linalg.norm(original_embedding - reference) < judge.threshold
        distance = np.linalg.norm(masked_embedding - original_embedding)
        assert distance >= judge.threshold, f"a blurred {width_px} px face still matches (distance {distance:.2f})"
