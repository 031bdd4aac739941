"""A picture of a seam: the frames around a segment boundary, whole-file run above, archive mode below.

Writes a clip of the demo faces (640x360, key frame every 25 frames), anonymizes it whole and as
segments of 25 frames joined back (what archive mode does on each node, here without Ray), and puts
the two frames before and the two after the first seam side by side in docs/images/cluster-seam.jpg.

    python -m export.cluster_seam_sheet
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import av
import cv2

from streamd.cluster.join import join_segments
from streamd.cluster.segment_run import anonymize_segment
from streamd.cluster.video_index import plan_segments, read_video_index
from streamd.config import CameraConfig
from streamd.contact_sheet import contact_sheet
from streamd.demo_clip import write_keyframed_clip
from streamd.oneshot import anonymize_video

WIDTH, HEIGHT, FPS, GOP, FRAMES = 640, 360, 25, 25, 60


def decoded(path: Path) -> list:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def main() -> int:
    output = Path("docs/images/cluster-seam.jpg")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        clip = work / "clip.mp4"
        write_keyframed_clip(clip, FRAMES, (WIDTH, HEIGHT), FPS, GOP)
        camera = CameraConfig.model_validate({"id": "seam", "source": {"type": "file", "path": str(clip)},
                                              "detector": {"type": "centerface", "input_width": WIDTH,
                                                           "input_height": HEIGHT}})
        anonymize_video(clip, work / "whole.mp4", camera)
        index = read_video_index(clip)
        segments = plan_segments(index, segment_frames=GOP, warmup_frames=12)
        parts = [anonymize_segment(clip, segment, index, camera, work / f"part-{segment.number}.mp4").path
                 for segment in segments]
        join_segments(parts, work / "joined.mp4")
        seam = segments[1].first_index
        whole, joined, original = decoded(work / "whole.mp4"), decoded(work / "joined.mp4"), decoded(clip)
        picked = range(seam - 2, seam + 2)
        rows = [
            [(f"input {i}", original[i]) for i in picked],
            [(f"whole file {i}", whole[i]) for i in picked],
            [(f"segments {i}{' (seam)' if i == seam else ''}", joined[i]) for i in picked],
        ]
        cv2.imwrite(str(output), contact_sheet(rows, (320, 180)), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"seam at frame {seam}; written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
