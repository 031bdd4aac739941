"""The CycleGAN pixelation as an evaluation adapter: G de-identifies aligned crops, F re-identifies.

The method has no key: the surrogate is the same under every key, and F restores with any key (the
F network itself is the secret), so diversity is zero and a "wrong key" restores as well as the
right one. The report shows exactly that.
"""

from __future__ import annotations

import numpy as np

from streamd.evaluation.methods import CropMethod
from streamd.runtime.cyclegan import (
    DEFAULT_CYCLEGAN_MODEL,
    CycleganDeidentifier,
    CycleganReidentifier,
    load_cyclegan_deidentifier,
    load_cyclegan_reidentifier,
)
from streamd.runtime.manifest import load_manifest


class CycleganCropMethod(CropMethod):
    name = "cyclegan"
    reversible = True
    keyed_surrogate = False
    pixelation = True  # G is trained to pixelate the face region: the paper's accuracy metric applies

    def __init__(self, deidentifier: CycleganDeidentifier, reidentifier: CycleganReidentifier,
                 model_sha256: str) -> None:
        self.deidentifier = deidentifier
        self.reidentifier = reidentifier
        self.crop_size = deidentifier.spec.resolution
        self.model_sha256 = model_sha256

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "model_sha256": self.model_sha256, "crop_size": self.crop_size,
                "keyed": False}

    def anonymize_crop(self, crop_bgr: np.ndarray, key: bytes) -> np.ndarray:
        return self.deidentifier.deidentify(crop_bgr[None])[0]

    def restore_crop(self, crop_bgr: np.ndarray, key: bytes) -> np.ndarray:
        return self.reidentifier.reidentify(crop_bgr[None])[0]

    def close(self) -> None:
        self.deidentifier.close()
        self.reidentifier.close()


def build_cyclegan_method(models_dir: str | None = None, model_name: str = DEFAULT_CYCLEGAN_MODEL) -> CycleganCropMethod:
    """G and F of the named model, each file checked against the manifest (ModelError if not)."""
    entry = load_manifest(models_dir).model(model_name)
    return CycleganCropMethod(
        load_cyclegan_deidentifier(models_dir, model_name),
        load_cyclegan_reidentifier(models_dir, model_name),
        model_sha256=entry.files["deid_onnx"].sha256,
    )
