"""Cutting a video at key frames, anonymizing the segments apart and joining them: no Ray needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster_clips import clip_camera, dark_share_of_face_centres, decoded_frames, frame_times, write_gop_clip
from streamd.cluster.join import join_segments
from streamd.cluster.segment_run import anonymize_segment
from streamd.cluster.video_index import VideoIndex, plan_segments, read_video_index
from streamd.errors import SourceError
from streamd.oneshot import anonymize_video

FRAMES = 50
GOP = 10


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    path = tmp_path_factory.mktemp("segments") / "clip.mp4"
    return path, write_gop_clip(path, FRAMES, gop=GOP)


def test_index_reads_every_frame_and_key_frame(gop_clip) -> None:
    path, _ = gop_clip
    index = read_video_index(path)
    assert index.frame_count == FRAMES
    assert [index.index_of(pts) for pts in index.keyframe_pts] == list(range(0, FRAMES, GOP))
    assert index.frame_pts == tuple(pts for pts, _ in frame_times(path))


def test_plan_cuts_at_key_frames_and_covers_every_frame_once() -> None:
    index = VideoIndex(tuple(range(0, 100 * 3, 3)), tuple(range(0, 100 * 3, 30)), time_base=1)
    segments = plan_segments(index, segment_frames=25, warmup_frames=4)
    # the last 10 frames are too short a segment of their own (under half of 25) and join the one before
    assert [(s.first_index, s.end_index) for s in segments] == [(0, 30), (30, 60), (60, 100)]
    covered = [i for s in segments for i in range(s.first_index, s.end_index)]
    assert covered == list(range(100))
    for segment in segments[1:]:
        assert segment.warmup_from_pts == index.frame_pts[segment.first_index - 4]
        assert segment.decode_from_pts in index.keyframe_pts and segment.decode_from_pts <= segment.warmup_from_pts
    assert segments[-1].end_pts is None


def test_short_file_is_one_segment() -> None:
    index = VideoIndex(tuple(range(40)), (0, 20), time_base=1)
    assert len(plan_segments(index, segment_frames=1500, warmup_frames=12)) == 1


def test_not_a_video_is_a_source_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="bad.mp4"):
        read_video_index(bad)


def test_joined_segments_match_a_whole_file_run_and_miss_no_face_at_the_seams(gop_clip, tmp_path: Path) -> None:
    """Same frame count and timestamps as the plain run; every face covered on both sides of each seam."""
    path, truth = gop_clip
    camera = clip_camera(path, method="solid")
    local = tmp_path / "local.mp4"
    anonymize_video(path, local, camera)
    index = read_video_index(path)
    segments = plan_segments(index, segment_frames=GOP * 2, warmup_frames=6)
    assert len(segments) >= 2
    parts = [anonymize_segment(path, segment, index, camera, tmp_path / f"part-{segment.number}.mp4").path
             for segment in segments]
    joined = tmp_path / "joined.mp4"
    assert join_segments(parts, joined) == FRAMES
    assert frame_times(joined) == frame_times(local) == frame_times(path)
    seams = [segment.first_index for segment in segments[1:]]
    frames = decoded_frames(joined)
    for seam in seams:
        for frame_index in range(seam - 3, seam + 3):
            shares = dark_share_of_face_centres(frames[frame_index], truth[frame_index])
            assert shares and min(shares) > 0.8, f"frame {frame_index} at the seam {seam}: {shares}"
