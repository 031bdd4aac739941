"""One truth-benchmark evaluation from start to end: run, score, and write the report folder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamd.config import ANONYMIZATION_METHODS, CameraConfig
from streamd.errors import TruthError
from streamd.truth.runner import DEFAULT_FRAME_STEP, DEFAULT_MIN_VISIBILITY, RunSpec, find_clips, run_truth_benchmark

TRUTH_METHODS = tuple(ANONYMIZATION_METHODS)
BASELINES = ("deface",)


@dataclass(frozen=True)
class TruthOutcome:
    report: dict[str, object]
    files: dict[str, Path]


def run_specs(methods: Sequence[str], profiles: Sequence[str | None], baseline: str | None) -> list[RunSpec]:
    unknown = [method for method in methods if method not in TRUTH_METHODS]
    if unknown:
        raise TruthError(f"--truth measures the methods {', '.join(TRUTH_METHODS)}; got {unknown[0]!r}")
    if baseline is not None and baseline not in BASELINES:
        raise TruthError(f"unknown baseline {baseline!r} (choose {', '.join(BASELINES)})")
    specs = [RunSpec("streamd", method, profile) for method in dict.fromkeys(methods)
             for profile in dict.fromkeys(profiles)]
    if baseline is not None:
        specs.append(RunSpec(baseline, "blur"))
    return specs


def evaluate_truth(input_path: Path, truth_path: Path, out_dir: Path, *, conditions_path: Path | None = None,
                   methods: Sequence[str] = ("blur",), profiles: Sequence[str | None] = (None,),
                   baseline: str | None = None, frame_step: int = DEFAULT_FRAME_STEP,
                   min_visibility: float = DEFAULT_MIN_VISIBILITY,
                   progress: Callable[[str], None] | None = None,
                   base_camera: CameraConfig | None = None) -> TruthOutcome:
    """Anonymize, score against ground truth, write truth-report.{json,md}, the plot and the contact sheet."""
    from streamd.bench import machine_description
    from streamd.truth.figures import missed_contact_sheet, misses_plot
    from streamd.truth.report import build_report, write_report

    specs = run_specs(methods, profiles, baseline)
    clips = find_clips(input_path, truth_path, conditions_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = run_truth_benchmark(clips, specs, out_dir, frame_step, min_visibility, progress, base_camera)
    report = build_report(clips, results, frame_step, min_visibility, machine_description())
    extra = {"plot": out_dir / "truth-misses-by-size.png"}
    misses_plot(extra["plot"], report)
    sheet = out_dir / "truth-missed.jpg"
    if missed_contact_sheet(sheet, results):
        extra["contact_sheet"] = sheet
    files = write_report(out_dir, report, results, extra)
    return TruthOutcome(report, files)
