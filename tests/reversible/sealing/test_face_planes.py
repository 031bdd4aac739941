"""Face streams coded from the decoded source's yuv420p planes: closer to the source than from BGR,
cut on the chroma grid, neighbours blanked."""

from __future__ import annotations

import av
import numpy as np
import pytest

from streamd.reversible.sealing.face_planes import region_planes
from streamd.reversible.sealing.face_rate import FaceQuality
from streamd.reversible.sealing.face_stream import FaceStreamDecoder, FaceStreamEncoder
from streamd.reversible.neighbours import BLANK_VALUE, FaceArea, overlapping_neighbours, owned_mask
from streamd.sources.files import FileVideoSource
from streamd.types import Yuv420Planes

#: At this CRF coding noise is small enough for BGR's own floor to show (the earlier default).
HIGH_QUALITY_CRF = 9
#: How much closer (dB, mean luma PSNR of the region) the planes path must come than the BGR path;
#: measured on this clip: 48.2 against 44.7 dB.
PLANES_LUMA_MARGIN_DB = 2.5
#: How much closer (dB, BGR) `region_bgr` must come than converting the 4:4:4 planes; measured: 43.5 against 41.4 dB.
REGION_BGR_MARGIN_DB = 1.0


def _psnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _odd_region(box: np.ndarray, frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """The face box grown a little, its left and top on odd pixels (the harder case for 4:2:0)."""
    x0, y0, x1, y1 = (int(round(float(value))) for value in box)
    x0, y0 = max(1, (x0 - 6) | 1), max(1, (y0 - 6) | 1)
    return x0, y0, min(frame_wh[0] - 1, x1 + 7), min(frame_wh[1] - 1, y1 + 7)


def _region_of(planes: Yuv420Planes, region: tuple[int, int, int, int]) -> np.ndarray:
    """The region's 4:4:4 planes from a 4:2:0 frame (chroma repeated over each 2x2 block)."""
    x0, y0, x1, y1 = region
    chroma = [plane.repeat(2, axis=0).repeat(2, axis=1)[y0:y1, x0:x1] for plane in (planes.u, planes.v)]
    return np.stack([planes.y[y0:y1, x0:x1], *chroma])


def test_planes_path_is_closer_to_the_decoded_source_than_bgr(demo_clip):
    planes_encoder = FaceStreamEncoder(demo_clip.resolution_wh, FaceQuality(crf=HIGH_QUALITY_CRF))
    bgr_encoder = FaceStreamEncoder(demo_clip.resolution_wh, FaceQuality(crf=HIGH_QUALITY_CRF))
    planes_decoder, bgr_decoder = FaceStreamDecoder(), FaceStreamDecoder()
    planes_psnr, bgr_psnr = [], []
    with FileVideoSource(demo_clip.path, keep_yuv420=True) as source:
        for frame in source.frames():
            if frame.index >= 12:
                break
            assert frame.yuv420 is not None
            region = _odd_region(demo_clip.truth_xyxy[frame.index][0], demo_clip.resolution_wh)
            area = FaceArea(1, region, tuple(float(v) for v in region))  # type: ignore[arg-type]
            x0, y0, x1, y1 = region
            seconds = frame.index / demo_clip.fps
            reference = _region_of(frame.yuv420, region)
            packet = planes_encoder.encode_yuv420(region_planes(frame.yuv420, area, [area]), seconds)
            canvas = planes_decoder.decode(packet.part, packet.number, packet.keyframe, packet.data)
            planes_psnr.append(_psnr(reference[0], canvas.region(region)[0]))
            packet = bgr_encoder.encode(frame.bgr[y0:y1, x0:x1], seconds, (x0, y0))
            canvas = bgr_decoder.decode(packet.part, packet.number, packet.keyframe, packet.data)
            bgr_psnr.append(_psnr(reference[0], canvas.region(region)[0]))
    assert len(planes_psnr) == 12
    assert np.mean(planes_psnr) >= np.mean(bgr_psnr) + PLANES_LUMA_MARGIN_DB, (
        f"planes {np.mean(planes_psnr):.2f} dB, BGR {np.mean(bgr_psnr):.2f} dB")
    assert min(planes_psnr) >= 40.0


def _random_planes(width: int, height: int, seed: int = 3) -> Yuv420Planes:
    rng = np.random.default_rng(seed)
    return Yuv420Planes(rng.integers(16, 236, (height, width), dtype=np.uint8),
                        rng.integers(16, 241, (height // 2, width // 2), dtype=np.uint8),
                        rng.integers(16, 241, (height // 2, width // 2), dtype=np.uint8))


@pytest.mark.parametrize("region", [(10, 20, 50, 60), (11, 21, 51, 61), (11, 20, 50, 61), (10, 21, 51, 60)])
def test_region_is_cut_on_the_chroma_grid(region):
    planes = _random_planes(96, 96)
    area = FaceArea(4, region, tuple(float(v) for v in region))  # type: ignore[arg-type]
    luma, u_plane, v_plane = region_planes(planes, area, [area])
    x0, y0, x1, y1 = region
    gx0, gy0, gx1, gy1 = x0 & ~1, y0 & ~1, (x1 + 1) & ~1, (y1 + 1) & ~1
    assert luma.shape == (gy1 - gy0, gx1 - gx0) and luma.shape[0] % 2 == 0 and luma.shape[1] % 2 == 0
    assert u_plane.shape == v_plane.shape == (luma.shape[0] // 2, luma.shape[1] // 2)
    left, top = x0 - gx0, y0 - gy0
    # The region's own pixels are the frame's, exactly; an added column or row repeats the edge.
    assert np.array_equal(luma[top:top + y1 - y0, left:left + x1 - x0], planes.y[y0:y1, x0:x1])
    if left:
        assert np.array_equal(luma[:, 0], luma[:, 1])
    if luma.shape[1] - left - (x1 - x0):
        assert np.array_equal(luma[:, -1], luma[:, -2])
    # Every chroma block wholly inside the region is the frame's own sample.
    bx0, by0, bx1, by1 = (x0 + 1) // 2, (y0 + 1) // 2, x1 // 2, y1 // 2
    for source, cut in ((planes.u, u_plane), (planes.v, v_plane)):
        assert np.array_equal(cut[by0 - gy0 // 2:by1 - gy0 // 2, bx0 - gx0 // 2:bx1 - gx0 // 2], source[by0:by1, bx0:bx1])
    # Nothing of the frame outside the region is cut: an added chroma column repeats the inner one.
    if left:
        assert np.array_equal(u_plane[:, 0], u_plane[:, 1])


def test_neighbour_pixels_and_their_chroma_blocks_are_blanked():
    planes = _random_planes(128, 96)
    mine = FaceArea(1, (11, 11, 71, 71), (21.0, 21.0, 61.0, 61.0))
    neighbour = FaceArea(2, (51, 31, 111, 91), (61.0, 41.0, 101.0, 81.0))
    luma, u_plane, v_plane = region_planes(planes, mine, [mine, neighbour])
    mask = owned_mask(mine, [mine, neighbour])
    assert not mask.all()
    inner = luma[1:61, 1:61]
    assert (inner[~mask] == BLANK_VALUE).all()
    assert np.array_equal(inner[mask], planes.y[11:71, 11:71][mask])
    grid = np.pad(mask, ((1, 1), (1, 1)), mode="edge")
    whole = grid.reshape(31, 2, 31, 2).all(axis=(1, 3))
    for cut in (u_plane, v_plane):
        assert (cut[~whole] == BLANK_VALUE).all()
    # Whole blocks of mine away from the grid's added edge keep the frame's samples.
    assert np.array_equal(u_plane[1:30, 1:30][whole[1:30, 1:30]], planes.u[6:35, 6:35][whole[1:30, 1:30]])


def test_region_bgr_converts_like_the_source_frames(demo_clip):
    """The lossless restore's BGR face: converted from the decoded 4:2:0 canvas as the source's frames
    are, it comes closer to the source's BGR pixels than the 4:4:4 planes (chroma repeated) do."""
    encoder, decoder = FaceStreamEncoder(demo_clip.resolution_wh, FaceQuality(crf=HIGH_QUALITY_CRF)), FaceStreamDecoder()
    as_source, from_444 = [], []
    with FileVideoSource(demo_clip.path, keep_yuv420=True) as source:
        for frame in source.frames():
            if frame.index >= 8:
                break
            region = _odd_region(demo_clip.truth_xyxy[frame.index][0], demo_clip.resolution_wh)
            area = FaceArea(1, region, tuple(float(v) for v in region))  # type: ignore[arg-type]
            x0, y0, x1, y1 = region
            packet = encoder.encode_yuv420(region_planes(frame.yuv420, area, [area]), frame.index / demo_clip.fps)
            canvas = decoder.decode(packet.part, packet.number, packet.keyframe, packet.data)
            # The region's inside (one pixel in): its edge pixels' chroma neighbours lie outside it.
            original = frame.bgr[y0 + 1:y1 - 1, x0 + 1:x1 - 1]
            as_source.append(_psnr(original, canvas.region_bgr(region)[1:-1, 1:-1]))
            planes = np.ascontiguousarray(canvas.region(region))
            converted = av.VideoFrame.from_ndarray(planes, format="yuv444p").to_ndarray(format="bgr24")
            from_444.append(_psnr(original, converted[1:-1, 1:-1]))
    assert np.mean(as_source) >= np.mean(from_444) + REGION_BGR_MARGIN_DB, (
        f"as the source {np.mean(as_source):.2f} dB, from 4:4:4 {np.mean(from_444):.2f} dB")


def test_overlapping_neighbours_give_the_masks_of_every_area():
    """The sealer hands each face only the regions that overlap its own; masks are those of all areas."""
    rng = np.random.default_rng(11)
    areas = []
    for track_id in range(1, 25):
        x0, y0 = (int(value) for value in rng.integers(0, 600, 2))
        width, height = (int(value) for value in rng.integers(8, 90, 2))
        box = (x0 + 0.2 * width, y0 + 0.2 * height, x0 + 0.8 * width, y0 + 0.8 * height)
        areas.append(FaceArea(track_id, (x0, y0, x0 + width, y0 + height), box))
    areas.append(FaceArea(99, (areas[0].region_xyxy[2], 0, areas[0].region_xyxy[2] + 10, 700), (0.0, 0.0, 1.0, 1.0)))
    neighbours = overlapping_neighbours(areas)
    assert areas[-1] not in neighbours[0], "regions that only touch do not overlap"
    assert any(neighbours), "the random layout has overlaps to check"
    for area, near in zip(areas, neighbours):
        assert area not in near
        assert np.array_equal(owned_mask(area, near), owned_mask(area, areas))
    assert overlapping_neighbours(areas[:1]) == [[]]
