"""Sealed face streams: one track's original face regions, encoded as a video of their own.

Per track, each frame's region is placed near the top-left of a canvas fixed for the track and encoded
with libx264 at high quality, 4:2:0 like the video it comes from, without B-frames or lookahead, so
every frame gives exactly one packet at once. The quantizer is constant between key frames and
follows a fidelity floor per track (`streamd.reversible.sealing.face_rate`); chroma is quantized finer than
luma (`CHROMA_QP_OFFSET`), because an error in U or V reaches B and R about twice as strongly as the
same error in Y, and a chroma plane has a quarter of the samples.

The region sits on the frame's chroma grid: a region that starts on an odd column or row is placed
one pixel right or down (that pixel repeats the region's edge), so each 2x2 chroma block of the canvas is one of the frame's and restore pastes the planes as
they are. The rest of the canvas is flat grey, which costs next to nothing to code (edge pixels
repeated across it change every frame and cost bits). The planes are the decoded source's own
(`encode_yuv420`, cut by `streamd.reversible.sealing.face_planes`) whenever the source hands them on; otherwise
(`encode`) the pipeline's BGR pixels are converted with OpenCV's BT.601 limited-range conversion, the
colour space of the anonymized video the planes are pasted into, which recovers the decoded luma only
to about 47 dB before any coding.
Face streams of earlier recordings are 4:4:4 with the region at the canvas's corner; they still decode.

A key frame starts every *part* and follows at least every `KEYFRAME_INTERVAL_S` of stream time, so a
recorder that joins late, or a segment that starts mid-track, can begin decoding there; a frame that
falls below the floor is coded again at once, as a key frame from a finer encoder (up to
`MAX_RECODES` times), so it does not go out too coarse. A region that outgrows the canvas starts a
new part on a larger canvas. Packets are encrypted by the caller
(`streamd.reversible.sealing.payloads`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from streamd.errors import StreamdError
from streamd.reversible.sealing.face_rate import FaceQuality, QuantizerControl, bgr_psnr_estimate, plane_errors

FACE_CODEC = "libx264"
FACE_DECODER = "h264"
FACE_PIXEL_FORMAT = "yuv420p"
#: Face streams of earlier recordings: 4:4:4, the region at the canvas's top-left.
LEGACY_FACE_PIXEL_FORMAT = "yuv444p"
#: veryfast against faster: a third less encoding time for about 10% more bytes at the same fidelity.
FACE_PRESET = "veryfast"
FACE_TUNE = "psnr,zerolatency"
#: Chroma QP = luma QP + this (x264's chroma-qp-offset).
CHROMA_QP_OFFSET = -6
#: x264 options beyond the preset: no B-frames; no weighted prediction, which looks for fades a face
#: region does not have (demo clip: about 5-10% less encoding time, 1% fewer bytes, PSNR within 0.05 dB).
FACE_X264_PARAMS = f"bframes=0:chroma-qp-offset={CHROMA_QP_OFFSET}:weightp=0"
KEYFRAME_INTERVAL_S = 2.0
#: How many times one frame may be coded again, each time finer, to reach the fidelity floor.
MAX_RECODES = 2
CANVAS_ALIGN = 16
CANVAS_HEADROOM = 1.25
_MAX_KEYINT = 1000
_START_CODE = re.compile(b"\x00\x00\x01")
_NAL_SEI = 6
#: The canvas outside the region: mid grey (Y, U, V), no colour.
CANVAS_FILL_YUV = (128, 128, 128)


class FaceStreamError(StreamdError):
    """A face stream cannot be encoded or decoded."""


@dataclass(frozen=True)
class FacePacket:
    """One encoded frame of a track's face stream (before encryption)."""

    part: int
    number: int
    canvas_wh: tuple[int, int]
    keyframe: bool
    data: bytes


def _aligned(value: float) -> int:
    return int(math.ceil(value / CANVAS_ALIGN) * CANVAS_ALIGN)


def without_sei(annex_b: bytes) -> bytes:
    """An H.264 packet (Annex B) without its SEI units: x264 opens every stream with one naming its
    version and settings (about 540 bytes), which no decoder needs."""
    starts = [match.start() for match in _START_CODE.finditer(annex_b)]
    units = [annex_b[start + 3:end] for start, end in zip(starts, starts[1:] + [len(annex_b)])]
    kept = [unit.rstrip(b"\x00") for unit in units if unit and unit[0] & 0x1F != _NAL_SEI]
    if len(kept) == len(units):
        return annex_b
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in kept)


def canvas_for(crop_wh: tuple[int, int], frame_wh: tuple[int, int]) -> tuple[int, int]:
    """A canvas with headroom for a region of `crop_wh`, aligned, at most the frame (rounded up)."""
    width = min(_aligned(crop_wh[0] * CANVAS_HEADROOM), _aligned(frame_wh[0]))
    height = min(_aligned(crop_wh[1] * CANVAS_HEADROOM), _aligned(frame_wh[1]))
    return max(width, _aligned(crop_wh[0])), max(height, _aligned(crop_wh[1]))


def bgr_to_yuv420(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`bgr` (even width and height) as yuv420p planes Y, U, V: OpenCV's BT.601 limited-range
    conversion, chroma from each 2x2 block."""
    height, width = bgr.shape[:2]
    stacked = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420).reshape(-1)
    luma_size, chroma_size = height * width, height * width // 4
    return (stacked[:luma_size].reshape(height, width),
            stacked[luma_size:luma_size + chroma_size].reshape(height // 2, width // 2),
            stacked[luma_size + chroma_size:].reshape(height // 2, width // 2))


def _stacked_planes(canvas: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a yuv420p picture stacked as PyAV takes it (height * 3 / 2 rows)."""
    chroma = canvas[height:].reshape(2, height // 2, canvas.shape[1] // 2)
    return canvas[:height], chroma[0], chroma[1]


def chroma_offset(region_xyxy: tuple[int, int, int, int]) -> tuple[int, int]:
    """Where a region starts inside its 4:2:0 canvas: one pixel in for an odd column or row."""
    return region_xyxy[0] & 1, region_xyxy[1] & 1


@dataclass(frozen=True)
class DecodedCanvas:
    """One decoded canvas as 4:4:4 planes (3 x height x width: Y, U, V; 4:2:0 chroma repeated over its
    2x2 block), and whether the stream was 4:2:0 (then the region sits at its `chroma_offset`).
    `frame` is the decoded picture itself, for `region_bgr`."""

    planes: np.ndarray
    chroma_420: bool
    frame: av.VideoFrame | None = None

    def region(self, region_xyxy: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = region_xyxy
        left, top = chroma_offset(region_xyxy) if self.chroma_420 else (0, 0)
        return self.planes[:, top:top + y1 - y0, left:left + x1 - x0]

    def region_bgr(self, region_xyxy: tuple[int, int, int, int]) -> np.ndarray:
        """The region as BGR, converted from the decoded 4:2:0 picture the way a decoded source frame is
        (PyAV's yuv420p to bgr24), so exact planes give the source's own BGR pixels; from the 4:4:4
        planes for a 4:4:4 stream."""
        x0, y0, x1, y1 = region_xyxy
        if not self.chroma_420 or self.frame is None:
            planes = np.ascontiguousarray(self.region(region_xyxy))
            return av.VideoFrame.from_ndarray(planes, format=LEGACY_FACE_PIXEL_FORMAT).to_ndarray(format="bgr24")
        left, top = chroma_offset(region_xyxy)
        return self.frame.to_ndarray(format="bgr24")[top:top + y1 - y0, left:left + x1 - x0]


class _CanvasFrame:
    """One part's canvas as a yuv420p picture the encoder reads, refilled in place for every frame: the
    region's planes at the top-left, grey elsewhere. libx264 copies a picture in before `encode`
    returns, so one picture serves the whole part without a fresh allocation and copy per frame."""

    def __init__(self, canvas_wh: tuple[int, int]) -> None:
        self.frame = av.VideoFrame(canvas_wh[0], canvas_wh[1], FACE_PIXEL_FORMAT)
        self._planes = [np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
                        for plane in self.frame.planes]
        for plane, fill in zip(self._planes, CANVAS_FILL_YUV):
            plane.fill(fill)
        self._filled_hw = [(0, 0)] * len(self._planes)

    def holding(self, region_planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> av.VideoFrame:
        """The picture with `region_planes` (Y, U, V) at the top-left; what the last region covered
        beyond this one is grey again."""
        for index, (plane, region_plane, fill) in enumerate(zip(self._planes, region_planes, CANVAS_FILL_YUV)):
            height, width = region_plane.shape
            filled_height, filled_width = self._filled_hw[index]
            if filled_height > height:
                plane[height:filled_height, :filled_width] = fill
            if filled_width > width:
                plane[:min(height, filled_height), width:filled_width] = fill
            plane[:height, :width] = region_plane
            self._filled_hw[index] = (height, width)
        return self.frame


class FaceStreamEncoder:
    """Encodes the face regions of one track, one packet per frame."""

    def __init__(self, frame_wh: tuple[int, int], quality: FaceQuality | None = None) -> None:
        self._frame_wh = frame_wh
        self._control = QuantizerControl(quality or FaceQuality())
        self._context: av.codec.context.CodecContext | None = None
        self._canvas_wh: tuple[int, int] = (0, 0)
        self._part = -1
        self._frames = 0
        self._last_key_s: float | None = None
        self.psnr_estimate_db: float | None = None
        self._canvas: _CanvasFrame | None = None

    @property
    def qp(self) -> int:
        """The quantizer the next frames are coded at (meaningless under CRF rate control)."""
        return self._control.qp

    def encode(self, crop_bgr: np.ndarray, seconds: float, region_xy: tuple[int, int] = (0, 0),
               face_pixels: int | None = None) -> FacePacket:
        """One packet for the BGR region whose top-left pixel is `region_xy` in the frame: placed on the
        chroma grid (`chroma_offset`, edges repeated) and converted to yuv420p. `face_pixels` as for
        `encode_yuv420`."""
        left, top = region_xy[0] & 1, region_xy[1] & 1
        height, width = crop_bgr.shape[:2]
        right, bottom = (left + width) & 1, (top + height) & 1
        aligned = cv2.copyMakeBorder(np.ascontiguousarray(crop_bgr), top, bottom, left, right, cv2.BORDER_REPLICATE)
        return self.encode_yuv420(bgr_to_yuv420(aligned), seconds, face_pixels)

    def encode_yuv420(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray], seconds: float,
                      face_pixels: int | None = None) -> FacePacket:
        """One packet for a region's yuv420p planes already on the chroma grid (even luma width and
        height, the region at its `chroma_offset`; see `streamd.reversible.sealing.face_planes`).

        `face_pixels`: how many of the region's pixels carry this face's own picture (default: all of
        them). Pixels of other faces are blanked to flat grey, which the encoder reproduces with next to
        no error, so the error it reports is charged to the face's own pixels: spread over the whole
        region, it made a face that owns a small part of it look up to a few dB better than it was."""
        height, width = planes[0].shape
        if width % 2 or height % 2 or planes[1].shape != (height // 2, width // 2) or planes[2].shape != planes[1].shape:
            raise FaceStreamError(f"face region planes {[plane.shape for plane in planes]} are not yuv420p "
                                  "on the chroma grid")
        if self._context is None or width > self._canvas_wh[0] or height > self._canvas_wh[1]:
            self._open_part((width, height))
        force_key = (self._last_key_s is None or seconds - self._last_key_s >= KEYFRAME_INTERVAL_S
                     or seconds < self._last_key_s or self._control.wants_key_frame)
        if force_key and self._last_key_s is not None:
            previous_qp = self._control.qp
            if self._control.next_qp() != previous_qp:
                self._context = self._open_encoder()
        packet = self._encode_frame(planes, force_key)
        charged_pixels = width * height if face_pixels is None else max(1, min(face_pixels, width * height))
        self.psnr_estimate_db = self._estimate(packet, charged_pixels)
        for _ in range(MAX_RECODES):
            if self.psnr_estimate_db is None or not self._control.would_refine(self.psnr_estimate_db):
                break
            # Below the floor: this frame again, now, as a key frame from an encoder one or more QP finer,
            # rather than a next frame finer after this one went out too coarse.
            self._control.observe(self.psnr_estimate_db)
            self._control.next_qp()
            self._context = self._open_encoder()
            packet = self._encode_frame(planes, True)
            self.psnr_estimate_db = self._estimate(packet, charged_pixels)
        keyframe = bool(packet.is_keyframe)
        if keyframe:
            self._last_key_s = seconds
        if self.psnr_estimate_db is not None:
            self._control.observe(self.psnr_estimate_db)
        self._frames += 1
        data = without_sei(bytes(packet)) if keyframe else bytes(packet)
        return FacePacket(self._part, self._frames - 1, self._canvas_wh, keyframe, data)

    def _encode_frame(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray], force_key: bool) -> av.Packet:
        """The one packet of the current encoder for this frame (a key frame when `force_key`)."""
        assert self._context is not None and self._canvas is not None
        frame = self._canvas.holding(planes)
        frame.pts = self._frames
        frame.time_base = Fraction(1, 1000)
        frame.pict_type = av.video.frame.PictureType.I if force_key else av.video.frame.PictureType.NONE
        try:
            packets = self._context.encode(frame)
        except av.FFmpegError as exc:
            raise FaceStreamError(f"face stream encoder failed: {exc}") from None
        if len(packets) != 1:
            raise FaceStreamError(f"face stream encoder gave {len(packets)} packets for one frame; expected one")
        if force_key and not packets[0].is_keyframe:
            raise FaceStreamError("face stream encoder did not make the key frame it was asked for")
        return packets[0]

    @staticmethod
    def _estimate(packet: av.Packet, luma_pixels: int) -> float | None:
        errors = plane_errors(packet)
        return None if errors is None else bgr_psnr_estimate(errors, luma_pixels)

    def _open_part(self, crop_wh: tuple[int, int]) -> None:
        self._canvas_wh = canvas_for(crop_wh, self._frame_wh)
        self._canvas = _CanvasFrame(self._canvas_wh)
        if self._last_key_s is not None:
            self._control.next_qp()
        self._context = self._open_encoder()
        self._part += 1
        self._frames = 0
        self._last_key_s = None

    def _open_encoder(self) -> av.codec.context.CodecContext:
        """An encoder for the current canvas at the control's QP; its first frame is a key frame."""
        context = av.CodecContext.create(FACE_CODEC, "w")
        context.width, context.height = self._canvas_wh
        context.pix_fmt = FACE_PIXEL_FORMAT
        context.time_base = Fraction(1, 1000)
        context.thread_count = 1
        # the encoder's own per-plane error of each frame, for the QP control
        context.flags |= av.codec.context.Flags.psnr
        context.options = {**self._control.encoder_options(), "preset": FACE_PRESET, "tune": FACE_TUNE,
                           "forced-idr": "1",
                           "x264-params": f"keyint={_MAX_KEYINT}:{FACE_X264_PARAMS}"}
        try:
            context.open()
        except av.FFmpegError as exc:
            raise FaceStreamError(f"cannot open the {FACE_CODEC} face stream encoder: {exc}") from None
        return context


class FaceStreamDecoder:
    """Decodes one track's face stream; a new part (or a fresh start) must begin with a key frame."""

    def __init__(self) -> None:
        self._context: av.codec.context.CodecContext | None = None
        self._part: int | None = None
        self._number: int | None = None

    @property
    def ready(self) -> bool:
        return self._context is not None

    def reset(self) -> None:
        self._context = None
        self._part = None
        self._number = None

    def decode(self, part: int, number: int, keyframe: bool, data: bytes) -> DecodedCanvas | None:
        """The canvas of this packet; None when it cannot be decoded: no key frame seen yet, or a packet
        before it is missing (then decoding resumes at the next key frame)."""
        if part != self._part or self._number is None or number != self._number + 1:
            self._context = None
        self._part, self._number = part, number
        if self._context is None:
            if not keyframe:
                return None
            self._context = av.CodecContext.create(FACE_DECODER, "r")
            self._context.thread_count = 1
            self._context.flags |= av.codec.context.Flags.low_delay
        try:
            frames = self._context.decode(av.Packet(data))
        except av.FFmpegError as exc:
            raise FaceStreamError(f"face stream packet does not decode: {exc}") from None
        if len(frames) != 1:
            raise FaceStreamError(f"face stream packet decoded to {len(frames)} frames; expected one")
        pixel_format = frames[0].format.name
        if pixel_format == LEGACY_FACE_PIXEL_FORMAT:
            return DecodedCanvas(frames[0].to_ndarray(), chroma_420=False)
        if pixel_format != FACE_PIXEL_FORMAT:
            raise FaceStreamError(f"face stream decoded as {pixel_format}, not {FACE_PIXEL_FORMAT} "
                                  f"(or {LEGACY_FACE_PIXEL_FORMAT})")
        stacked = frames[0].to_ndarray()
        height, width = frames[0].height, frames[0].width
        luma, u, v = _stacked_planes(stacked, height)
        planes = np.empty((3, height, width), dtype=np.uint8)
        planes[0] = luma
        planes[1:] = np.stack((u, v)).repeat(2, axis=1).repeat(2, axis=2)
        return DecodedCanvas(planes, chroma_420=True, frame=frames[0])
