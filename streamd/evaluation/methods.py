"""Evaluation adapters: each anonymization method as "anonymize faces with keys / restore with keys".

An `EvalMethod` works on a whole image and its known faces, so the harness can measure both the face
and the background. Three kinds plug in:

- `ClassicalMethod`: blur, mosaic, solid through the runtime's `RegionAnonymizer`. No key, no restore.
- `CropMethod`: the base for neural methods that work on an aligned face crop. A subclass implements
  only `anonymize_crop(crop, key)` and `restore_crop(crop, key)`; alignment (5-point similarity to
  the ArcFace template), paste-back with a feathered mask and the footprint are done here, with the
  same `streamd.align` functions the pipeline uses. The SDN runner plugs in here (see
  `build_method`).
- `SealedRestoreMethod`: any method plus a sealed payload of the original pixels of the region it
  replaced (`streamd.reversible.sealing.payloads`, the payload key derived from the face's track key), so restore is exact
  with the right key and refused (authentication failure) with a wrong one.

A restore that refuses a key raises `RestoreRefused`; the harness counts such a face as protected
for the wrong-key SPR.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streamd.align import (
    crop_footprint,
    expand_box,
    feathered_mask,
    paste_back,
    paste_order,
    similarity_transform,
    warp_to_crop,
)
from streamd.config import AnonymizerConfig
from streamd.evaluation.dataset import EvalFace, EvalImage
from streamd.evaluation.errors import EvaluationError
from streamd.types import TrackedFace

CLASSICAL_METHODS = ("blur", "mosaic", "solid")
PIXELATION_METHODS = frozenset({"mosaic"})
SEALED_SUFFIX = "+sealed"
EVAL_CAMERA_ID = "eval"
EVAL_STREAM_EPOCH = "eval"


class RestoreRefused(Exception):
    """A restore that detected a wrong key and returned nothing (for example an AEAD tag failure)."""


@dataclass
class Anonymized:
    """An anonymized image, the pixels the method was allowed to touch, and what restore needs."""

    bgr: np.ndarray
    footprint: np.ndarray  # HxW bool: union of the regions the method may change
    restore_state: dict[int, object] = field(default_factory=dict)


def _box_footprint(shape_hw: tuple[int, int], regions_xyxy: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    footprint = np.zeros(shape_hw, bool)
    for x0, y0, x1, y1 in regions_xyxy:
        footprint[y0:y1, x0:x1] = True
    return footprint


def tracked_faces(faces: Sequence[EvalFace]) -> list[TrackedFace]:
    """The known faces as the runtime's `TrackedFace`s, one track id per face (its index)."""
    return [
        TrackedFace(track_id=index, xyxy=np.asarray(face.xyxy, np.float32), kps5=np.asarray(face.kps5, np.float32),
                    score=face.detector_score, detected=True, age_frames=0)
        for index, face in enumerate(faces)
    ]


class EvalMethod(abc.ABC):
    """One anonymization method as the harness sees it."""

    name: str
    reversible: bool = False
    #: the surrogate depends on the key, so diversity across keys is measurable
    keyed_surrogate: bool = False
    #: the method pixelates, so the cyclic-learning paper's anonymization accuracy applies
    pixelation: bool = False

    def describe(self) -> dict[str, object]:
        """Settings, versions and model hashes for the report."""
        return {"name": self.name, "reversible": self.reversible, "keyed_surrogate": self.keyed_surrogate,
                "pixelation": self.pixelation}

    @abc.abstractmethod
    def anonymize(self, image: EvalImage, keys: Sequence[bytes]) -> Anonymized:
        """Anonymize every face of `image`; `keys[i]` is the 32-byte track key of face i."""

    def restore(self, anonymized: Anonymized, image: EvalImage, keys: Sequence[bytes]) -> np.ndarray:
        """The image restored with `keys`; RestoreRefused when the method detects a wrong key."""
        raise EvaluationError(f"method {self.name} is irreversible and has no restore")

    def close(self) -> None:
        """Release models."""


class ClassicalMethod(EvalMethod):
    """Blur, mosaic or solid fill of each face region, exactly as the pipeline does it."""

    def __init__(self, method: str, config: AnonymizerConfig | None = None) -> None:
        from streamd.anonymize.classical import RegionAnonymizer

        base = config if config is not None else AnonymizerConfig()
        self.config = AnonymizerConfig.model_validate({**base.model_dump(), "method": method})
        self.name = method
        self.pixelation = method in PIXELATION_METHODS
        self._anonymizer = RegionAnonymizer(self.config)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "settings": self.config.model_dump(mode="json")}

    def regions(self, image: EvalImage) -> list[tuple[int, int, int, int]]:
        frame_wh = (image.bgr.shape[1], image.bgr.shape[0])
        return [expand_box(face.xyxy, self.config.margin, frame_wh) for face in image.faces]

    def anonymize(self, image: EvalImage, keys: Sequence[bytes]) -> Anonymized:
        bgr = self._anonymizer.apply(image.bgr, tracked_faces(image.faces))
        return Anonymized(bgr=bgr, footprint=_box_footprint(image.bgr.shape[:2], self.regions(image)))


class CropMethod(EvalMethod):
    """A method that replaces an aligned face crop; subclasses implement the two crop functions."""

    crop_size: int = 112
    feather: float = 0.15

    @abc.abstractmethod
    def anonymize_crop(self, crop_bgr: np.ndarray, key: bytes) -> np.ndarray:
        """The surrogate of an aligned `crop_size` square BGR crop under `key`."""

    def restore_crop(self, crop_bgr: np.ndarray, key: bytes) -> np.ndarray:
        """The original face recovered from a surrogate crop with `key`."""
        raise EvaluationError(f"method {self.name} is irreversible and has no restore")

    def _matrix(self, face: EvalFace) -> np.ndarray:
        return similarity_transform(face.kps5, self.crop_size)

    def _crop_region(self, matrix: np.ndarray, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        height, width = frame_hw
        return crop_footprint(matrix, self.crop_size, (width, height))

    def _replace_crops(self, source_bgr: np.ndarray, faces: Sequence[EvalFace], keys: Sequence[bytes],
                       crop_function) -> np.ndarray:
        out = source_bgr.copy()
        mask = feathered_mask(self.crop_size, self.feather)
        for index in paste_order(tracked_faces(faces)):
            matrix = self._matrix(faces[index])
            crop = warp_to_crop(source_bgr, matrix, self.crop_size)
            paste_back(source_bgr, crop_function(crop, keys[index]), matrix, mask, out=out)
        return out

    def anonymize(self, image: EvalImage, keys: Sequence[bytes]) -> Anonymized:
        regions = [self._crop_region(self._matrix(face), image.bgr.shape[:2]) for face in image.faces]
        bgr = self._replace_crops(image.bgr, image.faces, keys, self.anonymize_crop)
        return Anonymized(bgr=bgr, footprint=_box_footprint(image.bgr.shape[:2], regions))

    def restore(self, anonymized: Anonymized, image: EvalImage, keys: Sequence[bytes]) -> np.ndarray:
        return self._replace_crops(anonymized.bgr, image.faces, keys, self.restore_crop)


class SealedRestoreMethod(EvalMethod):
    """A classical method whose replaced regions are also sealed, as the daemon does by default."""

    reversible = True

    def __init__(self, inner: ClassicalMethod) -> None:
        self.inner = inner
        self.name = inner.name + SEALED_SUFFIX
        self.pixelation = inner.pixelation

    def describe(self) -> dict[str, object]:
        from streamd.reversible.sealing import payloads as seal

        return {**super().describe(), "inner": self.inner.describe(),
                "sealing": f"streamd.reversible.sealing.payloads v{seal.SEAL_VERSION}: PNG + ChaCha20-Poly1305, payload key from "
                           "HKDF of the track key (streamd.reversible.keys.restore_keys.derive_payload_key)"}

    @staticmethod
    def _binding(image_index: int, face_index: int, face: EvalFace, region: tuple[int, int, int, int]):
        from streamd.reversible.sealing.payloads import SealBinding

        x0, y0, x1, y1 = region
        return SealBinding.from_geometry(
            camera=EVAL_CAMERA_ID, stream_epoch=EVAL_STREAM_EPOCH, frame_index=image_index, pts=None,
            track_id=face_index, affine=np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), crop_wh=(x1 - x0, y1 - y0),
            box_xyxy=face.xyxy,
        )

    def anonymize(self, image: EvalImage, keys: Sequence[bytes]) -> Anonymized:
        from streamd.reversible.keys.restore_keys import derive_payload_key
        from streamd.reversible.sealing.payloads import seal_crop

        anonymized = self.inner.anonymize(image, keys)
        for face_index, (face, region) in enumerate(zip(image.faces, self.inner.regions(image), strict=True)):
            x0, y0, x1, y1 = region
            if x1 <= x0 or y1 <= y0:
                continue
            binding = self._binding(0, face_index, face, region)
            blob = seal_crop(np.ascontiguousarray(image.bgr[y0:y1, x0:x1]), derive_payload_key(keys[face_index]),
                             binding)
            anonymized.restore_state[face_index] = (region, blob)
        return anonymized

    def restore(self, anonymized: Anonymized, image: EvalImage, keys: Sequence[bytes]) -> np.ndarray:
        from streamd.reversible.keys.restore_keys import derive_payload_key
        from streamd.reversible.sealing.payloads import SealError, open_sealed

        restored = anonymized.bgr.copy()
        for face_index, (region, blob) in anonymized.restore_state.items():
            x0, y0, x1, y1 = region
            binding = self._binding(0, face_index, image.faces[face_index], region)
            try:
                crop = open_sealed(blob, derive_payload_key(keys[face_index]), binding)
            except SealError as exc:
                raise RestoreRefused(str(exc)) from None
            restored[y0:y1, x0:x1] = crop
        return restored


def build_method(name: str, config: AnonymizerConfig | None = None) -> EvalMethod:
    """The adapter for a method name: blur, mosaic, solid, any of them + "+sealed", sdn or cyclegan."""
    if name in CLASSICAL_METHODS:
        return ClassicalMethod(name, config)
    if name.endswith(SEALED_SUFFIX) and name[: -len(SEALED_SUFFIX)] in CLASSICAL_METHODS:
        return SealedRestoreMethod(ClassicalMethod(name[: -len(SEALED_SUFFIX)], config))
    if name == "sdn":
        from streamd.evaluation.sdn_adapter import build_sdn_method

        return build_sdn_method()
    if name == "cyclegan":
        from streamd.evaluation.cyclegan_adapter import build_cyclegan_method

        return build_cyclegan_method()
    raise EvaluationError(f"unknown method {name!r} (choose from {', '.join(method_names())})")


def method_names() -> list[str]:
    return [*CLASSICAL_METHODS, *(name + SEALED_SUFFIX for name in CLASSICAL_METHODS), "sdn", "cyclegan"]

