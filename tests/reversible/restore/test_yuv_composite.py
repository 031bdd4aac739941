"""Pasting restored faces into decoded yuv420p frames: owned, unprotected pixels only, the decoded
frame itself never written into."""

from __future__ import annotations

import av
import numpy as np

from streamd.reversible.restore.restorers import RestoredFace
from streamd.reversible.restore.yuv_composite import paste_yuv420


def _frame(width: int = 64, height: int = 48, value: int = 16) -> av.VideoFrame:
    planes = np.full((height * 3 // 2, width), value, dtype=np.uint8)
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


def test_faces_go_into_their_own_pixels_only():
    frame = _frame()
    before = frame.to_ndarray().copy()
    region = (9, 8, 31, 30)  # odd left edge: the chroma of that column's blocks stays as it was
    face_planes = np.stack([np.full((22, 22), value, dtype=np.uint8) for value in (200, 90, 170)])
    mask = np.ones((22, 22), dtype=bool)
    mask[:, 18:] = False  # a neighbour owns the right strip
    face = RestoredFace(track_id=1, region_xyxy=region, yuv444=face_planes, mask=mask)
    out = paste_yuv420(frame, [face], [(9, 8, 14, 12)])

    assert (frame.to_ndarray() == before).all(), "the decoded frame is not written into"
    luma = out.to_ndarray()[:48]
    assert (luma[20, 20] == 200) and (luma[20, 28] == 16), "pasted where owned, not on the neighbour's strip"
    assert luma[9, 10] == 16, "a protected region stays as it was"
    assert luma[30, 20] == 16 and luma[7, 20] == 16, "nothing outside the region"
    u_plane = out.to_ndarray()[48:60].reshape(24, 32)
    assert u_plane[10, 8] == 90, "a block the face fully covers takes its chroma"
    assert u_plane[10, 4] == 16, "a block the region only half covers keeps its chroma"


def test_no_face_gives_the_frame_back():
    frame = _frame()
    assert paste_yuv420(frame, [], []) is frame
