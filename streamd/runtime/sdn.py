"""SDN inference on aligned face crops, through any ModelRunner (no torch needed with onnxruntime).

`SdnCodec.anonymize` turns aligned crops into surrogates for per-face passwords and attributes,
optionally shifted along latent manipulation directions (streamd.runtime.lsmm); `SdnCodec.restore` is
the inverse with the same password and attributes. All faces of a frame go through one batched call.
`encode` and `decode` are the same graphs on float NCHW arrays, for callers that iterate on them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamd.errors import ModelError
from streamd.runtime.base import ModelRunner
from streamd.runtime.manifest import load_manifest

logger = logging.getLogger(__name__)

ENCODER_INPUTS = ("crop", "password_bits", "attributes", "latent_shift")
ENCODER_OUTPUT = "surrogate"
DECODER_INPUTS = ("surrogate", "password_bits", "attributes")
DECODER_OUTPUT = "restored"
DEFAULT_SDN_MODEL = "sdn-tiny"


@dataclasses.dataclass(frozen=True)
class SdnSpec:
    resolution: int
    password_bits: int
    attribute_names: tuple[str, ...]
    #: (C, H, W) of the encoder's bottleneck, the shape of one face's latent shift.
    latent_shape: tuple[int, int, int]


def crops_bgr_to_nchw(crops_bgr: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 BGR -> (N, 3, S, S) float32 RGB in [-1, 1]."""
    rgb = crops_bgr[..., ::-1].astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))


def nchw_to_crops_bgr(images: np.ndarray) -> np.ndarray:
    """(N, 3, S, S) float RGB in [-1, 1] -> (N, S, S, 3) uint8 BGR."""
    rgb = np.clip(np.rint((images.transpose(0, 2, 3, 1) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])


class SdnCodec:
    """Encoder and decoder runners plus the spec they were trained with."""

    def __init__(self, encoder: ModelRunner, decoder: ModelRunner, spec: SdnSpec) -> None:
        if tuple(s.name for s in encoder.input_specs) != ENCODER_INPUTS or encoder.output_names != (ENCODER_OUTPUT,):
            raise ModelError(f"the SDN encoder graph must map {ENCODER_INPUTS} -> {ENCODER_OUTPUT}")
        if tuple(s.name for s in decoder.input_specs) != DECODER_INPUTS or decoder.output_names != (DECODER_OUTPUT,):
            raise ModelError(f"the SDN decoder graph must map {DECODER_INPUTS} -> {DECODER_OUTPUT}")
        shift_spec = encoder.input_specs[ENCODER_INPUTS.index("latent_shift")]
        if tuple(shift_spec.shape[1:]) != spec.latent_shape:
            raise ModelError(f"the SDN encoder's latent_shift is {shift_spec.shape[1:]}, expected {spec.latent_shape}")
        self.encoder = encoder
        self.decoder = decoder
        self.spec = spec

    @classmethod
    def from_manifest(
        cls,
        models_dir: str | Path | None = None,
        model_name: str = DEFAULT_SDN_MODEL,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        intra_op_threads: int = 0,
    ) -> "SdnCodec":
        """onnxruntime encoder and decoder of `model_name`, each file checked against its sha256."""
        from streamd.runtime.onnx_runner import OnnxRunner

        entry = load_manifest(models_dir).model(model_name)
        if entry.kind != "sdn":
            raise ModelError(f"model {model_name} is a {entry.kind!r} model, not an SDN")
        encoder = OnnxRunner(entry.verified_path("encoder_onnx"), providers, intra_op_threads)
        decoder = OnnxRunner(entry.verified_path("decoder_onnx"), providers, intra_op_threads)
        names = tuple(spec.name for spec in encoder.input_specs)
        if names != ENCODER_INPUTS:
            raise ModelError(f"{entry.verified_path('encoder_onnx')} has inputs {names}, expected {ENCODER_INPUTS} "
                             "(re-export it with export/export_onnx.py)")
        latent_shape = encoder.input_specs[ENCODER_INPUTS.index("latent_shift")].shape[1:]
        spec = SdnSpec(
            resolution=int(entry.require("resolution")),  # type: ignore[arg-type]
            password_bits=int(entry.require("password_bits")),  # type: ignore[arg-type]
            attribute_names=tuple(entry.require("attribute_names")),  # type: ignore[arg-type]
            latent_shape=tuple(int(dim) for dim in latent_shape),  # type: ignore[arg-type]
        )
        return cls(encoder, decoder, spec)

    def attribute_vector(self, values: dict[str, float]) -> np.ndarray:
        """(A,) float32 from {attribute name: value in [0, 1]}; every attribute must be given."""
        missing = [name for name in self.spec.attribute_names if name not in values]
        unknown = [name for name in values if name not in self.spec.attribute_names]
        if missing or unknown:
            raise ValueError(f"attributes missing {missing}, unknown {unknown}; the model has {self.spec.attribute_names}")
        return np.array([float(values[name]) for name in self.spec.attribute_names], np.float32)

    def check_inputs(self, crops_bgr: np.ndarray, password_bits: np.ndarray, attributes: np.ndarray) -> None:
        size = self.spec.resolution
        n = crops_bgr.shape[0] if crops_bgr.ndim == 4 else -1
        if crops_bgr.shape != (n, size, size, 3) or crops_bgr.dtype != np.uint8:
            raise ValueError(f"crops must be (N, {size}, {size}, 3) uint8 BGR, got {crops_bgr.shape} {crops_bgr.dtype}")
        if password_bits.shape != (n, self.spec.password_bits):
            raise ValueError(f"password_bits must be ({n}, {self.spec.password_bits}), got {password_bits.shape}")
        if not np.isin(password_bits, (0, 1)).all():
            raise ValueError("password_bits must hold only 0 and 1")
        if attributes.shape != (n, len(self.spec.attribute_names)):
            raise ValueError(f"attributes must be ({n}, {len(self.spec.attribute_names)}), got {attributes.shape}")

    def latent_shifts(self, n: int, latent_shift: np.ndarray | None) -> np.ndarray:
        """(N, C, H, W) float32 from one face's shift (C, H, W), a batch of shifts, or None (zeros)."""
        if latent_shift is None:
            return np.zeros((n, *self.spec.latent_shape), np.float32)
        shift = np.asarray(latent_shift, np.float32)
        if shift.shape == self.spec.latent_shape:
            shift = np.broadcast_to(shift, (n, *self.spec.latent_shape))
        if shift.shape != (n, *self.spec.latent_shape):
            raise ValueError(f"latent_shift must be {self.spec.latent_shape} or ({n}, *{self.spec.latent_shape}), "
                             f"got {shift.shape}")
        if not np.isfinite(shift).all():
            raise ValueError("latent_shift must be finite")
        return np.ascontiguousarray(shift)

    def anonymize(self, crops_bgr: np.ndarray, password_bits: np.ndarray, attributes: np.ndarray,
                  latent_shift: np.ndarray | None = None) -> np.ndarray:
        """Aligned crops (N, S, S, 3) uint8 BGR -> surrogate crops, same shape and dtype. `latent_shift`
        ((C, H, W) for every face, or (N, C, H, W)) moves the bottleneck; None is no manipulation."""
        self.check_inputs(crops_bgr, password_bits, attributes)
        if crops_bgr.shape[0] == 0:
            return crops_bgr.copy()
        return nchw_to_crops_bgr(self.encode(crops_bgr_to_nchw(crops_bgr), password_bits, attributes, latent_shift))

    def encode(self, images: np.ndarray, password_bits: np.ndarray, attributes: np.ndarray,
               latent_shift: np.ndarray | None = None) -> np.ndarray:
        """The encoder on float (N, 3, S, S) RGB in [-1, 1]; returns the surrogates the same way."""
        outputs = self.encoder.run({
            "crop": np.ascontiguousarray(images, np.float32),
            "password_bits": password_bits.astype(np.float32),
            "attributes": attributes.astype(np.float32),
            "latent_shift": self.latent_shifts(images.shape[0], latent_shift),
        })
        return outputs[ENCODER_OUTPUT]

    def decode(self, surrogates: np.ndarray, password_bits: np.ndarray, attributes: np.ndarray) -> np.ndarray:
        """The decoder on float (N, 3, S, S) RGB in [-1, 1]; returns the restored faces the same way."""
        outputs = self.decoder.run({
            "surrogate": np.ascontiguousarray(surrogates, np.float32),
            "password_bits": password_bits.astype(np.float32),
            "attributes": attributes.astype(np.float32),
        })
        return outputs[DECODER_OUTPUT]

    def restore(self, surrogates_bgr: np.ndarray, password_bits: np.ndarray, attributes: np.ndarray) -> np.ndarray:
        """Surrogate crops (N, S, S, 3) uint8 BGR -> restored crops (the original face only with the
        password and attributes used to anonymize)."""
        self.check_inputs(surrogates_bgr, password_bits, attributes)
        if surrogates_bgr.shape[0] == 0:
            return surrogates_bgr.copy()
        return nchw_to_crops_bgr(self.decode(crops_bgr_to_nchw(surrogates_bgr), password_bits, attributes))

    def close(self) -> None:
        self.encoder.close()
        self.decoder.close()


class SdnCropRunner:
    """One crop at a time under a fixed attribute vector: what the evaluation harness plugs in
    (streamd.evaluation.sdn_adapter.SdnCropRunner). Password bits come from
    streamd.reversible.keys.restore_keys.derive_password_bits."""

    def __init__(self, codec: SdnCodec, attributes: np.ndarray, model_sha256: str) -> None:
        if attributes.shape != (len(codec.spec.attribute_names),):
            raise ValueError(f"attributes must be ({len(codec.spec.attribute_names)},), got {attributes.shape}")
        self.codec = codec
        self.attributes = attributes.astype(np.float32)
        self.crop_size = codec.spec.resolution
        self.password_bits = codec.spec.password_bits
        self.model_sha256 = model_sha256

    def anonymize(self, crop_bgr: np.ndarray, password_bits: np.ndarray) -> np.ndarray:
        return self.codec.anonymize(crop_bgr[None], password_bits[None], self.attributes[None])[0]

    def reveal(self, surrogate_bgr: np.ndarray, password_bits: np.ndarray) -> np.ndarray:
        """What `streamd restore --mode neural` does: the decoder, refined by inverting the encoder."""
        from streamd.runtime.sdn_inversion import restore_by_inversion

        return restore_by_inversion(self.codec, surrogate_bgr[None], password_bits[None], self.attributes[None], None)[0]


def load_sdn_crop_runner(models_dir: str | Path | None = None, model_name: str = DEFAULT_SDN_MODEL) -> SdnCropRunner:
    """The default model through onnxruntime on the CPU, with the manifest's default attributes."""
    codec = SdnCodec.from_manifest(models_dir, model_name)
    entry = load_manifest(models_dir).model(model_name)
    defaults = entry.require("default_attributes")
    if not isinstance(defaults, dict):
        raise ModelError(f"manifest entry {model_name}: default_attributes must map names to values")
    model_sha256 = entry.files["encoder_onnx"].sha256
    return SdnCropRunner(codec, codec.attribute_vector(defaults), model_sha256)
