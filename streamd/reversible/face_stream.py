"""Sealed face streams: one track's original face regions, encoded as a video of their own.

Per track, each frame's region is placed at the top-left of a canvas fixed for the track (the rest
repeats the region's edge pixels) and encoded with libx264 at high quality, 4:4:4, without B-frames
or lookahead, so every frame gives exactly one packet at once. A key frame starts every *part* and
follows at least every `KEYFRAME_INTERVAL_S` of stream time, so a recorder that joins late, or a
segment that starts mid-track, can begin decoding there. A region that outgrows the canvas starts a
new part on a larger canvas. Packets are encrypted by the caller (`streamd.reversible.seal`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from streamd.errors import StreamdError

FACE_CODEC = "libx264"
FACE_DECODER = "h264"
FACE_PIXEL_FORMAT = "yuv444p"
FACE_PRESET = "veryfast"
FACE_TUNE = "psnr,zerolatency"
DEFAULT_FACE_CRF = 10
KEYFRAME_INTERVAL_S = 2.0
CANVAS_ALIGN = 16
CANVAS_HEADROOM = 1.25
_MAX_KEYINT = 1000


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


def canvas_for(crop_wh: tuple[int, int], frame_wh: tuple[int, int]) -> tuple[int, int]:
    """A canvas with headroom for a region of `crop_wh`, aligned, at most the frame (rounded up)."""
    width = min(_aligned(crop_wh[0] * CANVAS_HEADROOM), _aligned(frame_wh[0]))
    height = min(_aligned(crop_wh[1] * CANVAS_HEADROOM), _aligned(frame_wh[1]))
    return max(width, _aligned(crop_wh[0])), max(height, _aligned(crop_wh[1]))


class FaceStreamEncoder:
    """Encodes the face regions of one track, one packet per frame."""

    def __init__(self, frame_wh: tuple[int, int], crf: int = DEFAULT_FACE_CRF) -> None:
        self._frame_wh = frame_wh
        self._crf = crf
        self._context: av.codec.context.CodecContext | None = None
        self._canvas_wh: tuple[int, int] = (0, 0)
        self._part = -1
        self._frames = 0
        self._last_key_s: float | None = None

    def encode(self, crop_bgr: np.ndarray, seconds: float) -> FacePacket:
        height, width = crop_bgr.shape[:2]
        if self._context is None or width > self._canvas_wh[0] or height > self._canvas_wh[1]:
            self._open_part((width, height))
        assert self._context is not None
        canvas = cv2.copyMakeBorder(np.ascontiguousarray(crop_bgr), 0, self._canvas_wh[1] - height,
                                    0, self._canvas_wh[0] - width, cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(canvas, format="bgr24")
        frame.pts = self._frames
        frame.time_base = Fraction(1, 1000)
        force_key = (self._last_key_s is None or seconds - self._last_key_s >= KEYFRAME_INTERVAL_S
                     or seconds < self._last_key_s)
        if force_key:
            frame.pict_type = av.video.frame.PictureType.I
        try:
            packets = self._context.encode(frame)
        except av.FFmpegError as exc:
            raise FaceStreamError(f"face stream encoder failed: {exc}") from None
        if len(packets) != 1:
            raise FaceStreamError(f"face stream encoder gave {len(packets)} packets for one frame; expected one")
        packet = packets[0]
        keyframe = bool(packet.is_keyframe)
        if force_key and not keyframe:
            raise FaceStreamError("face stream encoder did not make the key frame it was asked for")
        if keyframe:
            self._last_key_s = seconds
        self._frames += 1
        return FacePacket(self._part, self._frames - 1, self._canvas_wh, keyframe, bytes(packet))

    def _open_part(self, crop_wh: tuple[int, int]) -> None:
        self._canvas_wh = canvas_for(crop_wh, self._frame_wh)
        context = av.CodecContext.create(FACE_CODEC, "w")
        context.width, context.height = self._canvas_wh
        context.pix_fmt = FACE_PIXEL_FORMAT
        context.time_base = Fraction(1, 1000)
        context.thread_count = 1
        context.options = {"crf": str(self._crf), "preset": FACE_PRESET, "tune": FACE_TUNE,
                           "forced-idr": "1", "x264-params": f"keyint={_MAX_KEYINT}:bframes=0"}
        try:
            context.open()
        except av.FFmpegError as exc:
            raise FaceStreamError(f"cannot open the {FACE_CODEC} face stream encoder: {exc}") from None
        self._context = context
        self._part += 1
        self._frames = 0
        self._last_key_s = None


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

    def decode(self, part: int, number: int, keyframe: bool, data: bytes) -> np.ndarray | None:
        """The canvas of this packet as 4:4:4 planes (3 x height x width: Y, U, V); None when it cannot be
        decoded: no key frame seen yet, or a packet before it is missing (then decoding resumes at the
        next key frame)."""
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
        if frames[0].format.name != FACE_PIXEL_FORMAT:
            raise FaceStreamError(f"face stream decoded as {frames[0].format.name}, not {FACE_PIXEL_FORMAT}")
        return frames[0].to_ndarray()
