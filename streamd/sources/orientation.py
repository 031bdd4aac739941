"""Display orientation of video: which way stored frames must be turned to be seen upright.

Phones store frames as the sensor sees them and record how to display them in a display matrix
(MP4 `tkhd` matrix, or an H.264 display orientation SEI). FFmpeg hands that matrix on with every
decoded frame as `DISPLAYMATRIX` side data (the container's matrix is copied onto each frame, an SEI
onto the frames it applies to), which is where this module reads it: `frame_orientation`.

Conventions, all in image coordinates (x right, y down, as the picture is seen):

- `Orientation.clockwise` is the clockwise rotation (0, 90, 180 or 270 degrees) that turns a stored
  frame upright, followed by a left-right mirror when `Orientation.mirror` is set. This is the
  meaning of the `source.rotation` setting and of the old MP4 `rotate` tag: a phone held upright
  records landscape frames and a clockwise rotation of 90.
- FFmpeg's display matrix rotation (`av.VideoFrame.rotation`, `av_display_rotation_get`) is the
  counter-clockwise angle of the same transformation, so a portrait phone clip reads -90 there.
  Matrices are read in full here (not only their angle), so mirrored matrices turn out right too,
  exactly as FFmpeg's own autorotation turns them.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, Union

import av
import cv2
import numpy as np

from streamd.errors import SinkError

logger = logging.getLogger(__name__)

RotationSetting = Union[Literal["auto"], Literal[0, 90, 180, 270]]
RIGHT_ANGLES = (0, 90, 180, 270)

# (a, b, c, d) of a display matrix, rounded to -1, 0 or 1, for each way of turning a frame upright.
# A stored pixel (x, y) is displayed at (a*x + c*y, b*x + d*y) plus a translation.
_MATRIX_SIGNS: dict[tuple[int, int, int, int], tuple[int, bool]] = {
    (1, 0, 0, 1): (0, False),
    (0, 1, -1, 0): (90, False),
    (-1, 0, 0, -1): (180, False),
    (0, -1, 1, 0): (270, False),
    (-1, 0, 0, 1): (0, True),
    (0, 1, 1, 0): (90, True),
    (1, 0, 0, -1): (180, True),
    (0, -1, -1, 0): (270, True),
}
_CV2_ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass(frozen=True)
class Orientation:
    """Turn a stored frame upright: rotate it `clockwise` degrees, then mirror it left-right if `mirror`."""

    clockwise: int = 0
    mirror: bool = False

    def __post_init__(self) -> None:
        if self.clockwise not in RIGHT_ANGLES:
            raise ValueError(f"clockwise rotation must be one of {RIGHT_ANGLES}, got {self.clockwise}")

    @property
    def is_upright(self) -> bool:
        """Stored frames are already upright (nothing to do)."""
        return self.clockwise == 0 and not self.mirror

    def upright_wh(self, stored_wh: tuple[int, int]) -> tuple[int, int]:
        """Size of the upright frame for a stored frame of `stored_wh` (width, height)."""
        width, height = stored_wh
        return (height, width) if self.clockwise in (90, 270) else (width, height)

    def describe(self) -> str:
        """What is done to stored frames, for logs: "kept as stored", "turned 90 degrees clockwise", ..."""
        if self.is_upright:
            return "kept as stored"
        turn = f"turned {self.clockwise} degrees clockwise" if self.clockwise else ""
        mirror = "mirrored left-right" if self.mirror else ""
        return " and ".join(part for part in (turn, mirror) if part)


UPRIGHT = Orientation()


def orientation_from_display_matrix(matrix: bytes | Iterable[int]) -> Orientation:
    """The orientation an FFmpeg display matrix (9 int32: 16.16 fixed point, raw side-data bytes or
    integers) describes. An angle off a right angle is taken to the nearest one, with a warning."""
    values = struct.unpack("<9i", bytes(matrix)) if isinstance(matrix, (bytes, bytearray, memoryview)) else tuple(matrix)
    if len(values) != 9:
        raise ValueError(f"a display matrix has 9 entries, got {len(values)}")
    a, b, c, d = (values[i] / 65536.0 for i in (0, 1, 3, 4))
    scale_x, scale_y = math.hypot(a, c), math.hypot(b, d)  # as av_display_rotation_get scales them
    if scale_x == 0 or scale_y == 0 or abs(a * d - b * c) < 1e-9:
        logger.warning("display matrix %s is degenerate; frames are used as stored", values)
        return UPRIGHT
    a, c, b, d = a / scale_x, c / scale_x, b / scale_y, d / scale_y
    signs = tuple(int(round(v)) if min(abs(v), abs(abs(v) - 1)) < 0.01 else 2 for v in (a, b, c, d))
    if signs in _MATRIX_SIGNS:
        clockwise, mirror = _MATRIX_SIGNS[signs]  # type: ignore[index]
        return Orientation(clockwise, mirror)
    # The clockwise angle (minus av_display_rotation_get's), taken to the nearest right angle.
    clockwise_angle = math.degrees(math.atan2(b, a))
    clockwise = int(round(clockwise_angle / 90.0)) % 4 * 90
    logger.warning(
        "display matrix turns frames %.1f degrees clockwise, not a right angle; turning them %d degrees",
        clockwise_angle, clockwise,
    )
    return Orientation(clockwise)


def frame_orientation(frame: av.VideoFrame) -> Orientation | None:
    """The orientation a decoded frame's DISPLAYMATRIX side data states; None when it has none."""
    try:
        side_data = frame.side_data.get("DISPLAYMATRIX")
    except (KeyError, ValueError):
        side_data = None
    if side_data is None:
        return None
    return orientation_from_display_matrix(bytes(side_data))


def setting_orientation(setting: RotationSetting) -> Orientation | None:
    """The fixed orientation a `source.rotation` setting asks for; None for "auto" (from metadata)."""
    if setting == "auto":
        return None
    return Orientation(int(setting))


def to_upright(bgr: np.ndarray, orientation: Orientation) -> np.ndarray:
    """`bgr` turned upright; the same array when it already is."""
    if orientation.clockwise:
        bgr = cv2.rotate(bgr, _CV2_ROTATIONS[orientation.clockwise])
    if orientation.mirror:
        bgr = cv2.flip(bgr, 1)
    return bgr


def from_upright(bgr: np.ndarray, clockwise: int) -> np.ndarray:
    """What a camera that needs `clockwise` degrees to be seen upright stores for the upright `bgr`."""
    if clockwise not in RIGHT_ANGLES:
        raise ValueError(f"rotation must be one of {RIGHT_ANGLES}, got {clockwise}")
    return cv2.rotate(bgr, _CV2_ROTATIONS[(360 - clockwise) % 360]) if clockwise else bgr


class FrameOrienter:
    """Turns each decoded frame of one stream upright, following `setting` ("auto" or a fixed clockwise
    rotation).

    With "auto", a frame's own display matrix decides; a frame without one keeps the orientation of
    the frames before it (an H.264 display orientation SEI lasts until the next one), starting from
    `initial` (upright unless given). A change of orientation within the stream is logged.
    """

    def __init__(self, setting: RotationSetting, name: str, initial: Orientation | None = None) -> None:
        self.setting = setting
        self.name = name
        self._fixed = setting_orientation(setting)
        self.current = self._fixed or initial or UPRIGHT
        self._seen_frame = False
        self._last_rotation: float | None = None

    @property
    def source_label(self) -> str:
        return "as the metadata says" if self._fixed is None else "as the rotation setting says"

    def orientation_of(self, frame: av.VideoFrame) -> Orientation:
        """The orientation to apply to `frame` (and the one remembered for frames without metadata)."""
        if self._fixed is not None:
            return self._fixed
        # Reading a frame's side data leaks memory in PyAV (about 7 KB a frame), `frame.rotation` does
        # not: the full display matrix (which also tells a mirror) is read on the first frame and
        # whenever the rotation angle changes, not on every frame.
        rotation = frame.rotation
        if self._seen_frame and rotation == self._last_rotation:
            return self.current
        self._last_rotation = rotation
        stated = frame_orientation(frame)
        if stated is not None and stated != self.current:
            if self._seen_frame:
                logger.warning("%s: display orientation changed mid-stream: %s -> %s",
                               self.name, self.current.describe(), stated.describe())
            self.current = stated
        self._seen_frame = True
        return self.current

    def upright_bgr(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame as upright BGR pixels."""
        return to_upright(frame.to_ndarray(format="bgr24"), self.orientation_of(frame))


def first_frame_orientation(path: Path | str, max_packets: int = 256) -> Orientation | None:
    """The display orientation of the first video frame of a file; None when no frame decodes within
    `max_packets` packets. Opens the file on its own (the caller's container is left as it is)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for count, packet in enumerate(container.demux(stream)):
            if count >= max_packets:
                break
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            if frames:
                return frame_orientation(frames[0]) or UPRIGHT
    return None


def write_rotated_clip(
    frames_bgr_upright: Iterable[np.ndarray], path: Path | str, rotation_deg: int, fps: int | Fraction = 25,
    crf: int = 18,
) -> Path:
    """Write an H.264 .mp4 as a phone does: each upright frame is stored turned `rotation_deg` degrees
    counter-clockwise and the stream's display matrix says to turn it `rotation_deg` degrees clockwise
    for display (a portrait phone clip has rotation_deg 90). Frames need an even width and height (yuv420p);
    timestamps are frame indices at `fps`. Returns `path`; a failure leaves no file."""
    if rotation_deg not in RIGHT_ANGLES:
        raise ValueError(f"rotation must be one of {RIGHT_ANGLES}, got {rotation_deg}")
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise SinkError(f"{path}: a rotated clip is written as .mp4")
    try:
        _encode_rotated(frames_bgr_upright, path, rotation_deg, Fraction(fps), crf)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path



def _encode_rotated(frames_bgr_upright: Iterable[np.ndarray], path: Path, rotation_deg: int, fps: Fraction,
                    crf: int) -> None:
    written = 0
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        stream.pix_fmt = "yuv420p"
        # PyAV's angle is counter-clockwise, FFmpeg's display matrix convention.
        stream.set_display_rotation(-rotation_deg)
        for upright in frames_bgr_upright:
            stored = np.ascontiguousarray(from_upright(upright, rotation_deg))
            height, width = stored.shape[:2]
            if width % 2 or height % 2:
                raise SinkError(f"{path}: frame size {width}x{height} must be even for yuv420p")
            if written == 0:
                stream.width, stream.height = width, height
            elif (stream.width, stream.height) != (width, height):
                raise SinkError(f"{path}: frame {written} is {width}x{height}, the clip is {stream.width}x{stream.height}")
            frame = av.VideoFrame.from_ndarray(stored, format="bgr24")
            frame.pts = written
            frame.time_base = 1 / fps
            container.mux(stream.encode(frame))
            written += 1
        if written == 0:
            raise SinkError(f"{path}: no frames to write")
        container.mux(stream.encode(None))
