"""Shared part of the neural methods: align every face to a canonical crop, replace all crops of a
frame in one batch, and paste each result back under a feathered mask, smallest face first.

A subclass names its crop size and implements `replace_crops`; the region a face may change is the
footprint of its crop in the frame (`region_of`, what sealing saves).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from streamd.align import (
    crop_footprint,
    feathered_mask,
    paste_back,
    paste_order,
    similarity_transform,
    warp_to_crop,
)
from streamd.anonymize.base import FaceAnonymizer
from streamd.types import TrackedFace


class AlignedCropAnonymizer(FaceAnonymizer):
    """Align, batch through `replace_crops`, paste back."""

    def __init__(self, crop_size: int, feather: float) -> None:
        self.crop_size = crop_size
        self._mask = feathered_mask(crop_size, feather)

    @abc.abstractmethod
    def replace_crops(self, crops_bgr: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
        """Aligned crops (N, S, S, 3) uint8 BGR of `faces` -> their replacements, same shape and dtype."""

    def crop_matrix(self, face: TrackedFace) -> np.ndarray:
        return similarity_transform(face.kps5, self.crop_size)

    def region_of(self, face: TrackedFace, frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
        return crop_footprint(self.crop_matrix(face), self.crop_size, frame_wh)

    def apply(self, bgr: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
        if not faces:
            return bgr.copy()
        matrices = [self.crop_matrix(face) for face in faces]
        crops = np.stack([warp_to_crop(bgr, matrix, self.crop_size) for matrix in matrices])
        replaced = self.replace_crops(crops, faces)
        out = bgr.copy()
        for index in paste_order(faces):
            paste_back(out, replaced[index], matrices[index], self._mask, out=out)
        return out
