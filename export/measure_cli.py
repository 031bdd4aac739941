"""What the export/ measurement scripts share on the command line: the common arguments, and how a
report is handed over (JSON on stdout, and to a file if asked)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from export.sdn_data import align_face_bgr, build_offline_faces, detect_faces_centerface


def measurement_parser(description: str | None, default_model: str) -> argparse.ArgumentParser:
    """A parser with the arguments every held-out-face measurement takes."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default=default_model)
    parser.add_argument("--photos", type=Path, nargs="*", default=[], help="extra photos; every face found is held out")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality the outputs are stored at")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=50, help="latency runs per measurement")
    parser.add_argument("--out", type=Path, help="write the report as JSON")
    return parser


def held_out_faces(size: int, num_attributes: int, photos: Sequence[Path]) -> list[tuple[str, np.ndarray]]:
    """(source, aligned BGR crop) of the offline set's held-out faces, then every face CenterFace finds
    in `photos`; SystemExit naming a photo that cannot be read."""
    _, held_out = build_offline_faces(size, num_attributes)
    faces = [(record.source, record.bgr) for record in held_out]
    for photo in photos:
        bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"cannot read {photo}")
        for number, kps in enumerate(detect_faces_centerface(bgr)):
            faces.append((f"{photo.name} face {number}", align_face_bgr(bgr, kps, size)))
    return faces


def emit_report(report: dict[str, object], out: Path | None) -> None:
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
