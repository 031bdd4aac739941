"""Neural restore: the SDN decoder turns a recorded surrogate back into the face, given the track key.

Used by `streamd restore --mode neural` for recordings made with `method: sdn`. The crop geometry
comes from the frame's recorded landmarks, the model and attribute values from its `method_details`,
and the password from the track key (the same derivation the daemon used).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from streamd.align import crop_footprint, feathered_mask, paste_back, similarity_transform, warp_to_crop
from streamd.config import AnonymizerConfig
from streamd.errors import StreamdError
from streamd.keys import derive_password_bits
from streamd.recording_format import FrameRecord
from streamd.restore import FaceRestorer, RestoredFace
from streamd.runtime.sdn import SdnCodec

DEFAULT_FEATHER = AnonymizerConfig.model_fields["feather"].default


class NeuralRestoreError(StreamdError):
    """A recorded frame lacks what the neural decoder needs."""


class SdnNeuralRestorer(FaceRestorer):
    """Runs the SDN decoder on one recorded face at a time."""

    mode = "neural"

    def __init__(self, method_details: Mapping[str, object], track_keys: Mapping[int, bytes],
                 codec: SdnCodec | None = None) -> None:
        model = method_details.get("model")
        if not isinstance(model, str):
            raise NeuralRestoreError("the recording does not name the sdn model it was made with (method_details.model)")
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
        feather = float(method_details.get("feather", DEFAULT_FEATHER))  # type: ignore[arg-type]
        self._mask = feathered_mask(self.crop_size, feather)
        self._bits = {track_id: derive_password_bits(key, self.codec.spec.password_bits)
                      for track_id, key in track_keys.items()}

    def restore_face(self, anonymized_bgr: np.ndarray, record: FrameRecord, track_id: int) -> RestoredFace | None:
        faces = [face for face in record.document["faces"] if int(face["track_id"]) == track_id]
        if not faces:
            return None
        if record.document.get("method_details", self._method_details) != self._method_details:
            raise NeuralRestoreError(f"frame {record.frame_index}: sdn settings changed within the recording")
        kps5 = np.asarray(faces[0]["kps5"], np.float32)
        matrix = similarity_transform(kps5, self.crop_size)
        crop = warp_to_crop(anonymized_bgr, matrix, self.crop_size)
        restored = self.codec.restore(crop[None], self._bits[track_id][None], self._attribute_vector[None])[0]
        height, width = anonymized_bgr.shape[:2]
        x0, y0, x1, y1 = crop_footprint(matrix, self.crop_size, (width, height))
        if x1 <= x0 or y1 <= y0:
            return None
        pasted = paste_back(anonymized_bgr, restored, matrix, self._mask)
        return RestoredFace(track_id=track_id, region_xyxy=(x0, y0, x1, y1), bgr=pasted[y0:y1, x0:x1].copy())
