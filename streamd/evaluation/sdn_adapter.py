"""The SDN method as an evaluation adapter: the extension point for the neural runtime.

`SdnCropMethod` is a `CropMethod`: it aligns each face to the SDN crop size, asks a runner for the
surrogate under the face's password bits (derived from its track key, `streamd.reversible.keys.restore_keys
.derive_password_bits`), and, for restore, for the revealed face under the same bits. Any object with
the `SdnCropRunner` methods plugs in. `build_sdn_method` refuses to run (ModelError) until a trained
model with its manifest and a runtime runner are installed; it never falls back to random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from streamd.errors import ModelError
from streamd.evaluation.methods import CropMethod
from streamd.runtime.manifest import load_manifest
from streamd.runtime.sdn import DEFAULT_SDN_MODEL, load_sdn_crop_runner



class SdnCropRunner(Protocol):
    """What the harness needs from an SDN runtime runner."""

    crop_size: int
    password_bits: int
    model_sha256: str

    def anonymize(self, crop_bgr: np.ndarray, password_bits: np.ndarray) -> np.ndarray:
        """Surrogate of one aligned crop (crop_size square, uint8 BGR) under the password bits."""

    def reveal(self, surrogate_bgr: np.ndarray, password_bits: np.ndarray) -> np.ndarray:
        """The face recovered from a surrogate crop with the password bits."""


class SdnCropMethod(CropMethod):
    """SDN anonymization and restore of aligned crops through a runtime runner."""

    name = "sdn"
    reversible = True
    keyed_surrogate = True

    def __init__(self, runner: SdnCropRunner) -> None:
        self.runner = runner
        self.crop_size = runner.crop_size

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "model_sha256": self.runner.model_sha256, "crop_size": self.crop_size,
                "password_bits": self.runner.password_bits}

    def _bits(self, key: bytes) -> np.ndarray:
        from streamd.reversible.keys.restore_keys import derive_password_bits

        return derive_password_bits(key, self.runner.password_bits)

    def anonymize_crop(self, crop_bgr: np.ndarray, key: bytes) -> np.ndarray:
        return self.runner.anonymize(crop_bgr, self._bits(key))

    def restore_crop(self, crop_bgr: np.ndarray, key: bytes) -> np.ndarray:
        return self.runner.reveal(crop_bgr, self._bits(key))


def sdn_unavailable_reason(models_dir: Path | None = None) -> str | None:
    """None when a trained SDN model is installed (models_dir, else $STREAMD_MODELS_DIR or models/),
    else what is missing."""
    try:
        load_manifest(models_dir).model(DEFAULT_SDN_MODEL)
    except ModelError as exc:
        return f"no trained SDN model: {exc} (train and export one with export/)"
    return None


def build_sdn_method(models_dir: Path | None = None) -> SdnCropMethod:
    """The SDN adapter over the installed model; ModelError when it is missing or does not match."""
    try:
        return SdnCropMethod(load_sdn_crop_runner(models_dir))
    except ModelError as exc:
        raise ModelError(f"method sdn: {exc}") from None
