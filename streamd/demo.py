"""`streamd demo`: build the demo clip, run the full pipeline on it, and show what happened.

Writes the input clip, the anonymized clip, a contact sheet (original | anonymized) and a summary
with frame and face counts, how many ground-truth faces were covered by a mask, and speed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from streamd.app import open_stream
from streamd.config import (
    AnonymizerConfig,
    CameraConfig,
    CenterFaceConfig,
    FileOutputConfig,
    FileSourceConfig,
    OutputsConfig,
)
from streamd.contact_sheet import write_contact_sheet
from streamd.demo_clip import DEMO_SECONDS, build_demo_clip
from streamd.align import expand_box
from streamd.types import AnonymizedFrame

logger = logging.getLogger(__name__)

CONTACT_SHEET_ROWS = 4
TILE_WH = (640, 360)
# A ground-truth face counts as covered when a mask region covers this share of its box.
COVERAGE_REQUIRED = 0.95


def demo_camera(input_path: Path, output_path: Path, method: str = "blur") -> CameraConfig:
    """The embedded default configuration the demo runs (mirrored in configs/demo.yaml)."""
    return CameraConfig(
        id="demo",
        source=FileSourceConfig(path=input_path),
        detector=CenterFaceConfig(input_width=640, input_height=360),
        anonymizer=AnonymizerConfig(method=method),
        outputs=OutputsConfig(file=FileOutputConfig(path=output_path)),
    )


def box_coverage(truth_xyxy: np.ndarray, mask_boxes: list[tuple[int, int, int, int]], frame_wh: tuple[int, int]) -> float:
    """Share of the truth box's pixels inside the union of the mask boxes."""
    width, height = frame_wh
    x0, y0, x1, y1 = (int(round(v)) for v in truth_xyxy)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return 1.0
    covered = np.zeros((y1 - y0, x1 - x0), bool)
    for mx0, my0, mx1, my1 in mask_boxes:
        covered[max(my0 - y0, 0) : max(my1 - y0, 0), max(mx0 - x0, 0) : max(mx1 - x0, 0)] = True
    return float(covered.mean())


@dataclass
class DemoSummary:
    frames_in: int
    frames_out: int
    truth_faces: int
    truth_faces_covered: int
    frames_with_uncovered_face: int
    faces_masked_on_prediction: int
    tracks: int
    fps: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    stage_mean_ms: dict[str, float | None]
    input_clip: str
    output_clip: str
    contact_sheet: str


def run_demo(out_dir: Path, method: str = "blur", seconds: float = DEMO_SECONDS) -> DemoSummary:
    out_dir.mkdir(parents=True, exist_ok=True)
    input_path = out_dir / "demo-input.mp4"
    output_path = out_dir / f"demo-{method}.mp4"
    sheet_path = out_dir / "contact-sheet.png"
    logger.info("building the demo clip at %s", input_path)
    clip = build_demo_clip(input_path, seconds=seconds)
    camera = demo_camera(input_path, output_path, method)
    sheet_indices = set(np.linspace(0, clip.frame_count - 1, CONTACT_SHEET_ROWS).round().astype(int).tolist())
    sheet_rows: list[list[tuple[str, np.ndarray]]] = []
    covered = 0
    uncovered_frames = 0

    def check_frame(anonymized: AnonymizedFrame) -> None:
        nonlocal covered, uncovered_frames
        frame_wh = anonymized.frame.resolution_wh
        mask_boxes = [expand_box(face.xyxy, camera.anonymizer.margin, frame_wh) for face in anonymized.faces]
        truth = clip.truth_xyxy[anonymized.frame.index]
        hits = sum(box_coverage(box, mask_boxes, frame_wh) >= COVERAGE_REQUIRED for box in truth)
        covered += hits
        uncovered_frames += int(hits < len(truth))
        if anonymized.frame.index in sheet_indices:
            label = f"frame {anonymized.frame.index}"
            sheet_rows.append([(f"{label}: original", anonymized.frame.bgr), (f"{label}: {method}", anonymized.bgr)])

    started = time.perf_counter()
    with open_stream(camera, on_frame=check_frame) as pipeline:
        stats = pipeline.run()
    elapsed = time.perf_counter() - started
    write_contact_sheet(sheet_path, sheet_rows, TILE_WH)
    snapshot = stats.snapshot()
    summary = DemoSummary(
        frames_in=stats.frames_in,
        frames_out=stats.frames_out,
        truth_faces=int(sum(len(boxes) for boxes in clip.truth_xyxy)),
        truth_faces_covered=int(covered),
        frames_with_uncovered_face=uncovered_frames,
        faces_masked_on_prediction=stats.faces_predicted,
        tracks=stats.tracks_started,
        fps=stats.frames_out / elapsed,
        latency_p50_ms=snapshot["latency_p50_ms"],
        latency_p95_ms=snapshot["latency_p95_ms"],
        stage_mean_ms={name: summary["mean_ms"] for name, summary in snapshot["stages"].items()},
        input_clip=str(input_path),
        output_clip=str(output_path),
        contact_sheet=str(sheet_path),
    )
    (out_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary
