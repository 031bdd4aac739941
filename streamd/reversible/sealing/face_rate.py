"""How hard a track's face stream is quantized: a constant quantizer, steered toward a fidelity floor.

A face stream is coded at one constant quantizer (QP) between key frames. At a constant QP every
frame of a track comes out at nearly the same fidelity; with CRF rate control, which raises the QP of
frames it deems complex, the worst frames of the demo clip sat 3 dB below the mean, and the mean had
to be paid for 3 dB above the floor (docs/results/recording-benchmark.md).

What a QP gives depends on the content (grain, texture, the source's own coding noise), so with a
floor (`min_psnr_db`) the encoder's own error of each frame (x264's per-plane sum of squared errors,
which it reports on request) is turned into the PSNR the region will have in BGR against the
source (`bgr_psnr_estimate`), and the track's QP follows it:

- a frame below the floor is coded again at once as a key frame one QP finer (or more, for a larger
  miss; `FaceStreamEncoder`, `would_refine`), and if it is still below (after `MAX_RECODES` tries, or
  at the finest QP), the next frame is a key frame finer again;
- at each regular key frame (at least every 2 s) the QP goes one step coarser when every frame since
  the last key frame cleared the floor by `RAISE_MARGIN_DB`.

A new QP needs a new encoder (libx264 takes its quantizer when it opens); the stream just continues
with a key frame from the new one, which any H.264 decoder follows.

`crf` keeps the CRF rate control of earlier versions instead.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import av

DEFAULT_FACE_QP = 17
DEFAULT_MIN_PSNR_DB = 41.0
#: A track's QP is raised only while its worst frame since the last key frame clears the floor by this much.
RAISE_MARGIN_DB = 1.0
#: About what one QP step changes in the PSNR of a face region at these rates (demo: 0.7 to 0.8 dB).
DB_PER_QP = 0.75
MIN_QP = 4
MAX_QP = 36
#: Packet side data of FFmpeg encoders with AV_CODEC_FLAG_PSNR: quality (uint32), picture type (uint8),
#: number of error values (uint8), 2 reserved bytes, then the sums of squared errors (uint64) per plane.
_QUALITY_STATS = struct.Struct("<IBBxx")
_PLANE_ERROR = struct.Struct("<Q")
#: BT.601 limited range to BGR: how much of an error in Y, U and V reaches the three BGR channels
#: (squared gains summed over B, G, R and divided by 3: Y reaches all three, U mostly B, V mostly R).
_LUMA_WEIGHT = 1.164**2
_U_WEIGHT = (2.018**2 + 0.391**2) / 3
_V_WEIGHT = (1.596**2 + 0.813**2) / 3


@dataclass(frozen=True)
class FaceQuality:
    """The quality a face stream is coded at: `qp` to start every track with, `min_psnr_db` the floor
    its QP follows (None: `qp` throughout), or `crf` for CRF rate control instead (no floor)."""

    qp: int = DEFAULT_FACE_QP
    min_psnr_db: float | None = DEFAULT_MIN_PSNR_DB
    crf: int | None = None


def bgr_psnr_estimate(plane_sse: tuple[int, int, int], luma_pixels: int) -> float:
    """The PSNR in BGR of a region of `luma_pixels` 4:2:0 pixels whose Y, U and V planes were coded
    with these sums of squared errors; each plane's error weighted by the share of it that BT.601
    conversion passes to B, G and R."""
    luma_sse, u_sse, v_sse = plane_sse
    chroma_pixels = luma_pixels / 4
    mse = (_LUMA_WEIGHT * luma_sse / luma_pixels + _U_WEIGHT * u_sse / chroma_pixels
           + _V_WEIGHT * v_sse / chroma_pixels)
    return math.inf if mse <= 0 else 10.0 * math.log10(255.0**2 / mse)


def plane_errors(packet: av.Packet) -> tuple[int, int, int] | None:
    """The Y, U, V sums of squared errors the encoder reported for `packet`; None without them."""
    if not packet.has_sidedata("quality_stats"):
        return None
    stats = bytes(packet.get_sidedata("quality_stats"))
    if len(stats) < _QUALITY_STATS.size:
        return None
    _, _, count = _QUALITY_STATS.unpack_from(stats)
    if count < 3 or len(stats) < _QUALITY_STATS.size + 3 * _PLANE_ERROR.size:
        return None
    values = [_PLANE_ERROR.unpack_from(stats, _QUALITY_STATS.size + index * _PLANE_ERROR.size)[0] for index in range(3)]
    return values[0], values[1], values[2]


class QuantizerControl:
    """The QP of one track's face stream, steered toward `quality.min_psnr_db`."""

    def __init__(self, quality: FaceQuality) -> None:
        self.quality = quality
        self.qp = min(max(quality.qp, MIN_QP), MAX_QP)
        self._worst_db = math.inf
        self._early_key = False

    @property
    def steered(self) -> bool:
        return self.quality.crf is None and self.quality.min_psnr_db is not None

    def encoder_options(self) -> dict[str, str]:
        """The rate-control options of an encoder opened now."""
        if self.quality.crf is not None:
            return {"crf": str(self.quality.crf)}
        return {"qp": str(self.qp)}

    def observe(self, estimate_db: float) -> None:
        """Take the estimated PSNR of the frame just coded."""
        self._worst_db = min(self._worst_db, estimate_db)
        floor = self.quality.min_psnr_db
        if self.steered and floor is not None and estimate_db < floor and self.qp > MIN_QP:
            self._early_key = True

    def would_refine(self, estimate_db: float) -> bool:
        """Whether a frame coded at `estimate_db` is below the floor with a finer QP still to go to."""
        floor = self.quality.min_psnr_db
        return self.steered and floor is not None and estimate_db < floor and self.qp > MIN_QP

    @property
    def wants_key_frame(self) -> bool:
        """Whether the next frame should be a key frame at a finer QP (the last one fell below the floor)."""
        return self._early_key

    def next_qp(self) -> int:
        """The QP from the next key frame on, given the frames since the last one; starts a new interval."""
        floor = self.quality.min_psnr_db
        if self.steered and floor is not None and math.isfinite(self._worst_db):
            if self._worst_db < floor:
                self.qp -= max(1, math.ceil((floor - self._worst_db) / DB_PER_QP))
            elif self._worst_db >= floor + RAISE_MARGIN_DB:
                self.qp += 1
            self.qp = min(max(self.qp, MIN_QP), MAX_QP)
        self._worst_db = math.inf
        self._early_key = False
        return self.qp
