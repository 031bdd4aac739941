"""A keyed surrogate model seen the same way by the evaluation and the attack suite.

A keyed model turns an aligned crop and a code into a surrogate (`encode`) and, given the code, a
surrogate back into what it reveals (`decode`). The code is what the network is conditioned on:
password bits for a `sdn` model (derived from the track key, `code_kind` "bits"), a Gaussian key
code for an `sdn-synthetic` model (`code_kind` "gaussian", streamd.anonymize.key_code). Images are
float (N, 3, S, S) RGB in [-1, 1]; `crop_matrix` is how the daemon cuts the model's crop from a frame.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from streamd.errors import ModelError
from streamd.runtime.manifest import load_manifest


class KeyedModel(Protocol):
    name: str
    crop_size: int
    code_size: int
    #: "bits" (0/1 values) or "gaussian" (standard normal values).
    code_kind: str

    def crop_matrix(self, kps5: np.ndarray) -> np.ndarray: ...

    def code_for_key(self, key: bytes) -> np.ndarray: ...

    def encode(self, images: np.ndarray, codes: np.ndarray) -> np.ndarray: ...

    def decode(self, surrogates: np.ndarray, codes: np.ndarray) -> np.ndarray: ...


def random_codes(model: KeyedModel, n: int) -> np.ndarray:
    """Codes of `n` fresh random track keys (from the operating system, as the daemon's are)."""
    return np.stack([model.code_for_key(os.urandom(32)) for _ in range(n)])


class SdnKeyedModel:
    """A trained `sdn` model: password bits, decoder refined by encoder inversion (streamd restore)."""

    code_kind = "bits"

    def __init__(self, models_dir: Path, name: str, threads: int = 1) -> None:
        from streamd.runtime.sdn import SdnCodec

        self.name = name
        self.codec = SdnCodec.from_manifest(models_dir, name, intra_op_threads=threads)
        defaults = load_manifest(models_dir).model(name).require("default_attributes")
        if not isinstance(defaults, dict):
            raise ModelError(f"manifest entry {name}: default_attributes must map names to values")
        self.attributes = self.codec.attribute_vector(defaults)
        self.crop_size = self.codec.spec.resolution
        self.code_size = self.codec.spec.password_bits

    def crop_matrix(self, kps5: np.ndarray) -> np.ndarray:
        from streamd.align import similarity_transform

        return similarity_transform(kps5, self.crop_size)

    def code_for_key(self, key: bytes) -> np.ndarray:
        from streamd.reversible.keys.restore_keys import derive_password_bits

        return derive_password_bits(key, self.code_size)

    def _attributes(self, n: int) -> np.ndarray:
        return np.repeat(self.attributes[None], n, axis=0)

    def encode(self, images: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return self.codec.encode(images, codes.astype(np.float32), self._attributes(len(images)))

    def decode(self, surrogates: np.ndarray, codes: np.ndarray) -> np.ndarray:
        from streamd.runtime.sdn_inversion import invert_encoder

        return invert_encoder(self.codec, surrogates, codes.astype(np.float32), self._attributes(len(surrogates)), None)


class SyntheticKeyedModel:
    """An `sdn-synthetic` model: Gaussian key codes, the reveal graph as its decoder."""

    code_kind = "gaussian"

    def __init__(self, models_dir: Path, name: str, threads: int = 1) -> None:
        from streamd.anonymize.synthetic import SyntheticCodec

        self.name = name
        self.codec = SyntheticCodec.from_manifest(models_dir, name, intra_op_threads=threads)
        self.crop_size = self.codec.spec.resolution
        self.code_size = self.codec.spec.code_dimensions

    def crop_matrix(self, kps5: np.ndarray) -> np.ndarray:
        from streamd.anonymize.synthetic import synthetic_crop_matrix

        spec = self.codec.spec
        return synthetic_crop_matrix(kps5, self.crop_size, spec.zoom, spec.centre_y)

    def code_for_key(self, key: bytes) -> np.ndarray:
        from streamd.anonymize.synthetic import code_from_track_secrets
        from streamd.reversible.keys.restore_keys import derive_password_bits

        class OneTrack:  # the secrets of one track keyed by `key`, as the daemon's key ring hands them out
            def password_bits(self, track_id: int, n_bits: int) -> np.ndarray:
                return derive_password_bits(key, n_bits)

        return code_from_track_secrets(OneTrack(), 0, self.code_size)

    def encode(self, images: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return self.codec.encode(images, codes)

    def decode(self, surrogates: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return self.codec.decode(surrogates, codes)


def load_keyed_model(models_dir: Path, name: str, threads: int = 1) -> KeyedModel:
    from streamd.anonymize.synthetic import SYNTHETIC_KIND

    kind = load_manifest(models_dir).model(name).kind
    if kind == "sdn":
        return SdnKeyedModel(models_dir, name, threads)
    if kind == SYNTHETIC_KIND:
        return SyntheticKeyedModel(models_dir, name, threads)
    raise ModelError(f"model {name} is a {kind!r} model; keyed evaluation knows 'sdn' and {SYNTHETIC_KIND!r}")
