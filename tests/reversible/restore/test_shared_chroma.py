"""Two faces whose sealed regions overlap: the 2x2 blocks they share carry no chroma in either payload,
and restore estimates it from each face's own samples, so the restored pair shows no seam."""

from __future__ import annotations

import av
import numpy as np

from streamd.reversible.neighbours import BLANK_VALUE, FaceArea, owned_mask
from streamd.reversible.restore.restore import composite_restored
from streamd.reversible.restore.restorers import RestoredFace
from streamd.reversible.restore.shared_chroma import fill_shared_chroma, shared_blocks
from streamd.reversible.restore.yuv_composite import paste_yuv420
from streamd.reversible.sealing.face_planes import region_planes
from streamd.reversible.sealing.face_rate import FaceQuality
from streamd.reversible.sealing.face_stream import FaceStreamDecoder, FaceStreamEncoder
from streamd.types import Yuv420Planes

WIDTH, HEIGHT = 160, 128
# Boxes apart, regions (the boxes grown) overlapping diagonally on odd and even coordinates, so the
# border between what each face owns cuts through 2x2 blocks in both regions.
AREAS = (FaceArea(1, (9, 11, 92, 101), (20.0, 22.0, 78.0, 90.0)),
         FaceArea(2, (67, 41, 151, 127), (88.3, 58.7, 139.1, 114.2)))


def _source() -> av.VideoFrame:
    """A colourful yuv420p picture: strong colour gradients both ways, some texture."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    bgr = np.stack([40 + 1.3 * xx, 200 - 1.2 * yy, 60 + 0.8 * xx + 0.5 * yy], axis=-1)
    bgr += 12 * np.sin(xx / 3.0)[..., None] * np.cos(yy / 4.0)[..., None]
    return av.VideoFrame.from_ndarray(np.clip(bgr, 0, 255).astype(np.uint8), format="bgr24").reformat(format="yuv420p")


def _planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stacked = frame.to_ndarray()
    chroma = stacked[HEIGHT:].reshape(2, HEIGHT // 2, WIDTH // 2)
    return stacked[:HEIGHT], chroma[0], chroma[1]


def _restored_faces(source: av.VideoFrame, fill: bool) -> list[RestoredFace]:
    """Each face sealed the way the daemon seals it (neighbours blanked), decoded as restore decodes it."""
    planes = Yuv420Planes(*_planes(source))
    faces = []
    for area in AREAS:
        others = [other for other in AREAS if other is not area]
        encoder, decoder = FaceStreamEncoder((WIDTH, HEIGHT), FaceQuality(crf=2)), FaceStreamDecoder()
        packet = encoder.encode_yuv420(region_planes(planes, area, others), 0.0)
        canvas = decoder.decode(packet.part, packet.number, packet.keyframe, packet.data)
        assert canvas is not None
        mask = owned_mask(area, AREAS)
        if fill:
            canvas = fill_shared_chroma(canvas, area.region_xyxy, mask)
        faces.append(RestoredFace(track_id=area.track_id, region_xyxy=area.region_xyxy,
                                  yuv444=canvas.region(area.region_xyxy), mask=mask, canvas=canvas))
    return faces


def _anonymized(source: av.VideoFrame) -> av.VideoFrame:
    stacked = source.to_ndarray().copy()
    luma, chroma = stacked[:HEIGHT], stacked[HEIGHT:].reshape(2, HEIGHT // 2, WIDTH // 2)
    for area in AREAS:
        x0, y0, x1, y1 = area.region_xyxy
        luma[y0:y1, x0:x1] = 100
        chroma[:, y0 // 2:(y1 + 1) // 2, x0 // 2:(x1 + 1) // 2] = 128
    return av.VideoFrame.from_ndarray(stacked, format="yuv420p")


def _union_blocks() -> tuple[slice, slice]:
    """The chroma blocks whose four pixels lie inside the two regions' union, around the overlap."""
    return slice(21, 50), slice(34, 46)


def test_the_sealer_blanks_exactly_the_blocks_restore_calls_shared():
    planes = Yuv420Planes(*_planes(_source()))
    area, other = AREAS
    _, u_plane, _ = region_planes(planes, area, [other])
    whole, shared = shared_blocks(owned_mask(area, AREAS), area.region_xyxy)
    assert shared.sum() > 10 and whole.any()
    assert (u_plane[~whole] == BLANK_VALUE).all(), "every block not wholly the face's is blanked in its payload"
    assert (u_plane[whole] != BLANK_VALUE).mean() > 0.95, "the face's own blocks carry their colour"


def test_shared_blocks_are_restored_without_a_seam_in_yuv_and_in_bgr():
    source = _source()
    _, u_source, v_source = _planes(source)
    rows, columns = _union_blocks()
    for fill, expect_close in ((True, True), (False, False)):
        faces = _restored_faces(source, fill)
        _, u_out, v_out = _planes(paste_yuv420(_anonymized(source), faces, []))
        u_error = np.abs(u_out[rows, columns].astype(int) - u_source[rows, columns])
        v_error = np.abs(v_out[rows, columns].astype(int) - v_source[rows, columns])
        worst = int(max(u_error.max(), v_error.max()))
        if expect_close:
            assert worst <= 6, f"a shared block's chroma is {worst} levels off"
        else:
            assert worst > 20, "without the estimate the shared blocks keep the anonymized colour"

    faces = _restored_faces(source, fill=True)
    bgr = composite_restored(_anonymized(source).to_ndarray(format="bgr24"), faces, [])
    truth = source.to_ndarray(format="bgr24")
    seam = (slice(2 * rows.start, 2 * rows.stop), slice(2 * columns.start, 2 * columns.stop))
    error = np.abs(bgr[seam].astype(int) - truth[seam])
    assert error.max() <= 12, f"the BGR path's seam is {error.max()} levels off"


def test_a_face_without_neighbours_keeps_its_canvas():
    source = _source()
    planes = Yuv420Planes(*_planes(source))
    encoder, decoder = FaceStreamEncoder((WIDTH, HEIGHT), FaceQuality(crf=2)), FaceStreamDecoder()
    area = AREAS[0]
    packet = encoder.encode_yuv420(region_planes(planes, area, []), 0.0)
    canvas = decoder.decode(packet.part, packet.number, packet.keyframe, packet.data)
    assert canvas is not None
    assert fill_shared_chroma(canvas, area.region_xyxy, owned_mask(area, [area])) is canvas
    assert fill_shared_chroma(canvas, area.region_xyxy, None) is canvas
