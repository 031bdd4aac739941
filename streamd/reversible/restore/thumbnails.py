"""Track thumbnails for choosing what to restore: one anonymized picture per track, no key needed.

For each track, the frame where its face box is largest is decoded from the anonymized video; the
thumbnail shows the face (anonymized, as recorded) with its surroundings, the box outlined, and the
track id with its first and last time on a band below. Nothing is unsealed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from streamd.errors import SinkError
from streamd.reversible.recording.recording_format import Recording, decode_video_frames
from streamd.sinks.video_out import write_image

logger = logging.getLogger(__name__)

THUMBNAIL_HEIGHT = 240
CONTEXT_SCALE = 2.5
BAND_HEIGHT = 44


def _largest_faces(recording: Recording) -> dict[int, tuple[int, tuple[float, float, float, float]]]:
    """Per track: (pts key of the frame where its box is largest, that box)."""
    best: dict[int, tuple[float, int, tuple[float, float, float, float]]] = {}
    for record in recording.records:
        key = round(float(record.pts * record.time_base) * 1000)
        for face in record.document["faces"]:
            x0, y0, x1, y1 = (float(value) for value in face["xyxy"])
            area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
            track_id = int(face["track_id"])
            if track_id not in best or area > best[track_id][0]:
                best[track_id] = (area, key, (x0, y0, x1, y1))
    return {track_id: (key, box) for track_id, (_, key, box) in best.items()}


def _thumbnail(frame_bgr: np.ndarray, box: tuple[float, float, float, float], label: str, times: str) -> np.ndarray:
    height, width = frame_bgr.shape[:2]
    x0, y0, x1, y1 = box
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0, 16.0) * CONTEXT_SCALE
    cx0, cy0 = int(max(0, centre_x - side / 2)), int(max(0, centre_y - side / 2))
    cx1, cy1 = int(min(width, centre_x + side / 2)), int(min(height, centre_y + side / 2))
    crop = frame_bgr[cy0:cy1, cx0:cx1].copy()
    cv2.rectangle(crop, (int(x0) - cx0, int(y0) - cy0), (int(x1) - cx0, int(y1) - cy0), (0, 200, 255), 2)
    scale = THUMBNAIL_HEIGHT / max(1, crop.shape[0])
    crop = cv2.resize(crop, (max(1, int(crop.shape[1] * scale)), THUMBNAIL_HEIGHT), interpolation=cv2.INTER_AREA)
    text_width = max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale_text, 1)[0][0]
                     for text, scale_text in ((label, 0.55), (times, 0.45)))
    width_out = max(crop.shape[1], text_width + 12)
    canvas = np.zeros((THUMBNAIL_HEIGHT + BAND_HEIGHT, width_out, 3), dtype=np.uint8)
    canvas[:THUMBNAIL_HEIGHT, :crop.shape[1]] = crop
    cv2.putText(canvas, label, (6, THUMBNAIL_HEIGHT + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(canvas, times, (6, THUMBNAIL_HEIGHT + 38), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (200, 200, 200), 1, cv2.LINE_AA)
    return canvas


def write_track_thumbnails(recording: Recording, summaries: Sequence[object], folder: Path) -> list[Path]:
    """Write `track-<id>.jpg` per track into `folder` (created if needed); returns the files written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"{folder}: cannot create the thumbnail folder: {exc.strerror}") from None
    wanted = _largest_faces(recording)
    by_key: dict[int, list[int]] = {}
    for track_id, (key, _) in wanted.items():
        by_key.setdefault(key, []).append(track_id)
    spans = {int(summary.track_id): summary for summary in summaries}  # type: ignore[attr-defined]
    written: list[Path] = []
    for pts, time_base, bgr in decode_video_frames(recording.path):
        if pts is None or time_base is None:
            continue
        for track_id in by_key.pop(round(float(pts * time_base) * 1000), []):
            summary = spans.get(track_id)
            times = (f"seen {summary.first_s:.2f}-{summary.last_s:.2f} s, {summary.frames} frames"  # type: ignore[attr-defined]
                     if summary is not None else "")
            path = folder / f"track-{track_id}.jpg"
            write_image(path, _thumbnail(bgr, wanted[track_id][1], f"track {track_id}", times))
            written.append(path)
        if not by_key:
            break
    return sorted(written)
