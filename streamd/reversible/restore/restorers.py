"""How one face of one frame is restored: sealed face streams, sealed PNG crops, neural methods.

`FaceStreamRestorer` decodes the selected tracks' sealed face streams (format version 2),
`SealedPayloadRestorer` opens the sealed PNG crops of version 1 recordings, and neural restorers (the
SDN decoder keyed by the track's password, the CycleGAN's F) plug in through `NEURAL_RESTORERS`,
keyed by anonymization method. Compositing, spans and auditing are in `streamd.reversible.restore.restore`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import av
import numpy as np

from streamd.errors import StreamdError
from streamd.reversible.sealing.face_stream import DecodedCanvas, FaceStreamDecoder
from streamd.reversible.keys.restore_keys import derive_payload_key
from streamd.reversible.neighbours import FaceArea, owned_mask
from streamd.reversible.restore.shared_chroma import fill_shared_chroma
from streamd.reversible.recording.recording_format import FrameRecord, Recording
from streamd.reversible.sealing.payloads import BOX_SCALE, open_packet, open_sealed
from streamd.reversible.sealing.stream_sealer import (
    GEOMETRY_BOX,
    SEALED_FACE_KIND,
    SEALED_FACE_PACKET_KIND,
    binding_for_payload,
    box_region_from_binding,
)

RESTORE_MODES = ("sealed", "neural", "cyclegan")


class RestoreError(StreamdError):
    """A restore cannot be done as asked (bad selection, missing keys or payloads, unsupported mode)."""


@dataclass(frozen=True)
class RestoredFace:
    """Pixels to put back over `region_xyxy` of the frame: BGR, or the face stream's own 4:4:4 planes
    (Y, U, V; `yuv444`), which restore pastes into yuv420p frames without a round trip through BGR."""

    track_id: int
    region_xyxy: tuple[int, int, int, int]
    bgr: np.ndarray | None = None
    #: Pixels of the region that belong to this face (neighbours' pixels are not pasted); None: all.
    mask: np.ndarray | None = None
    yuv444: np.ndarray | None = None
    #: The decoded face-stream canvas `yuv444` comes from: `as_bgr` converts its 4:2:0 picture the way
    #: the source's frames are converted, which the 4:4:4 planes (chroma repeated) cannot match.
    canvas: DecodedCanvas | None = None

    def as_bgr(self) -> np.ndarray:
        if self.bgr is not None:
            return self.bgr
        if self.canvas is not None:
            return self.canvas.region_bgr(self.region_xyxy)
        assert self.yuv444 is not None
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(self.yuv444), format="yuv444p").to_ndarray(format="bgr24")

    def as_yuv444(self) -> np.ndarray:
        if self.yuv444 is not None:
            return self.yuv444
        assert self.bgr is not None
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(self.bgr), format="bgr24").reformat(format="yuv444p").to_ndarray()



def frame_size(record: FrameRecord) -> tuple[int, int]:
    return int(record.document["width"]), int(record.document["height"])



class FaceRestorer(abc.ABC):
    """Turns one anonymized face of one frame back into its original pixels."""

    mode: str
    #: Whether `restore_face` reads the anonymized pixels (neural methods); sealed restorers do not, so
    #: restore can composite in the video's own yuv420p planes.
    needs_pixels = True

    @abc.abstractmethod
    def restore_face(self, anonymized_bgr: np.ndarray, record: FrameRecord, track_id: int) -> RestoredFace | None:
        """The face of `track_id` in this frame, or None when the frame holds nothing to restore for it.
        Raises StreamdError (SealError for a payload that fails to open) when it cannot."""


class SealedPayloadRestorer(FaceRestorer):
    """Opens the track's sealed payloads: exact original pixels."""

    mode = "sealed"
    needs_pixels = False

    def __init__(self, camera: str, stream_epoch: str, payload_keys: Mapping[int, bytes]) -> None:
        self._camera = camera
        self._stream_epoch = stream_epoch
        self._payload_keys = dict(payload_keys)

    def restore_face(self, anonymized_bgr: np.ndarray, record: FrameRecord, track_id: int) -> RestoredFace | None:
        positions = [
            position for position, descriptor in enumerate(record.payload_descriptors)
            if descriptor.get("kind") == SEALED_FACE_KIND and descriptor.get("track_id") == track_id
        ]
        if not positions:
            return None
        if len(positions) > 1:
            raise RestoreError(f"frame {record.frame_index}: {len(positions)} sealed payloads claim track {track_id}")
        descriptor = record.payload_descriptors[positions[0]]
        if descriptor.get("geometry") != GEOMETRY_BOX:
            raise RestoreError(f"frame {record.frame_index}, track {track_id}: sealed payload geometry "
                               f"{descriptor.get('geometry')!r} is not supported by this build")
        binding = binding_for_payload(
            camera=self._camera, stream_epoch=self._stream_epoch, frame_index=record.frame_index,
            pts=record.pts, descriptor=descriptor,
        )
        crop_bgr = open_sealed(record.payload_data[positions[0]], self._payload_keys[track_id], binding)
        region_xyxy = box_region_from_binding(binding)
        width, height = frame_size(record)
        x0, y0, x1, y1 = region_xyxy
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise RestoreError(f"frame {record.frame_index}, track {track_id}: sealed region {list(region_xyxy)} "
                               f"lies outside the {width}x{height} frame")
        return RestoredFace(track_id=track_id, region_xyxy=region_xyxy, bgr=crop_bgr)


def face_areas(record: FrameRecord) -> list[FaceArea]:
    """The sealed region and box of every face of a record that has a sealed face-stream packet."""
    areas: list[FaceArea] = []
    for descriptor in record.payload_descriptors:
        if descriptor.get("kind") != SEALED_FACE_PACKET_KIND:
            continue
        box = tuple(float(value) / BOX_SCALE for value in descriptor["box_e2"])
        areas.append(FaceArea(int(descriptor["track_id"]), tuple(int(v) for v in descriptor["region_xyxy"]),  # type: ignore[arg-type]
                              box))  # type: ignore[arg-type]
    return areas


class FaceStreamRestorer(FaceRestorer):
    """Decodes the sealed face streams of the selected tracks (signed recordings, format version 2).

    Each packet is opened with the track's payload key and its binding rebuilt from where it is found;
    a track's stream decodes from a key frame on, so a restore that starts mid-track first feeds the
    packets from the key frame before (`advance`, or the preroll a segment carries)."""

    mode = "sealed"
    needs_pixels = False

    def __init__(self, camera: str, stream_epoch: str, payload_keys: Mapping[int, bytes]) -> None:
        self._camera = camera
        self._stream_epoch = stream_epoch
        self._payload_keys = dict(payload_keys)
        self._decoders = {track_id: FaceStreamDecoder() for track_id in payload_keys}

    def _decode(self, descriptor: Mapping[str, object], data: bytes, frame_index: int,
                pts: int | None) -> DecodedCanvas | None:
        track_id = int(descriptor["track_id"])  # type: ignore[arg-type]
        binding = binding_for_payload(camera=self._camera, stream_epoch=self._stream_epoch, frame_index=frame_index,
                                      pts=pts, descriptor=descriptor)
        packet = open_packet(data, self._payload_keys[track_id], binding)
        return self._decoders[track_id].decode(int(descriptor["part"]), int(descriptor["number"]),  # type: ignore[arg-type]
                                               bool(descriptor["keyframe"]), packet)

    def _packet(self, record: FrameRecord, track_id: int) -> tuple[dict[str, object], bytes] | None:
        found = [(descriptor, data) for descriptor, data in zip(record.payload_descriptors, record.payload_data)
                 if descriptor.get("kind") == SEALED_FACE_PACKET_KIND and descriptor.get("track_id") == track_id]
        if len(found) > 1:
            raise RestoreError(f"frame {record.frame_index}: {len(found)} sealed packets claim track {track_id}")
        return found[0] if found else None

    def take_preroll(self, record: FrameRecord) -> None:
        """Feed the earlier packets a segment carries so its tracks decode from their first frame."""
        for packet in record.preroll:
            track_id = packet.descriptor.get("track_id")
            if track_id in self._decoders:
                self._decode(packet.descriptor, packet.data, int(packet.descriptor["frame_index"]),
                             packet.descriptor.get("pts"))  # type: ignore[arg-type]

    def advance(self, record: FrameRecord, track_id: int) -> None:
        """Decode this record's packet for `track_id` without restoring it (a frame before the span)."""
        found = self._packet(record, track_id)
        if found is not None:
            self._decode(found[0], found[1], record.frame_index, record.pts)

    def restore_face(self, anonymized_bgr: np.ndarray, record: FrameRecord, track_id: int) -> RestoredFace | None:
        found = self._packet(record, track_id)
        if found is None:
            return None
        descriptor, data = found
        canvas = self._decode(descriptor, data, record.frame_index, record.pts)
        if canvas is None:
            raise RestoreError(f"frame {record.frame_index}, track {track_id}: its face stream cannot be decoded here "
                               "(packets before it are missing; it resumes at the track's next key frame)")
        binding = binding_for_payload(camera=self._camera, stream_epoch=self._stream_epoch,
                                      frame_index=record.frame_index, pts=record.pts, descriptor=descriptor)
        x0, y0, x1, y1 = box_region_from_binding(binding)
        width, height = frame_size(record)
        planes = canvas.region((x0, y0, x1, y1))
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height or planes.shape[1:] != (y1 - y0, x1 - x0):
            raise RestoreError(f"frame {record.frame_index}, track {track_id}: sealed region {[x0, y0, x1, y1]} "
                               f"does not fit the {width}x{height} frame or its face-stream canvas")
        areas = face_areas(record)
        mine = next(area for area in areas if area.track_id == track_id)
        mask = owned_mask(mine, areas)
        canvas = fill_shared_chroma(canvas, (x0, y0, x1, y1), mask)
        return RestoredFace(track_id=track_id, region_xyxy=(x0, y0, x1, y1), yuv444=canvas.region((x0, y0, x1, y1)),
                            mask=mask, canvas=canvas)


def _sdn_restorer(recording: Recording, track_keys: Mapping[int, bytes]) -> FaceRestorer:
    from streamd.reversible.restore.restore_neural import SdnNeuralRestorer

    return SdnNeuralRestorer(recording.records[0].document.get("method_details", {}), track_keys)


def _cyclegan_restorer(recording: Recording, track_keys: Mapping[int, bytes]) -> FaceRestorer:
    from streamd.reversible.restore.restore_neural import CycleganRestorer

    return CycleganRestorer(recording.records[0].document.get("method_details", {}))


#: Neural restorers by anonymization method: a factory taking the recording and {track_id: track_key}.
NEURAL_RESTORERS: dict[str, Callable[[Recording, Mapping[int, bytes]], FaceRestorer]] = {
    "sdn": _sdn_restorer, "cyclegan": _cyclegan_restorer,
}


def build_restorer(mode: str, method: str, recording: Recording, track_keys: Mapping[int, bytes]) -> FaceRestorer:
    if mode == "sealed":
        payload_keys = {track_id: derive_payload_key(track_key) for track_id, track_key in track_keys.items()}
        if recording.signed:
            return FaceStreamRestorer(recording.camera, recording.stream_epoch, payload_keys)
        return SealedPayloadRestorer(recording.camera, recording.stream_epoch, payload_keys)
    if mode == "cyclegan" and method != "cyclegan":
        raise RestoreError(f"--mode cyclegan restores recordings made with method cyclegan, not {method!r}")
    if mode in ("neural", "cyclegan"):
        factory = NEURAL_RESTORERS.get(method)
        if factory is None:
            raise RestoreError(f"no neural model for method {method!r}: faces anonymized with {method} can only be "
                               "restored from sealed payloads (--mode sealed)")
        return factory(recording, track_keys)
    raise RestoreError(f"unknown restore mode {mode!r}; one of {', '.join(RESTORE_MODES)}")
