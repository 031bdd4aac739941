"""Face alignment and compositing as small pure functions.

A face is aligned by the similarity transform (rotation, uniform scale, translation) that maps its five
landmarks onto the ArcFace template scaled to the crop size. After the anonymizer has replaced the
crop, `paste_back` warps it and a feathered mask back with the inverse transform and alpha-blends
them into a copy of the frame, touching only the warped crop's bounding box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from streamd.types import TrackedFace

# Five points of the ArcFace 112x112 crop: left eye, right eye, nose, left and right mouth corner.
ARCFACE_CROP_SIZE = 112
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
WARP_INTERPOLATION = cv2.INTER_LINEAR
# Landmarks spread over less than this many pixels cannot define a transform.
MIN_LANDMARK_SPREAD_PX = 1e-3


def canonical_kps5(crop_size: int) -> np.ndarray:
    """The ArcFace template scaled to a `crop_size` x `crop_size` crop, (5, 2) float32."""
    return ARCFACE_TEMPLATE_112 * np.float32(crop_size / ARCFACE_CROP_SIZE)


def similarity_transform(kps5: np.ndarray, crop_size: int) -> np.ndarray:
    """The 2x3 float32 matrix mapping frame pixels to the crop, fitted to the landmarks (Umeyama).

    Least-squares similarity from `kps5` (5, 2) onto `canonical_kps5(crop_size)`.
    Raises ValueError when the landmarks are not finite or all coincide.
    """
    source = np.asarray(kps5, np.float64).reshape(5, 2)
    target = canonical_kps5(crop_size).astype(np.float64)
    if not np.all(np.isfinite(source)):
        raise ValueError("landmarks must be finite")
    source_mean = source.mean(axis=0)
    target_mean = target.mean(axis=0)
    source_centred = source - source_mean
    target_centred = target - target_mean
    source_variance = float((source_centred**2).sum() / len(source))
    if source_variance < MIN_LANDMARK_SPREAD_PX**2:
        raise ValueError("landmarks coincide; no transform can be fitted")
    covariance = target_centred.T @ source_centred / len(source)
    u, singular_values, vt = np.linalg.svd(covariance)
    reflection_fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflection_fix[1, 1] = -1.0
    rotation = u @ reflection_fix @ vt
    scale = float((singular_values * np.diag(reflection_fix)).sum() / source_variance)
    matrix = np.empty((2, 3), np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = target_mean - scale * rotation @ source_mean
    return matrix.astype(np.float32)


def warp_to_crop(bgr: np.ndarray, matrix: np.ndarray, crop_size: int) -> np.ndarray:
    """The `crop_size` x `crop_size` aligned crop; pixels outside the frame repeat its border."""
    return cv2.warpAffine(
        bgr, matrix, (crop_size, crop_size), flags=WARP_INTERPOLATION, borderMode=cv2.BORDER_REPLICATE
    )


def feathered_mask(crop_size: int, feather: float) -> np.ndarray:
    """A (crop_size, crop_size) float32 mask: 1 inside, falling smoothly to 0 at the edges.

    `feather` is the width of the soft edge as a share of `crop_size` (0: hard edge, all ones).
    """
    if not 0 <= feather <= 0.5:
        raise ValueError(f"feather must be between 0 and 0.5, got {feather}")
    if feather == 0:
        return np.ones((crop_size, crop_size), np.float32)
    feather_px = feather * crop_size
    centres = np.arange(crop_size, dtype=np.float32) + 0.5
    edge_distance = np.minimum(centres, crop_size - centres)
    ramp = np.clip(edge_distance / feather_px, 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: no visible kink where the ramp ends
    return np.minimum.outer(ramp, ramp).astype(np.float32)


def crop_footprint(matrix: np.ndarray, crop_size: int, frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer xyxy bounding box, clipped to the frame, of a crop warped back into the frame.

    This is every pixel `paste_back` may change (empty when x1 <= x0 or y1 <= y0).
    """
    frame_w, frame_h = frame_wh
    inverse = cv2.invertAffineTransform(matrix.astype(np.float64))
    corners = np.array([[0, 0], [crop_size, 0], [0, crop_size], [crop_size, crop_size]], np.float64)
    frame_corners = corners @ inverse[:, :2].T + inverse[:, 2]
    x0 = max(0, math.floor(frame_corners[:, 0].min()))
    y0 = max(0, math.floor(frame_corners[:, 1].min()))
    x1 = min(frame_w, math.ceil(frame_corners[:, 0].max()))
    y1 = min(frame_h, math.ceil(frame_corners[:, 1].max()))
    return x0, y0, x1, y1


def paste_back(
    frame_bgr: np.ndarray,
    crop_bgr: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """`frame_bgr` with `crop_bgr` warped back by the inverse of `matrix` and blended through `mask`.

    Returns a new frame; with `out` (a frame-shaped uint8 array, which may be a copy made earlier),
    writes into `out` and returns it, so several faces can be pasted with one copy. Only the bounding
    box of the warped crop is touched.
    """
    crop_size = crop_bgr.shape[0]
    if crop_bgr.shape[:2] != (crop_size, crop_size) or mask.shape != (crop_size, crop_size):
        raise ValueError(f"crop {crop_bgr.shape} and mask {mask.shape} must be the same square size")
    result = frame_bgr.copy() if out is None else out
    frame_h, frame_w = frame_bgr.shape[:2]
    x0, y0, x1, y1 = crop_footprint(matrix, crop_size, (frame_w, frame_h))
    if x1 <= x0 or y1 <= y0:
        return result
    inverse = cv2.invertAffineTransform(matrix.astype(np.float64))
    roi_inverse = inverse.copy()
    roi_inverse[:, 2] -= (x0, y0)
    roi_wh = (x1 - x0, y1 - y0)
    warped_crop = cv2.warpAffine(
        crop_bgr, roi_inverse, roi_wh, flags=WARP_INTERPOLATION, borderMode=cv2.BORDER_REPLICATE
    )
    warped_mask = cv2.warpAffine(
        mask.astype(np.float32),
        roi_inverse,
        roi_wh,
        flags=WARP_INTERPOLATION,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )[..., None]
    roi = result[y0:y1, x0:x1].astype(np.float32)
    blended = roi + (warped_crop.astype(np.float32) - roi) * warped_mask
    result[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return result


def paste_order(faces: Sequence[TrackedFace]) -> list[int]:
    """Indices of `faces`, smallest box area first, so large (near) faces are pasted last, on top."""
    return sorted(range(len(faces)), key=lambda index: faces[index].area)


def expand_box(xyxy: np.ndarray, margin: float, frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box grown by `margin` of its width and height on every side, clipped to the frame, as ints."""
    x0, y0, x1, y1 = (float(value) for value in np.asarray(xyxy).reshape(4))
    grow_x = (x1 - x0) * margin
    grow_y = (y1 - y0) * margin
    frame_w, frame_h = frame_wh
    return (
        int(min(max(math.floor(x0 - grow_x), 0), frame_w)),
        int(min(max(math.floor(y0 - grow_y), 0), frame_h)),
        int(min(max(math.ceil(x1 + grow_x), 0), frame_w)),
        int(min(max(math.ceil(y1 + grow_y), 0), frame_h)),
    )
