"""A picture of faces one run left recognisable and another masked: original | before | after.

Reads the instances a `streamd eval --truth` report scored (`truth-instances.csv`) and the anonymized
clips it kept under `outputs/`, picks the instances the `--before` run missed and the `--after` run
masked (widest first, at most one per track and clip), and writes a contact sheet.

    python -m export.misses_before_after REPORT_DIR --benchmark BENCH_DIR \
        --before "streamd blur fast" --after "streamd blur balanced" -o docs/images/misses-before-after.jpg
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from streamd.contact_sheet import write_contact_sheet
from streamd.truth.mot import GtBox, read_gt
from streamd.truth.runner import _crop, upright_frames

TILE_WH = (200, 200)


def pick_instances(instances_csv: Path, before: str, after: str, count: int) -> list[dict[str, str]]:
    """Instances `before` missed and `after` masked, widest first, one per (clip, id)."""
    by_key: dict[tuple[str, str, str], dict[str, dict[str, str]]] = defaultdict(dict)
    with instances_csv.open() as handle:
        for row in csv.DictReader(handle):
            by_key[(row["clip"], row["frame"], row["id"])][row["run"]] = row
    chosen: list[dict[str, str]] = []
    seen_tracks: set[tuple[str, str]] = set()
    candidates = [runs for runs in by_key.values()
                  if before in runs and after in runs and runs[before]["missed"] == "1" and runs[after]["missed"] == "0"]
    for runs in sorted(candidates, key=lambda runs: -float(runs[before]["width_px"])):
        row = runs[before]
        if (row["clip"], row["id"]) in seen_tracks:
            continue
        seen_tracks.add((row["clip"], row["id"]))
        chosen.append(row)
        if len(chosen) == count:
            break
    return chosen


def frames_at(path: Path, wanted: set[int]) -> dict[int, object]:
    """Upright frames of a video at the 1-based frame numbers in `wanted`."""
    found = {}
    for number, bgr in enumerate(upright_frames(path), start=1):
        if number in wanted:
            found[number] = bgr
        if len(found) == len(wanted):
            break
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report folder of streamd eval --truth")
    parser.add_argument("--benchmark", type=Path, required=True, help="the benchmark folder the report scored")
    parser.add_argument("--before", required=True, help="run label, as in the report")
    parser.add_argument("--after", required=True, help="run label, as in the report")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    chosen = pick_instances(args.report / "truth-instances.csv", args.before, args.after, args.count)
    if not chosen:
        print(f"no instance that {args.before!r} missed and {args.after!r} masked")
        return 1
    rows = []
    for row in chosen:
        frame_number = int(row["frame"])
        clip_dir = args.benchmark / row["clip"]
        box = next(box for box in _read_boxes(clip_dir / "gt" / "gt.txt", frame_number) if str(box.id) == row["id"])
        sources = [("original", args.benchmark / f"{row['clip']}.mp4")] + [
            (label, args.report / "outputs" / row["clip"] / f"{label.replace(' ', '-')}.mp4")
            for label in (args.before, args.after)]
        tiles = []
        for label, path in sources:
            bgr = frames_at(path, {frame_number})[frame_number]
            tiles.append((f"{label}" if label != "original" else f"{row['clip']} f{frame_number} w{float(row['width_px']):.0f}",
                          _crop(bgr, box)))
        rows.append(tiles)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_contact_sheet(args.output, rows, TILE_WH)
    print(f"{args.output}: {len(rows)} faces, original | {args.before} | {args.after}")
    return 0


def _read_boxes(gt_path: Path, frame_number: int) -> list[GtBox]:
    return [box for box in read_gt(gt_path) if box.frame == frame_number]


if __name__ == "__main__":
    raise SystemExit(main())
