"""The daemon's half of reversibility: per-track keys and sealed original face regions.

For one stream (one camera, one stream epoch) a `StreamSealer`

- makes a fresh track key when a track starts, wraps it to every configured restore public key and
  hands the wrapped keys to the sinks (in the `track_start` event, and again every `key_repeat_s`
  stream seconds in `track_keys` events, so a late subscriber can still restore);
- encodes, per track, the original pixels of exactly the region the anonymizer replaced as a face
  stream (`streamd.reversible.sealing.face_stream`: one H.264 packet per face per frame, key frames at least
  every 2 s) and seals each packet, bound to camera, stream epoch, frame index, pts, track id,
  geometry and face-stream position (`streamd.reversible.sealing.payloads`). The region is cut from the decoded
  source's yuv420p planes when the frame carries them (`VideoFrame.yuv420`; the app asks the source
  for them whenever payloads are sealed), from the BGR pixels otherwise. Pixels of a neighbouring face
  inside a region are blanked first (`streamd.reversible.neighbours`);
- forgets a track's key when the track ends.

The pipeline calls it from its anonymize stage and passes the result to the sinks in
`AnonymizedFrame.extras[SEALING_EXTRAS_KEY]`. Track keys never leave this module unwrapped.

Geometry. A sealed payload holds a crop and the 2x3 affine matrix that maps frame pixels to crop
pixels. Classical methods (blur, mosaic, solid) replace the face box grown by `margin`
(`streamd.align.expand_box`), so their payload is that axis-aligned region: geometry `"box"`,
affine `[[1, 0, -x0], [0, 1, -y0]]`, crop size `(x1 - x0, y1 - y0)`. A crop-based method would seal the
bounding box of its warped crop with geometry `"box"` as well, or its aligned crop with geometry
`"affine"`; `FaceAnonymizer.region_of` is where a method declares which region it changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamd.config import CameraConfig, ReversibleConfig
from streamd.errors import StreamdError
from streamd.reversible.keys.restore_keys import (
    RestorePublicKey,
    derive_password_bits,
    derive_payload_key,
    load_public_keys,
    new_track_key,
    track_key_context,
    wrap_track_key,
)
from streamd.reversible.sealing.face_planes import region_planes
from streamd.reversible.sealing.face_rate import FaceQuality
from streamd.reversible.sealing.face_stream import FaceStreamEncoder
from streamd.reversible.neighbours import FaceArea, blank_neighbours, overlapping_neighbours, owned_mask
from streamd.reversible.sealing.payloads import AFFINE_SCALE, BOX_SCALE, SealBinding, seal_packet
from streamd.types import TrackedFace, VideoFrame

logger = logging.getLogger(__name__)

#: The anonymizer's region for a face: (face, frame_wh) -> integer xyxy (`FaceAnonymizer.region_of`).
RegionOf = Callable[[TrackedFace, tuple[int, int]], tuple[int, int, int, int]]

SEALING_EXTRAS_KEY = "sealing"
SEALED_FACE_KIND = "sealed_face"
SEALED_FACE_PACKET_KIND = "sealed_face_packet"
GEOMETRY_BOX = "box"


class SealingError(StreamdError):
    """Sealed payloads cannot be made for this stream or this frame."""


@dataclass
class SealedFrame:
    """What sealing produced for one frame, for the sinks.

    `payloads`: (descriptor, sealed blob) per face, in the order of the frame's faces; the descriptor
    is the frame header's `payloads[]` entry without `size`. `started_keys` and `repeated_keys` map a
    track id to its wrapped keys (`WrappedKey.to_dict()` entries): tracks that start at this frame, and
    live tracks whose keys are due to be repeated.
    """

    payloads: list[tuple[dict[str, object], bytes]] = field(default_factory=list)
    started_keys: dict[int, list[dict[str, object]]] = field(default_factory=dict)
    repeated_keys: dict[int, list[dict[str, object]]] = field(default_factory=dict)


def box_affine_e4(region_xyxy: Sequence[int]) -> tuple[int, int, int, int, int, int]:
    """The frame-to-crop affine matrix of an axis-aligned crop starting at (x0, y0), [[1, 0, -x0], [0, 1, -y0]],
    as a binding holds it (units of 1 / AFFINE_SCALE)."""
    x0, y0 = int(region_xyxy[0]), int(region_xyxy[1])
    return (AFFINE_SCALE, 0, -x0 * AFFINE_SCALE, 0, AFFINE_SCALE, -y0 * AFFINE_SCALE)


def box_region_from_binding(binding: SealBinding) -> tuple[int, int, int, int]:
    """The frame region of a `"box"` payload, from its authenticated affine matrix and crop size.

    Raises SealingError when the affine matrix is not a pure integer translation.
    """
    a, b, tx, c, d, ty = binding.affine_e4
    if (a, b, c, d) != (AFFINE_SCALE, 0, 0, AFFINE_SCALE) or tx % AFFINE_SCALE or ty % AFFINE_SCALE:
        raise SealingError(
            f"frame {binding.frame_index}, track {binding.track_id}: a box payload's affine matrix must be an "
            f"integer translation, got {list(binding.affine_e4)} (units of 1e-4)"
        )
    x0, y0 = -tx // AFFINE_SCALE, -ty // AFFINE_SCALE
    width, height = binding.crop_wh
    return (x0, y0, x0 + width, y0 + height)


def binding_for_payload(
    *, camera: str, stream_epoch: str, frame_index: int, pts: int | None, descriptor: Mapping[str, object]
) -> SealBinding:
    """Rebuild a payload's binding: where it sits (camera ... pts) comes from the frame it is found in,
    its track and geometry from its descriptor. A payload moved to another frame therefore fails to open."""
    face_stream = None
    if descriptor.get("kind") == SEALED_FACE_PACKET_KIND:
        try:
            canvas_wh = descriptor["canvas_wh"]
            face_stream = (int(descriptor["part"]), int(descriptor["number"]),  # type: ignore[arg-type]
                           int(canvas_wh[0]), int(canvas_wh[1]),  # type: ignore[index]
                           int(bool(descriptor["keyframe"])))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SealingError(f"frame {frame_index}: malformed sealed_face_packet descriptor ({exc!r})") from exc
    try:
        return SealBinding(
            camera=camera,
            stream_epoch=stream_epoch,
            frame_index=frame_index,
            pts=pts,
            track_id=descriptor["track_id"],  # type: ignore[arg-type]
            affine_e4=tuple(descriptor["affine_e4"]),  # type: ignore[arg-type]
            crop_wh=tuple(descriptor["crop_wh"]),  # type: ignore[arg-type]
            box_e2=tuple(descriptor["box_e2"]),  # type: ignore[arg-type]
            face_stream=face_stream,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SealingError(f"frame {frame_index}: malformed sealed_face descriptor ({exc!r})") from exc


class TrackKeyring:
    """Live track keys of one stream; each is wrapped to every recipient once, when the track starts."""

    def __init__(self, camera_id: str, stream_epoch: str, recipients: Sequence[RestorePublicKey]) -> None:
        if not recipients:
            raise SealingError("a track keyring needs at least one restore public key")
        self.camera_id = camera_id
        self.stream_epoch = stream_epoch
        self._recipients = list(recipients)
        self._track_keys: dict[int, bytes] = {}
        self._payload_keys: dict[int, bytes] = {}
        self._wrapped: dict[int, list[dict[str, object]]] = {}

    def start_track(self, track_id: int) -> list[dict[str, object]]:
        """Make and wrap the key of a new track; returns its wrapped keys."""
        if track_id in self._wrapped:
            raise SealingError(f"track {track_id} started twice in stream epoch {self.stream_epoch}")
        track_key = new_track_key()
        context = track_key_context(self.camera_id, self.stream_epoch, track_id)
        self._wrapped[track_id] = [entry.to_dict() for entry in wrap_track_key(track_key, self._recipients, context)]
        self._payload_keys[track_id] = derive_payload_key(track_key)
        self._track_keys[track_id] = track_key
        return self._wrapped[track_id]

    def end_track(self, track_id: int) -> None:
        self._wrapped.pop(track_id, None)
        self._payload_keys.pop(track_id, None)
        self._track_keys.pop(track_id, None)

    def password_bits(self, track_id: int, n_bits: int) -> np.ndarray:
        """The keyed anonymizer's password for a live track, derived from its track key."""
        try:
            return derive_password_bits(self._track_keys[track_id], n_bits)
        except KeyError:
            raise SealingError(f"track {track_id} has no key: it was never started") from None

    def wrapped_keys(self, track_id: int) -> list[dict[str, object]]:
        return self._wrapped[track_id]

    def payload_key(self, track_id: int) -> bytes:
        try:
            return self._payload_keys[track_id]
        except KeyError:
            raise SealingError(f"track {track_id} has no key: it was never started") from None

    @property
    def live_tracks(self) -> list[int]:
        return list(self._wrapped)


class StreamSealer:
    """Track keys and sealed payloads for one stream epoch of one camera."""

    def __init__(
        self,
        *,
        camera_id: str,
        stream_epoch: str,
        recipients: Sequence[RestorePublicKey],
        region_of: RegionOf,
        sealed_payloads: bool = True,
        key_repeat_s: float = 2.0,
        face_quality: FaceQuality | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.stream_epoch = stream_epoch
        self.recipient_key_ids = [recipient.key_id for recipient in recipients]
        self.sealed_payloads = sealed_payloads
        self.key_repeat_s = float(key_repeat_s)
        self._region_of = region_of
        self._keyring = TrackKeyring(camera_id, stream_epoch, recipients)
        self._keys_sent_at_s: dict[int, float] = {}
        self._started_this_frame: dict[int, list[dict[str, object]]] = {}
        self._face_quality = face_quality or FaceQuality()
        self._encoders: dict[int, FaceStreamEncoder] = {}
        self._from_planes: bool | None = None

    def start_track(self, track_id: int) -> None:
        self._started_this_frame[track_id] = self._keyring.start_track(track_id)

    def end_track(self, track_id: int) -> None:
        self._keyring.end_track(track_id)
        self._keys_sent_at_s.pop(track_id, None)
        self._encoders.pop(track_id, None)

    def password_bits(self, track_id: int, n_bits: int) -> np.ndarray:
        """Track secrets for a keyed anonymizer (`FaceAnonymizer.use_track_secrets`)."""
        return self._keyring.password_bits(track_id, n_bits)

    def seal_frame(self, frame: VideoFrame, faces: Sequence[TrackedFace]) -> SealedFrame:
        """Keys for tracks started since the last call, due key repeats, and (when enabled) one sealed
        face-stream packet per face whose region is not empty."""
        sealed = self.keys_frame(frame)
        if not self.sealed_payloads:
            return sealed
        areas: list[tuple[tuple[int, int, int, int], FaceArea]] = []
        for face in faces:
            x0, y0, x1, y1 = (int(value) for value in self._region_of(face, frame.resolution_wh))
            if x1 <= x0 or y1 <= y0:
                continue
            box_e2 = tuple(int(round(float(value) * BOX_SCALE)) for value in face.xyxy)
            areas.append((box_e2, FaceArea(int(face.track_id), (x0, y0, x1, y1),  # type: ignore[arg-type]
                                           tuple(value / BOX_SCALE for value in box_e2))))  # type: ignore[arg-type]
        neighbours = overlapping_neighbours([area for _, area in areas])
        seconds = frame.seconds if frame.seconds is not None else frame.wallclock
        if areas:
            self._note_pixel_source(frame)
        for (box_e2, area), near in zip(areas, neighbours):
            x0, y0, x1, y1 = area.region_xyxy
            encoder = self._encoders.get(area.track_id)
            if encoder is None:
                encoder = FaceStreamEncoder(frame.resolution_wh, self._face_quality)
                self._encoders[area.track_id] = encoder
            face_pixels = int(owned_mask(area, near).sum()) if near else None
            if frame.yuv420 is not None:
                packet = encoder.encode_yuv420(region_planes(frame.yuv420, area, near), seconds, face_pixels)
            else:
                packet = encoder.encode(blank_neighbours(frame.bgr[y0:y1, x0:x1], area, near), seconds, (x0, y0),
                                        face_pixels)
            # the quantized geometry directly: what `SealBinding.from_geometry` makes of the region's translation and the box
            binding = SealBinding(
                camera=self.camera_id,
                stream_epoch=str(self.stream_epoch),
                frame_index=int(frame.index),
                pts=None if frame.pts is None else int(frame.pts),
                track_id=area.track_id,
                affine_e4=box_affine_e4(area.region_xyxy),
                crop_wh=(x1 - x0, y1 - y0),
                box_e2=box_e2,
                face_stream=(packet.part, packet.number, packet.canvas_wh[0], packet.canvas_wh[1], int(packet.keyframe)),
            )
            blob = seal_packet(packet.data, self._keyring.payload_key(area.track_id), binding)
            descriptor: dict[str, object] = {
                "kind": SEALED_FACE_PACKET_KIND,
                "track_id": area.track_id,
                "geometry": GEOMETRY_BOX,
                "region_xyxy": [x0, y0, x1, y1],
                "affine_e4": list(binding.affine_e4),
                "crop_wh": list(binding.crop_wh),
                "box_e2": list(binding.box_e2),
                "part": packet.part,
                "number": packet.number,
                "canvas_wh": list(packet.canvas_wh),
                "keyframe": packet.keyframe,
            }
            sealed.payloads.append((descriptor, blob))
        return sealed

    def _note_pixel_source(self, frame: VideoFrame) -> None:
        """Log which pixels the face streams are coded from: once per stream, and again on a change."""
        from_planes = frame.yuv420 is not None
        if from_planes == self._from_planes:
            return
        if from_planes:
            logger.info("camera %s: face streams coded from the decoded source's yuv420p planes", self.camera_id)
        else:
            logger.warning("camera %s: face streams coded from BGR pixels converted to yuv420p (the source hands "
                           "on no decoded planes for these frames; restored faces are less exact)", self.camera_id)
        self._from_planes = from_planes

    def keys_frame(self, frame: VideoFrame) -> SealedFrame:
        """Only the key material of this frame (for a frame that is blanked or carries no payloads)."""
        now_s = frame.seconds if frame.seconds is not None else frame.wallclock
        sealed = SealedFrame(started_keys=self._started_this_frame)
        self._started_this_frame = {}
        for track_id in sealed.started_keys:
            self._keys_sent_at_s[track_id] = now_s
        for track_id in self._keyring.live_tracks:
            if track_id in sealed.started_keys:
                continue
            last_s = self._keys_sent_at_s.get(track_id)
            if last_s is None or now_s - last_s >= self.key_repeat_s or now_s < last_s:
                sealed.repeated_keys[track_id] = self._keyring.wrapped_keys(track_id)
                self._keys_sent_at_s[track_id] = now_s
        return sealed


def face_quality_of(reversible: ReversibleConfig) -> FaceQuality:
    """The face-stream quality a `reversible:` section asks for."""
    if reversible.face_crf is not None:
        return FaceQuality(crf=reversible.face_crf)
    return FaceQuality(qp=reversible.face_qp, min_psnr_db=reversible.face_min_psnr_db)


def build_stream_sealer(camera: CameraConfig, stream_epoch: str, region_of: RegionOf) -> StreamSealer | None:
    """The sealer `camera.reversible` asks for, with its public keys loaded; None when not reversible.

    `region_of` is the anonymizer's own account of the region it replaces for a face."""
    if camera.reversible is None:
        return None
    recipients = load_public_keys(camera.reversible.recipients)
    sealer = StreamSealer(
        camera_id=camera.id,
        stream_epoch=stream_epoch,
        recipients=recipients,
        region_of=region_of,
        sealed_payloads=camera.reversible.sealed_payloads,
        key_repeat_s=camera.reversible.key_repeat_s,
        face_quality=face_quality_of(camera.reversible),
    )
    logger.info(
        "camera %s: track keys wrapped to %s; sealed payloads %s",
        camera.id,
        ", ".join(sealer.recipient_key_ids),
        "on" if sealer.sealed_payloads else "off",
    )
    return sealer
