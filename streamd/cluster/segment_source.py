"""One segment of a video file as a frame source: seek to a key frame, decode, keep a pts range."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av

from streamd.cluster.video_index import Segment, VideoIndex
from streamd.errors import SourceError
from streamd.sources.files import FileVideoSource
from streamd.sources.orientation import RotationSetting
from streamd.types import VideoFrame


class SegmentSource(FileVideoSource):
    """Frames of `segment` from its first warm-up frame up to (not including) its `end_pts`.

    Frames keep the file's pts and their index in the whole file, so the pipeline sees exactly what a
    run over the whole file would see from that frame on. Decoding starts at the key frame at or
    before the first warm-up frame; frames before the warm-up are decoded and skipped.
    """

    def __init__(self, path: Path | str, segment: Segment, index: VideoIndex,
                 rotation: RotationSetting = "auto") -> None:
        super().__init__(path, rotation=rotation)
        self.segment = segment
        self.index = index

    @property
    def frame_count_hint(self) -> int | None:
        return self.segment.frame_count

    def frames(self) -> Iterator[VideoFrame]:
        segment = self.segment
        container = self._container
        stream = container.streams.video[0]
        if segment.number > 0:
            try:
                container.seek(segment.decode_from_pts, stream=stream, backward=True, any_frame=False)
            except (av.FFmpegError, OSError) as exc:
                raise SourceError(f"{self.path}: cannot seek to pts {segment.decode_from_pts}: {exc}") from None
        expected_index = self.index.index_of(segment.warmup_from_pts)
        for decoded in self._decoded_frames(container):
            pts = decoded.pts
            if pts is None:
                raise SourceError(f"{self.path}: a decoded frame has no pts; cannot place it in a segment")
            if pts < segment.warmup_from_pts:
                continue
            if segment.end_pts is not None and pts >= segment.end_pts:
                break
            frame_index = self.index.index_of(pts)
            if frame_index != expected_index:
                raise SourceError(
                    f"{self.path}: segment {segment.number} expected frame {expected_index} next, decoded "
                    f"frame {frame_index}; a frame did not decode"
                )
            expected_index += 1
            self.frames_decoded += 1
            yield VideoFrame(bgr=self._orienter.upright_bgr(decoded), index=frame_index, pts=pts,
                             time_base=self._time_base, wallclock=time.time())
        if expected_index != segment.end_index:
            raise SourceError(
                f"{self.path}: segment {segment.number} ended at frame {expected_index}, "
                f"expected {segment.end_index}; frames did not decode"
            )
