"""Pasting restored faces into a yuv420p frame without converting the frame.

The default restore output is yuv420p, as is the anonymized video it starts from, and face streams
decode to 4:4:4 planes in the same colour space. Converting every 720p frame to BGR and back would
cost more than decoding and encoding it, so restore writes the faces into a copy of the decoded
planes, with the rules of `streamd.reversible.restore.restore.composite_restored`: luma for every pixel a
face owns outside the protected regions; chroma (one sample per 2x2 pixels) where all four pixels
are restored, by one face or by two that share the block, from the mean of the samples of the pixels
a face restores there (for a shared block, the estimate `streamd.reversible.restore.shared_chroma`
made from that face's own samples); left as it was elsewhere. Frames without a restored face go to
the encoder as decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import av
import numpy as np


class _Face(Protocol):
    region_xyxy: tuple[int, int, int, int]
    mask: np.ndarray | None

    def as_yuv444(self) -> np.ndarray: ...


def _plane_view(plane: av.video.plane.VideoPlane, width: int, height: int) -> np.ndarray:
    return np.frombuffer(plane, dtype=np.uint8).reshape(height, plane.line_size)[:, :width]


def writable_copy(frame: av.VideoFrame) -> av.VideoFrame:
    """A yuv420p frame of its own with the pixels of `frame` (a decoded frame may share its buffers
    with the decoder's reference pictures, so it is never written into)."""
    copy = av.VideoFrame(frame.width, frame.height, frame.format.name)
    for source, target, (width, height) in zip(frame.planes, copy.planes, _plane_sizes(frame)):
        _plane_view(target, width, height)[:] = _plane_view(source, width, height)
    return copy


def _plane_sizes(frame: av.VideoFrame) -> list[tuple[int, int]]:
    return [(frame.width, frame.height), (frame.width // 2, frame.height // 2), (frame.width // 2, frame.height // 2)]


def paste_yuv420(frame: av.VideoFrame, faces: Sequence[_Face],
                 protected_regions: Sequence[tuple[int, int, int, int]]) -> av.VideoFrame:
    """`frame` (yuv420p, even width and height) with `faces` pasted: a copy when there are faces,
    `frame` itself when there are none."""
    if not faces:
        return frame
    out = writable_copy(frame)
    luma, u_plane, v_plane = (_plane_view(plane, width, height)
                              for plane, (width, height) in zip(out.planes, _plane_sizes(out)))
    pasted = [found for face in faces
              if (found := _kept_pixels(face, frame.width, frame.height, protected_regions)) is not None]
    if not pasted:
        return out
    # which pixels some face restores, over the faces' bounding box on the chroma grid
    ox0, oy0 = min(region[0] for region, _, _ in pasted) & ~1, min(region[1] for region, _, _ in pasted) & ~1
    ox1 = max((region[2] + 1) & ~1 for region, _, _ in pasted)
    oy1 = max((region[3] + 1) & ~1 for region, _, _ in pasted)
    restored = np.zeros((oy1 - oy0, ox1 - ox0), dtype=bool)
    for (x0, y0, x1, y1), planes, keep in pasted:
        luma[y0:y1, x0:x1][keep] = planes[0][keep]
        restored[y0 - oy0:y1 - oy0, x0 - ox0:x1 - ox0] |= keep
    for (x0, y0, x1, y1), planes, keep in pasted:
        ex0, ey0, ex1, ey1 = x0 & ~1, y0 & ~1, (x1 + 1) & ~1, (y1 + 1) & ~1
        block_keep = np.zeros((ey1 - ey0, ex1 - ex0), dtype=np.uint16)
        block_keep[y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0] = keep
        kept_count = _block_sums(block_keep)
        # a sample is written where all four of its pixels are restored, by this face or with others
        around = restored[ey0 - oy0:ey1 - oy0, ex0 - ox0:ex1 - ox0]
        wanted = (around[0::2, 0::2] & around[1::2, 0::2] & around[0::2, 1::2] & around[1::2, 1::2]) & (kept_count > 0)
        counts = kept_count[wanted]
        for source, target in ((planes[1], u_plane), (planes[2], v_plane)):
            samples = np.zeros((ey1 - ey0, ex1 - ex0), dtype=np.uint16)
            samples[y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0] = source
            samples *= block_keep
            means = (_block_sums(samples)[wanted] + counts // 2) // counts
            target[ey0 // 2:ey1 // 2, ex0 // 2:ex1 // 2][wanted] = means.astype(np.uint8)
    return out


def _block_sums(values: np.ndarray) -> np.ndarray:
    """The sum over each 2x2 block of `values` (even height and width)."""
    return values[0::2, 0::2] + values[1::2, 0::2] + values[0::2, 1::2] + values[1::2, 1::2]


def _kept_pixels(face: _Face, width: int, height: int, protected_regions: Sequence[tuple[int, int, int, int]],
                 ) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """The face's region clipped to the frame, its planes there, and the pixels it restores: those it
    owns, outside every protected region. None when nothing of it is inside the frame."""
    fx0, fy0, fx1, fy1 = face.region_xyxy
    x0, y0, x1, y1 = max(fx0, 0), max(fy0, 0), min(fx1, width), min(fy1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    planes = face.as_yuv444()[:, y0 - fy0:y1 - fy0, x0 - fx0:x1 - fx0]
    keep = np.ones((y1 - y0, x1 - x0), dtype=bool)
    if face.mask is not None:
        keep &= face.mask[y0 - fy0:y1 - fy0, x0 - fx0:x1 - fx0]
    for px0, py0, px1, py1 in protected_regions:
        keep[max(0, py0 - y0):max(0, py1 - y0), max(0, px0 - x0):max(0, px1 - x0)] = False
    return (x0, y0, x1, y1), planes, keep
