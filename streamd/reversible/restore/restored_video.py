"""The restored video file: yuv420p H.264 that every player plays, or 4:4:4 lossless on request."""

from __future__ import annotations

import os

import av

from streamd.reversible.restore.outputs import PRIVATE_FILE_MODE
from streamd.reversible.restore.restorers import RestoreError
from streamd.sinks.video_out import VideoFileWriter

RESTORE_PRESET = "ultrafast"
RESTORED_PIXEL_FORMAT = "yuv420p"
LOSSLESS_PIXEL_FORMAT = "yuv444p"


class RestoredVideoWriter(VideoFileWriter):
    """H.264 yuv420p at a constant quantizer `qp`, which every player plays; `lossless` makes it 4:4:4 at
    quantizer 0 instead (exact up to colour conversion, large, and unplayable in browsers)."""

    def __init__(self, *args: object, qp: int = 2, lossless: bool = False, **kwargs: object) -> None:
        if not 1 <= qp <= 51:
            # 0 would be x264's lossless mode, whose profile (High 4:4:4 Predictive) players refuse
            raise ValueError(f"restored video quantizer must be 1..51, got {qp}")
        self._lossless = lossless
        self._qp = qp
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Restored faces are readable by the owner only, from the first byte on.
        os.chmod(self._temporary_path, PRIVATE_FILE_MODE)

    def _add_video_stream(self, codec: str, crf: int, preset: str, x264_params: str) -> av.video.stream.VideoStream:
        if self._lossless:
            stream = super()._add_video_stream(codec, 0, preset, x264_params)
        else:
            # x264's `qp` replaces CRF rate control by a constant quantizer
            constant = f"qp={self._qp}"
            stream = super()._add_video_stream(codec, crf, preset, f"{x264_params}:{constant}" if x264_params else constant)
        stream.pix_fmt = LOSSLESS_PIXEL_FORMAT if self._lossless else RESTORED_PIXEL_FORMAT
        return stream

    def takes_planes(self, frame: av.VideoFrame) -> bool:
        """Whether `frame` can be written as it is decoded (yuv420p at the output's size), unconverted."""
        return (not self._lossless and frame.format.name == RESTORED_PIXEL_FORMAT
                and (frame.width, frame.height) == self.encoded_resolution_wh == self.resolution_wh)

    def write_decoded(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode one yuv420p frame as decoded (see `takes_planes`), at `pts`."""
        if self._last_pts is not None and pts <= self._last_pts:
            raise RestoreError(f"{self.path}: pts {pts} does not increase (previous frame had {self._last_pts})")
        frame.pts = pts
        frame.time_base = self.time_base
        frame.pict_type = av.video.frame.PictureType.NONE
        self._mux_audio_until(pts)
        try:
            for packet in self._video_stream.encode(frame):
                self._mux_video(packet)
        except (OSError, av.FFmpegError) as exc:
            raise RestoreError(f"{self.path}: cannot encode or write a frame: {exc}") from None
        self._last_pts = pts
        self.frames_written += 1
