"""The CycleGAN pixelation as a daemon method: G turns each aligned face crop into a pixelated face.

Paper: reversible anonymization by cyclic learning (section 3-4). Faces are aligned to the model's
canonical crop by their five landmarks, all faces of a frame go through G in one batch, and each
result is warped back under a feathered mask, smallest face first (`AlignedCropAnonymizer`).

The method has no key: anyone holding F (the `reid_onnx` file of the model) can re-identify every face
anonymized with the matching G, so F is the secret and never needs to be on a camera host. Restore
through `streamd restore --mode cyclegan` runs F on the recorded crops (streamd.reversible.restore.restore_neural).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from streamd.anonymize.crops import AlignedCropAnonymizer
from streamd.anonymize.neural_models import SharedModelKey, acquire_model, release_model
from streamd.config import AnonymizerConfig
from streamd.errors import ModelError
from streamd.runtime.cyclegan import CycleganDeidentifier, load_cyclegan_deidentifier
from streamd.types import TrackedFace

logger = logging.getLogger(__name__)


class CycleganAnonymizer(AlignedCropAnonymizer):
    method = "cyclegan"
    keyed = False

    def __init__(self, config: AnonymizerConfig, deidentifier: CycleganDeidentifier | None = None) -> None:
        self._config = config
        self._shared_key: SharedModelKey | None = None
        if deidentifier is None:
            model = config.cyclegan
            deidentifier, self._shared_key = acquire_model("cyclegan", model, lambda: load_cyclegan_deidentifier(
                model.models_dir, model.model, model.providers, model.intra_op_threads))
        self.deidentifier = deidentifier
        spec = self.deidentifier.spec
        try:
            spec.check_matches(config.cyclegan.model, config.cyclegan.crop_size, config.cyclegan.blocks_per_side)
        except ModelError:
            self.close()
            raise
        super().__init__(spec.resolution, config.feather)
        logger.info("cyclegan model %s: %dx%d crops, blocks_per_side %s", config.cyclegan.model, self.crop_size,
                    self.crop_size, spec.blocks_per_side)

    def method_details(self) -> dict[str, object]:
        return {"model": self._config.cyclegan.model, "crop_size": self.crop_size,
                "blocks_per_side": self.deidentifier.spec.blocks_per_side, "feather": self._config.feather}

    def replace_crops(self, crops_bgr: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
        return self.deidentifier.deidentify(crops_bgr)

    def close(self) -> None:
        if self._shared_key is None:
            self.deidentifier.close()
        else:
            release_model(self._shared_key)
