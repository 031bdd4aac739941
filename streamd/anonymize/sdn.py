"""The Secure Dual Network as a daemon method: each face becomes a keyed surrogate.

Every face is aligned to the model's canonical crop by its five landmarks, all faces of a frame go
through the encoder in one batch, and each surrogate is warped back under a feathered mask, smallest
face first. The password of a face is derived from its track's key, so one person keeps one surrogate
for as long as the track lives, and a restore authority holding the key can run the decoder.

With `manipulations` configured, every face's bottleneck is shifted along the model's latent
directions (streamd.runtime.lsmm) inside the encoder graph; the directions, degrees and the
directions file's sha256 go into the frame header's method_details so a restore can undo the shift.

Without a stream key ring (a stream with no restore recipients), each track gets a random key that
lives only in memory: the surrogate is then stable per track but cannot be reversed by anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from streamd.anonymize.base import TrackSecrets
from streamd.anonymize.crops import AlignedCropAnonymizer
from streamd.anonymize.neural_models import SharedModelKey, acquire_model, release_model
from streamd.config import AnonymizerConfig, SdnMethodConfig
from streamd.errors import ConfigError
from streamd.reversible.keys.restore_keys import derive_password_bits, new_track_key
from streamd.runtime.lsmm import load_directions
from streamd.runtime.sdn import SdnCodec
from streamd.types import TrackedFace

logger = logging.getLogger(__name__)

NEUTRAL_ATTRIBUTE_VALUE = 0.5


class EphemeralTrackSecrets:
    """Random per-track keys kept only in memory (nobody can restore these tracks)."""

    def __init__(self) -> None:
        self._keys: dict[int, bytes] = {}

    def password_bits(self, track_id: int, n_bits: int) -> np.ndarray:
        key = self._keys.setdefault(track_id, new_track_key())
        return derive_password_bits(key, n_bits)

    def forget(self, track_id: int) -> None:
        self._keys.pop(track_id, None)


def attribute_values(config: SdnMethodConfig, attribute_names: Sequence[str]) -> dict[str, float]:
    """The configured attribute values, every model attribute present (unnamed ones neutral)."""
    unknown = sorted(set(config.attributes) - set(attribute_names))
    if unknown:
        raise ConfigError(
            f"sdn model {config.model} has no attribute {', '.join(unknown)}; its attributes are "
            f"{', '.join(attribute_names) or 'none'}"
        )
    return {name: float(config.attributes.get(name, NEUTRAL_ATTRIBUTE_VALUE)) for name in attribute_names}


def latent_shift(config: SdnMethodConfig) -> tuple[np.ndarray | None, dict[str, object]]:
    """The configured manipulation as one face's latent shift and its method_details record
    ((None, {}) without manipulations); ConfigError for an unknown direction or a non-finite degree."""
    if not config.manipulations:
        return None, {}
    directions = load_directions(config.models_dir, config.model)
    try:
        shift = directions.shift(config.manipulations)
    except ValueError as error:
        raise ConfigError(f"sdn model {config.model}: {error}") from None
    return shift, {"degrees": {name: float(degree) for name, degree in config.manipulations.items()},
                   "directions_sha256": directions.sha256}


class SdnAnonymizer(AlignedCropAnonymizer):
    method = "sdn"
    keyed = True

    def __init__(self, config: AnonymizerConfig, codec: SdnCodec | None = None) -> None:
        self._config = config
        self._shared_key: SharedModelKey | None = None
        if codec is None:
            sdn = config.sdn
            codec, self._shared_key = acquire_model("sdn", sdn, lambda: SdnCodec.from_manifest(
                sdn.models_dir, sdn.model, sdn.providers, sdn.intra_op_threads))
        self.codec = codec
        super().__init__(self.codec.spec.resolution, config.feather)
        self.attributes = attribute_values(config.sdn, self.codec.spec.attribute_names)
        self._attribute_vector = self.codec.attribute_vector(self.attributes)
        self._latent_shift, self._manipulation = latent_shift(config.sdn)
        self._ephemeral = EphemeralTrackSecrets()
        self._secrets: TrackSecrets = self._ephemeral
        self._bits_by_track: dict[int, np.ndarray] = {}
        logger.info("sdn model %s: %dx%d crops, %d password bits, attributes %s, manipulations %s", config.sdn.model,
                    self.crop_size, self.crop_size, self.codec.spec.password_bits, self.attributes,
                    config.sdn.manipulations or "none")

    def use_track_secrets(self, secrets: TrackSecrets) -> None:
        self._secrets = secrets

    def method_details(self) -> dict[str, object]:
        details: dict[str, object] = {"model": self._config.sdn.model, "crop_size": self.crop_size,
                                      "attributes": dict(self.attributes), "feather": self._config.feather}
        if self._manipulation:
            details["manipulation"] = dict(self._manipulation)
        return details

    def _password_bits(self, track_id: int) -> np.ndarray:
        bits = self._bits_by_track.get(track_id)
        if bits is None:
            bits = self._secrets.password_bits(track_id, self.codec.spec.password_bits)
            self._bits_by_track[track_id] = bits
        return bits

    def end_track(self, track_id: int) -> None:
        self._bits_by_track.pop(track_id, None)
        self._ephemeral.forget(track_id)

    def replace_crops(self, crops_bgr: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
        bits = np.stack([self._password_bits(face.track_id) for face in faces])
        attributes = np.repeat(self._attribute_vector[None, :], len(faces), axis=0)
        return self.codec.anonymize(crops_bgr, bits, attributes, self._latent_shift)

    def close(self) -> None:
        if self._shared_key is None:
            self.codec.close()
        else:
            release_model(self._shared_key)

