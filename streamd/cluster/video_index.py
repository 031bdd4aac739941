"""Where a video's frames and key frames are, read from its packets (no decoding).

The presentation timestamps of every video packet, sorted, give each frame's index in the file; the
key frames are where a decoder can start. `plan_segments` cuts the frame list at key frames into
segments of about `segment_frames`, so that each can be decoded on its own.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from streamd.errors import SourceError


@dataclass(frozen=True)
class VideoIndex:
    """Sorted frame pts and the pts of the key frames, in the stream's time base."""

    frame_pts: tuple[int, ...]
    keyframe_pts: tuple[int, ...]
    time_base: Fraction

    @property
    def frame_count(self) -> int:
        return len(self.frame_pts)

    def index_of(self, pts: int) -> int:
        """Index in presentation order of the frame with `pts`; SourceError when no frame has it."""
        index = bisect.bisect_left(self.frame_pts, pts)
        if index == len(self.frame_pts) or self.frame_pts[index] != pts:
            raise SourceError(f"a decoded frame has pts {pts}, which no packet of the file declares")
        return index


@dataclass(frozen=True)
class Segment:
    """Frames [first_index, end_index) of a file, and where decoding starts for them.

    `decode_from_pts` is the key frame at or before the first warm-up frame; the frames from
    `warmup_from_pts` to the segment's first frame are detected and tracked but not written, so that
    tracks that cross the seam are already running when the segment's first frame comes.
    """

    number: int
    first_index: int
    end_index: int
    start_pts: int
    end_pts: int | None  # None: to the end of the file
    warmup_from_pts: int
    decode_from_pts: int

    @property
    def frame_count(self) -> int:
        return self.end_index - self.first_index


def read_video_index(path: Path) -> VideoIndex:
    """Demux every packet of the first video stream of `path`; SourceError on a file that is no video."""
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise SourceError(f"{path}: not a video file, or the file is corrupt: {exc.strerror or exc}") from None
    with container:
        if not container.streams.video:
            raise SourceError(f"{path}: no video stream in the file")
        stream = container.streams.video[0]
        if stream.time_base is None:
            raise SourceError(f"{path}: the video stream has no time base")
        frame_pts: list[int] = []
        keyframe_pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    raise SourceError(f"{path}: packets without timestamps; the file cannot be cut into segments")
                frame_pts.append(int(packet.pts))
                if packet.is_keyframe:
                    keyframe_pts.append(int(packet.pts))
        except av.FFmpegError as exc:
            raise SourceError(f"{path}: reading packets failed: {exc.strerror or exc}") from None
    if not frame_pts:
        raise SourceError(f"{path}: no video frame in the file")
    frame_pts.sort()
    if len(set(frame_pts)) != len(frame_pts):
        raise SourceError(f"{path}: two packets share a timestamp; the file cannot be cut into segments")
    return VideoIndex(tuple(frame_pts), tuple(sorted(keyframe_pts)), Fraction(stream.time_base))


def plan_segments(index: VideoIndex, segment_frames: int, warmup_frames: int) -> list[Segment]:
    """Cut at the first key frame after every `segment_frames` frames; one segment for a short file."""
    if segment_frames < 1 or warmup_frames < 0:
        raise ValueError("segment_frames must be positive and warmup_frames not negative")
    key_indices = sorted({index.index_of(pts) for pts in index.keyframe_pts})
    cuts = [0]
    for key_index in key_indices:
        if key_index - cuts[-1] >= segment_frames and index.frame_count - key_index >= segment_frames // 2:
            cuts.append(key_index)
    bounds = list(zip(cuts, cuts[1:] + [index.frame_count]))
    segments = []
    for number, (first, end) in enumerate(bounds):
        warmup_first = max(0, first - warmup_frames) if number > 0 else first
        warmup_pts = index.frame_pts[warmup_first]
        decode_key = bisect.bisect_right(index.keyframe_pts, warmup_pts) - 1
        segments.append(Segment(
            number=number,
            first_index=first,
            end_index=end,
            start_pts=index.frame_pts[first],
            end_pts=index.frame_pts[end] if end < index.frame_count else None,
            warmup_from_pts=warmup_pts,
            decode_from_pts=index.keyframe_pts[max(decode_key, 0)],
        ))
    return segments
