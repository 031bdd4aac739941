"""`method: sdn` with an `sdn-synthetic` model: every face becomes a keyed synthetic identity.

The track key is expanded into a Gaussian key code (streamd.anonymize.key_code); the code picks one
of the model's bank of synthetic identities (chosen at build time to be far apart for a face
recognizer), and the model's surrogate graph renders that face with the original's light, inside an
oval that covers forehead, eyes, cheeks, jaw and chin (streamd.nets.synthetic_identity has the
arithmetic). The crop is wider than the SDN's ArcFace crop (the template zoomed out by the model's
`zoom`) so the oval holds hairline and jaw. Nothing of the original's face detail is in the surrogate:
the exact restore is the sealed payload; the model's reveal graph gives back only the original's
light inside the oval (a plane per colour channel), which is no restore and no secret.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamd.align import ARCFACE_CROP_SIZE, ARCFACE_TEMPLATE_112, similarity_transform
from streamd.anonymize.base import TrackSecrets
from streamd.anonymize.crops import AlignedCropAnonymizer
from streamd.anonymize.key_code import KEY_CODE_LABEL, KEY_MATERIAL_BITS, key_code, key_from_bits
from streamd.anonymize.neural_models import SharedModelKey, acquire_model, release_model
from streamd.config import AnonymizerConfig
from streamd.errors import ConfigError, ModelError
from streamd.reversible.keys.restore_keys import new_track_key
from streamd.runtime.manifest import load_manifest
from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr
from streamd.types import TrackedFace

logger = logging.getLogger(__name__)

SYNTHETIC_KIND = "sdn-synthetic"
SURROGATE_INPUTS = ("crop", "key_code")
REVEAL_INPUTS = ("surrogate", "key_code")
IDENTITY_INPUTS = ("key_code",)


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    resolution: int
    code_dimensions: int
    zoom: float
    centre_y: float


def synthetic_crop_matrix(kps5: np.ndarray, size: int, zoom: float, centre_y: float) -> np.ndarray:
    """2x3 frame -> crop matrix: the ArcFace alignment, zoomed by `zoom` about the template's centre,
    which lands at (0.5, centre_y) of the crop."""
    matrix = similarity_transform(kps5, size).astype(np.float64)
    template_centre = ARCFACE_TEMPLATE_112.mean(axis=0).astype(np.float64) / ARCFACE_CROP_SIZE
    zoomed = matrix * zoom
    zoomed[:, 2] += size * (np.array([0.5, centre_y]) - zoom * template_centre)
    return zoomed.astype(np.float32)


def synthetic_template(size: int, zoom: float, centre_y: float) -> np.ndarray:
    """Where the five landmarks land in the crop, (5, 2) float32."""
    template = ARCFACE_TEMPLATE_112.astype(np.float64) / ARCFACE_CROP_SIZE
    centre = template.mean(axis=0)
    return (((template - centre) * zoom + np.array([0.5, centre_y])) * size).astype(np.float32)


def code_from_track_secrets(secrets: TrackSecrets, track_id: int, dimensions: int) -> np.ndarray:
    """The key code of a track: 256 bits of the track's secrets (all of its key) expanded by HKDF."""
    return key_code(key_from_bits(secrets.password_bits(track_id, KEY_MATERIAL_BITS)), dimensions)


class SyntheticCodec:
    """The surrogate, reveal and identity graphs of one `sdn-synthetic` model, through onnxruntime."""

    def __init__(self, surrogate, reveal, identity, spec: SyntheticSpec) -> None:
        for runner, inputs in ((surrogate, SURROGATE_INPUTS), (reveal, REVEAL_INPUTS), (identity, IDENTITY_INPUTS)):
            names = tuple(s.name for s in runner.input_specs)
            if names != inputs:
                raise ModelError(f"{getattr(runner, 'model_path', 'a graph')} has inputs {names}, expected {inputs}")
        self.surrogate_graph = surrogate
        self.reveal_graph = reveal
        self.identity_graph = identity
        self.spec = spec

    @classmethod
    def from_manifest(cls, models_dir: str | Path | None, model_name: str,
                      providers: Sequence[str] = ("CPUExecutionProvider",), intra_op_threads: int = 0) -> "SyntheticCodec":
        from streamd.runtime.onnx_runner import OnnxRunner

        entry = load_manifest(models_dir).model(model_name)
        if entry.kind != SYNTHETIC_KIND:
            raise ModelError(f"model {model_name} is a {entry.kind!r} model, not {SYNTHETIC_KIND!r}")
        config = entry.require("config")
        if not isinstance(config, dict):
            raise ModelError(f"manifest entry {model_name}: config must be a mapping")
        try:
            spec = SyntheticSpec(resolution=int(config["resolution"]), code_dimensions=int(config["code_dimensions"]),
                                 zoom=float(config["zoom"]), centre_y=float(config["centre_y"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"manifest entry {model_name}: config lacks or mangles {error}") from None
        runners = [OnnxRunner(entry.verified_path(role), providers, intra_op_threads)
                   for role in ("surrogate_onnx", "reveal_onnx", "identity_onnx")]
        return cls(*runners, spec)

    def check_codes(self, codes: np.ndarray, n: int) -> np.ndarray:
        codes = np.asarray(codes, np.float32)
        if codes.shape != (n, self.spec.code_dimensions) or not np.isfinite(codes).all():
            raise ValueError(f"key codes must be finite ({n}, {self.spec.code_dimensions}), got {codes.shape}")
        return np.ascontiguousarray(codes)

    def encode(self, images: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Float (N, 3, S, S) RGB in [-1, 1] -> surrogates the same way."""
        codes = self.check_codes(codes, images.shape[0])
        return self.surrogate_graph.run({"crop": np.ascontiguousarray(images, np.float32), "key_code": codes})["surrogate"]

    def decode(self, surrogates: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """What a surrogate and its code give back of the original: its light inside the oval only."""
        codes = self.check_codes(codes, surrogates.shape[0])
        return self.reveal_graph.run({"surrogate": np.ascontiguousarray(surrogates, np.float32),
                                      "key_code": codes})["revealed"]

    def identity(self, codes: np.ndarray) -> np.ndarray:
        """(N, 1, S, S) grey synthetic faces in [-1, 1]."""
        codes = self.check_codes(codes, codes.shape[0])
        return self.identity_graph.run({"key_code": codes})["identity"]

    def anonymize(self, crops_bgr: np.ndarray, codes: np.ndarray) -> np.ndarray:
        size = self.spec.resolution
        if crops_bgr.ndim != 4 or crops_bgr.shape[1:] != (size, size, 3) or crops_bgr.dtype != np.uint8:
            raise ValueError(f"crops must be (N, {size}, {size}, 3) uint8 BGR, got {crops_bgr.shape} {crops_bgr.dtype}")
        if crops_bgr.shape[0] == 0:
            return crops_bgr.copy()
        return nchw_to_crops_bgr(self.encode(crops_bgr_to_nchw(crops_bgr), codes))

    def close(self) -> None:
        for runner in (self.surrogate_graph, self.reveal_graph, self.identity_graph):
            runner.close()


class EphemeralKeys:
    """Random per-track key material kept only in memory (nobody can restore these tracks)."""

    def __init__(self) -> None:
        self._keys: dict[int, bytes] = {}

    def password_bits(self, track_id: int, n_bits: int) -> np.ndarray:
        key = self._keys.setdefault(track_id, new_track_key())
        bits = np.unpackbits(np.frombuffer(key, np.uint8)).astype(np.float32)
        if n_bits > bits.size:
            raise ValueError(f"an ephemeral key has {bits.size} bits, {n_bits} asked")
        return bits[:n_bits]

    def forget(self, track_id: int) -> None:
        self._keys.pop(track_id, None)


class SyntheticIdentityAnonymizer(AlignedCropAnonymizer):
    method = "sdn"
    keyed = True

    def __init__(self, config: AnonymizerConfig, codec: SyntheticCodec | None = None) -> None:
        self._config = config
        self._shared_key: SharedModelKey | None = None
        unsupported = [name for name in ("attributes", "manipulations") if getattr(config.sdn, name)]
        if unsupported:
            raise ConfigError(f"sdn model {config.sdn.model} is a keyed synthetic identity model: it takes no "
                              f"{' and no '.join(unsupported)} (remove anonymizer.sdn.{unsupported[0]})")
        if codec is None:
            sdn = config.sdn
            codec, self._shared_key = acquire_model("sdn", sdn, lambda: SyntheticCodec.from_manifest(
                sdn.models_dir, sdn.model, sdn.providers, sdn.intra_op_threads))
        self.codec = codec
        super().__init__(codec.spec.resolution, config.feather)
        self._ephemeral = EphemeralKeys()
        self._secrets: TrackSecrets = self._ephemeral
        self._codes: dict[int, np.ndarray] = {}
        logger.info("sdn model %s: keyed synthetic identities, %dx%d crops, %d-dimensional key codes",
                    config.sdn.model, self.crop_size, self.crop_size, codec.spec.code_dimensions)

    def use_track_secrets(self, secrets: TrackSecrets) -> None:
        self._secrets = secrets

    def method_details(self) -> dict[str, object]:
        return {"model": self._config.sdn.model, "crop_size": self.crop_size, "feather": self._config.feather,
                "key_code": {"label": KEY_CODE_LABEL.decode(), "dimensions": self.codec.spec.code_dimensions,
                             "key_bits": KEY_MATERIAL_BITS},
                "crop_zoom": self.codec.spec.zoom, "crop_centre_y": self.codec.spec.centre_y}

    def crop_matrix(self, face: TrackedFace) -> np.ndarray:
        return synthetic_crop_matrix(face.kps5, self.crop_size, self.codec.spec.zoom, self.codec.spec.centre_y)

    def _code(self, track_id: int) -> np.ndarray:
        code = self._codes.get(track_id)
        if code is None:
            code = code_from_track_secrets(self._secrets, track_id, self.codec.spec.code_dimensions)
            self._codes[track_id] = code
        return code

    def end_track(self, track_id: int) -> None:
        self._codes.pop(track_id, None)
        self._ephemeral.forget(track_id)

    def replace_crops(self, crops_bgr: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
        codes = np.stack([self._code(face.track_id) for face in faces])
        return self.codec.anonymize(crops_bgr, codes)

    def close(self) -> None:
        if self._shared_key is None:
            self.codec.close()
        else:
            release_model(self._shared_key)
