"""The truth benchmark's report: missed faces per size bucket, per condition and per run, false masks
and speed, as truth-report.json, truth-report.md and truth-instances.csv (one line per scored instance)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamd.truth.misses import FALSE_MASK_DIFF, MISS_SSIM, SIZE_BUCKETS, Tally, tally_by_bucket
from streamd.truth.runner import RunResult, TruthClip

CONDITION_ORDER = ("clear", "small", "tilted", "dark", "blur", "occluded", "crowd", "rotated-video")


def summarize_run(result: RunResult) -> dict[str, object]:
    overall = Tally()
    by_tag: dict[str, Tally] = {}
    by_clip: dict[str, Tally] = {}
    for record in result.instances:
        overall.add(record.missed)
        by_clip.setdefault(record.clip, Tally()).add(record.missed)
        for tag in record.tags:
            by_tag.setdefault(tag, Tally()).add(record.missed)
    buckets = tally_by_bucket((record.width_px, record.missed) for record in result.instances)
    ordered_tags = [tag for tag in CONDITION_ORDER if tag in by_tag] + sorted(set(by_tag) - set(CONDITION_ORDER))
    shares = np.array(result.false_mask_shares, np.float64)
    return {
        "tool": result.spec.tool,
        "method": result.spec.method,
        "profile": result.spec.profile,
        "commands": result.commands,
        "frames": result.frames,
        "wall_s": result.wall_s,
        "fps": result.frames / result.wall_s if result.wall_s > 0 else None,
        "frames_scored": result.frames_scored,
        "missed": overall.as_dict(),
        "by_size": {name: buckets[name].as_dict() for name in SIZE_BUCKETS},
        "by_condition": {tag: by_tag[tag].as_dict() for tag in ordered_tags},
        "by_clip": {clip: tally.as_dict() for clip, tally in by_clip.items()},
        "false_mask_pct": {
            "mean": float(shares.mean() * 100) if shares.size else None,
            "max": float(shares.max() * 100) if shares.size else None,
        },
        "outputs": [str(path) for path in result.outputs],
    }


def build_report(clips: Sequence[TruthClip], results: Sequence[RunResult], frame_step: int,
                 min_visibility: float, machine: dict[str, object]) -> dict[str, object]:
    return {
        "clips": [{"name": clip.name, "video": str(clip.video), "gt": str(clip.gt),
                   "conditions": str(clip.conditions) if clip.conditions else None} for clip in clips],
        "frame_step": frame_step,
        "min_visibility": min_visibility,
        "definition": {
            "missed": f"SSIM > {MISS_SSIM} between original and output over the central 50% of the ground-truth "
                      "box (at least 8x8 px; grey, both brightened alike to a mean of at least 128 (gain <= 8) and "
                      "smoothed by a 1 px Gaussian; SSIM window Gaussian 11x11, sigma 1.5)",
            "false_mask_pct": f"share of the frame farther than one face box size from every ground-truth face "
                              f"whose grey value changed by more than {FALSE_MASK_DIFF}",
            "size_buckets": "ground-truth box width in pixels",
        },
        "machine": machine,
        "runs": {result.spec.label: summarize_run(result) for result in results},
    }


def _cell(tally: dict[str, object]) -> str:
    if not tally["total"]:
        return "-"
    return f"{tally['missed_pct']:.1f}% ({tally['missed']}/{tally['total']})"


def _fps(value: object) -> str:
    return "-" if value is None else f"{value:.1f}"


def markdown_tables(report: dict[str, object]) -> str:
    runs: dict[str, dict] = report["runs"]  # type: ignore[assignment]
    lines = ["| run | missed | " + " | ".join(f"w {name} px" for name in SIZE_BUCKETS)
             + " | false mask % (mean / max) | fps |",
             "|---|---|" + "---|" * len(SIZE_BUCKETS) + "---|---|"]
    for label, run in runs.items():
        false_mask = run["false_mask_pct"]
        masks = "-" if false_mask["mean"] is None else f"{false_mask['mean']:.2f} / {false_mask['max']:.2f}"
        lines.append(f"| {label} | {_cell(run['missed'])} | "
                     + " | ".join(_cell(run["by_size"][name]) for name in SIZE_BUCKETS)
                     + f" | {masks} | {_fps(run['fps'])} |")
    tags = []
    for run in runs.values():
        tags += [tag for tag in run["by_condition"] if tag not in tags]
    if tags:
        lines += ["", "| run | " + " | ".join(tags) + " |", "|---|" + "---|" * len(tags)]
        for label, run in runs.items():
            lines.append(f"| {label} | " + " | ".join(
                _cell(run["by_condition"][tag]) if tag in run["by_condition"] else "-" for tag in tags) + " |")
    clips = []
    for run in runs.values():
        clips += [clip for clip in run.get("by_clip", {}) if clip not in clips]
    if len(clips) > 1:
        lines += ["", "| run | " + " | ".join(clips) + " |", "|---|" + "---|" * len(clips)]
        for label, run in runs.items():
            lines.append(f"| {label} | " + " | ".join(
                _cell(run["by_clip"][clip]) if clip in run["by_clip"] else "-" for clip in clips) + " |")
    return "\n".join(lines)


def text_table(report: dict[str, object]) -> str:
    """A plain table for the terminal: missed % per size bucket per run."""
    runs: dict[str, dict] = report["runs"]  # type: ignore[assignment]
    width = max([len(label) for label in runs] + [3])
    header = f"{'run':<{width}}  {'missed':>16}  " + "  ".join(f"{name:>16}" for name in SIZE_BUCKETS) \
        + f"  {'false mask %':>12}  {'fps':>6}"
    lines = [header]
    for label, run in runs.items():
        mean = run["false_mask_pct"]["mean"]
        lines.append(f"{label:<{width}}  {_cell(run['missed']):>16}  "
                     + "  ".join(f"{_cell(run['by_size'][name]):>16}" for name in SIZE_BUCKETS)
                     + f"  {'-' if mean is None else f'{mean:.2f}':>12}  {_fps(run['fps']):>6}")
    return "\n".join(lines)


def markdown_report(report: dict[str, object], files: dict[str, Path]) -> str:
    clips = ", ".join(clip["name"] for clip in report["clips"])  # type: ignore[index]
    definition = report["definition"]
    lines = [
        "# Missed faces against ground truth",
        "",
        f"Clips: {clips}. Every {report['frame_step']}th frame scored; instances less than "
        f"{report['min_visibility']:.0%} visible are not scored.",
        "",
        f"- missed: {definition['missed']}",  # type: ignore[index]
        f"- false mask %: {definition['false_mask_pct']}",  # type: ignore[index]
        f"- size buckets: {definition['size_buckets']}",  # type: ignore[index]
        "- fps: frames over wall time including start-up, on "
        f"{report['machine'].get('cpu', '?')} ({report['machine'].get('cpus_available', '?')} cpus)",  # type: ignore[union-attr]
        "",
        "## Missed faces per size bucket, per condition and per clip; false masks and speed",
        "",
        markdown_tables(report),
        "",
        "## Runs",
        "",
    ]
    for label, run in report["runs"].items():  # type: ignore[union-attr]
        lines.append(f"- {label}: {'; '.join(run['commands'])}")
    if files:
        lines += ["", "## Files", ""] + [f"- {name}: `{path.name}`" for name, path in files.items()]
    return "\n".join(lines) + "\n"


def write_instances_csv(path: Path, results: Sequence[RunResult]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "clip", "frame", "id", "width_px", "bucket", "visibility", "tags", "ssim", "missed"])
        for result in results:
            for record in result.instances:
                writer.writerow([result.spec.label, record.clip, record.frame, record.id, f"{record.width_px:.1f}",
                                 record.bucket, f"{record.visibility:.3f}", "|".join(sorted(record.tags)),
                                 f"{record.ssim:.4f}", int(record.missed)])


def write_report(out_dir: Path, report: dict[str, object], results: Sequence[RunResult],
                 extra_files: dict[str, Path]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "truth-report.json", "markdown": out_dir / "truth-report.md",
             "instances": out_dir / "truth-instances.csv", **extra_files}
    files["json"].write_text(json.dumps(report, indent=2) + "\n")
    write_instances_csv(files["instances"], results)
    files["markdown"].write_text(markdown_report(report, {k: v for k, v in files.items() if k != "markdown"}))
    return files
