"""Compositing restored faces into a yuv420p frame without converting the whole frame.

The default restore output is yuv420p, as is the anonymized video it starts from. Converting every
720p frame to BGR and back costs more than decoding and encoding it, so restore works on the decoded
planes: only the patch around the restored faces (aligned to the chroma grid) goes to BGR, gets the
faces pasted with the same rules as `composite_restored`, and comes back; every other pixel is the
decoded anonymized frame, untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import av
import numpy as np


def _planes(yuv: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a PyAV yuv420p array of shape (height * 3 / 2, width)."""
    flat = yuv.reshape(-1)
    luma = flat[: width * height].reshape(height, width)
    chroma_size = (width // 2) * (height // 2)
    u_plane = flat[width * height: width * height + chroma_size].reshape(height // 2, width // 2)
    v_plane = flat[width * height + chroma_size: width * height + 2 * chroma_size].reshape(height // 2, width // 2)
    return luma, u_plane, v_plane


def _patch_array(luma: np.ndarray, u_plane: np.ndarray, v_plane: np.ndarray) -> np.ndarray:
    height, width = luma.shape
    return np.concatenate([luma.reshape(-1), u_plane.reshape(-1), v_plane.reshape(-1)]).reshape(height * 3 // 2, width)


def composite_yuv420(
    yuv: np.ndarray,
    width: int,
    height: int,
    regions: Sequence[tuple[int, int, int, int]],
    paste: Callable[[np.ndarray, tuple[int, int]], np.ndarray],
) -> np.ndarray:
    """A copy of the yuv420p frame `yuv` where the patch covering `regions` went through `paste`.

    `paste(patch_bgr, (x0, y0))` gets the patch in BGR and its top-left frame position and returns
    it with the faces composited. Width and height must be even."""
    if not regions:
        return yuv
    x0 = max(0, min(region[0] for region in regions)) & ~1
    y0 = max(0, min(region[1] for region in regions)) & ~1
    x1 = min(width, (max(region[2] for region in regions) + 1) & ~1)
    y1 = min(height, (max(region[3] for region in regions) + 1) & ~1)
    if x1 <= x0 or y1 <= y0:
        return yuv
    out = yuv.copy()
    luma, u_plane, v_plane = _planes(out, width, height)
    patch = _patch_array(luma[y0:y1, x0:x1], u_plane[y0 // 2:y1 // 2, x0 // 2:x1 // 2],
                         v_plane[y0 // 2:y1 // 2, x0 // 2:x1 // 2])
    patch_bgr = av.VideoFrame.from_ndarray(patch, format="yuv420p").to_ndarray(format="bgr24")
    pasted = paste(patch_bgr, (x0, y0))
    back = av.VideoFrame.from_ndarray(np.ascontiguousarray(pasted), format="bgr24").reformat(format="yuv420p").to_ndarray()
    new_luma, new_u, new_v = _planes(back, x1 - x0, y1 - y0)
    luma[y0:y1, x0:x1] = new_luma
    u_plane[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = new_u
    v_plane[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = new_v
    return out
