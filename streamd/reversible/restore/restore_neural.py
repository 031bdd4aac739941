"""Neural restore: a network turns a recorded anonymized crop back into the face.

- `method: sdn` (`streamd restore --mode neural`): the SDN decoder, with the password derived from the
  track key (the same derivation the daemon used) and the attribute values of `method_details`, its
  output refined by inverting the encoder under the same password (streamd.runtime.sdn_inversion).
  When the recording was made with a latent manipulation (`method_details.manipulation`) the
  inversion uses the recorded shift; the directions file must be the one recorded (same sha256).
- `method: cyclegan` (`streamd restore --mode cyclegan`, or `--mode neural`): the CycleGAN's F. F takes
  no key; the track keys are still unwrapped before it runs, so only a holder of a restore private key
  for a reversible recording gets a restore (and an audit entry), like every other mode.

The crop geometry comes from the frame's recorded landmarks, the model from its `method_details`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import numpy as np

from streamd.align import crop_footprint, feathered_mask, paste_back, similarity_transform, warp_to_crop
from streamd.config import AnonymizerConfig
from streamd.errors import StreamdError
from streamd.reversible.keys.restore_keys import derive_password_bits
from streamd.reversible.recording.recording_format import FrameRecord
from streamd.reversible.restore.restorers import FaceRestorer, RestoredFace
from streamd.runtime.cyclegan import CycleganReidentifier, load_cyclegan_reidentifier
from streamd.runtime.lsmm import load_directions
from streamd.runtime.sdn import SdnCodec
from streamd.runtime.sdn_inversion import restore_by_inversion

DEFAULT_FEATHER = AnonymizerConfig.model_fields["feather"].default


class NeuralRestoreError(StreamdError):
    """A recorded frame lacks what the neural decoder needs."""


class AlignedCropRestorer(FaceRestorer):
    """Warps a recorded face to its aligned crop, runs `restore_crop` and pastes the result back."""

    method: str
    crop_size: int
    _mask: np.ndarray
    _method_details: dict[str, object]

    @abc.abstractmethod
    def restore_crop(self, crop_bgr: np.ndarray, track_id: int) -> np.ndarray:
        """One aligned anonymized crop (S, S, 3) uint8 BGR of `track_id` -> the restored crop."""

    def restore_face(self, anonymized_bgr: np.ndarray, record: FrameRecord, track_id: int) -> RestoredFace | None:
        faces = [face for face in record.document["faces"] if int(face["track_id"]) == track_id]
        if not faces:
            return None
        if record.document.get("method_details", self._method_details) != self._method_details:
            raise NeuralRestoreError(f"frame {record.frame_index}: {self.method} settings changed within the recording")
        kps5 = np.asarray(faces[0]["kps5"], np.float32)
        matrix = similarity_transform(kps5, self.crop_size)
        crop = warp_to_crop(anonymized_bgr, matrix, self.crop_size)
        restored = self.restore_crop(crop, track_id)
        height, width = anonymized_bgr.shape[:2]
        x0, y0, x1, y1 = crop_footprint(matrix, self.crop_size, (width, height))
        if x1 <= x0 or y1 <= y0:
            return None
        pasted = paste_back(anonymized_bgr, restored, matrix, self._mask)
        return RestoredFace(track_id=track_id, region_xyxy=(x0, y0, x1, y1), bgr=pasted[y0:y1, x0:x1].copy())


def _recorded_model(method: str, method_details: Mapping[str, object]) -> str:
    model = method_details.get("model")
    if not isinstance(model, str):
        raise NeuralRestoreError(f"the recording does not name the {method} model it was made with "
                                 "(method_details.model)")
    return model


def _recorded_mask(method_details: Mapping[str, object], crop_size: int) -> np.ndarray:
    return feathered_mask(crop_size, float(method_details.get("feather", DEFAULT_FEATHER)))  # type: ignore[arg-type]


class SdnNeuralRestorer(AlignedCropRestorer):
    """Runs the SDN decoder, refined by encoder inversion, on one recorded face at a time."""

    mode = "neural"
    method = "sdn"

    def __init__(self, method_details: Mapping[str, object], track_keys: Mapping[int, bytes],
                 codec: SdnCodec | None = None) -> None:
        model = _recorded_model(self.method, method_details)
        self._method_details = dict(method_details)
        self.codec = codec if codec is not None else SdnCodec.from_manifest(None, model)
        self.crop_size = self.codec.spec.resolution
        recorded_size = method_details.get("crop_size")
        if recorded_size != self.crop_size:
            raise NeuralRestoreError(f"the recording used {recorded_size}-pixel crops but model {model} has "
                                     f"{self.crop_size}")
        attributes = method_details.get("attributes", {})
        if not isinstance(attributes, dict):
            raise NeuralRestoreError("method_details.attributes must be an object")
        self._attribute_vector = self.codec.attribute_vector({str(k): float(v) for k, v in attributes.items()})
        self._mask = _recorded_mask(method_details, self.crop_size)
        self._bits = {track_id: derive_password_bits(key, self.codec.spec.password_bits)
                      for track_id, key in track_keys.items()}
        self._latent_shift = _recorded_shift(method_details, model)

    def restore_crop(self, crop_bgr: np.ndarray, track_id: int) -> np.ndarray:
        bits, attributes = self._bits[track_id][None], self._attribute_vector[None]
        return restore_by_inversion(self.codec, crop_bgr[None], bits, attributes, self._latent_shift)[0]


def _recorded_shift(method_details: Mapping[str, object], model: str) -> np.ndarray | None:
    """The latent shift the recording was made with, from the model's directions file (None: none)."""
    manipulation = method_details.get("manipulation")
    if manipulation is None:
        return None
    if not isinstance(manipulation, dict) or not isinstance(manipulation.get("degrees"), dict):
        raise NeuralRestoreError("method_details.manipulation must be an object with degrees")
    directions = load_directions(None, model)
    if manipulation.get("directions_sha256") != directions.sha256:
        raise NeuralRestoreError(f"the recording was manipulated with directions file sha256 "
                                 f"{manipulation.get('directions_sha256')}, but model {model} has {directions.sha256}")
    try:
        return directions.shift({str(name): float(degree) for name, degree in manipulation["degrees"].items()})
    except (TypeError, ValueError) as error:
        raise NeuralRestoreError(f"method_details.manipulation: {error}") from None


class CycleganRestorer(AlignedCropRestorer):
    """Runs the CycleGAN's F on one recorded face at a time (F takes no key)."""

    mode = "cyclegan"
    method = "cyclegan"

    def __init__(self, method_details: Mapping[str, object], reidentifier: CycleganReidentifier | None = None) -> None:
        model = _recorded_model(self.method, method_details)
        self._method_details = dict(method_details)
        self.reidentifier = reidentifier if reidentifier is not None else load_cyclegan_reidentifier(None, model)
        self.crop_size = self.reidentifier.spec.resolution
        recorded_size = method_details.get("crop_size")
        if recorded_size != self.crop_size:
            raise NeuralRestoreError(f"the recording used {recorded_size}-pixel crops but model {model} has "
                                     f"{self.crop_size}")
        self._mask = _recorded_mask(method_details, self.crop_size)

    def restore_crop(self, crop_bgr: np.ndarray, track_id: int) -> np.ndarray:
        return self.reidentifier.reidentify(crop_bgr[None])[0]
