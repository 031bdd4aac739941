"""Offline evaluation: the papers' metrics on faces at known boxes, per method, as report files.

`run_evaluation` is what `streamd eval` calls. Modules: `metrics` (pure functions), `identity` (the
dlib judge), `dataset` (inputs), `methods` and `sdn_adapter` (pluggable method adapters), `runner`
(the loop), `report` and `plots` (the files), `perceptual` (LPIPS, FID and PieAPP through their packages).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamd.evaluation.errors import EvaluationError, EvaluationKeyError, NoFacesError

logger = logging.getLogger(__name__)

DEFAULT_METHODS = ("blur", "mosaic", "solid", "blur+sealed")


@dataclass(frozen=True)
class EvaluationOutcome:
    report: dict[str, object]
    files: dict[str, Path]


def run_evaluation(input_path: Path | None, method_names: Sequence[str], out_dir: Path, *, key_hex: str | None = None,
                   seed: int = 0, diversity_keys: int = 3, frame_step: int = 12, max_frames: int = 8,
                   progress_factory: Callable[[int], object] | None = None) -> EvaluationOutcome:
    """Evaluate `method_names` on the faces of `input_path` (None: the bundled sample photos).

    `progress_factory(total)` may return a tqdm-like object (update(n), close()).
    Raises NoFacesError when there is no face to measure, EvaluationError or ModelError for bad options.
    """
    from streamd.evaluation import runner
    from streamd.evaluation.dataset import evaluation_detector, load_dataset
    from streamd.evaluation.identity import DlibIdentityJudge
    from streamd.evaluation.methods import build_method
    from streamd.evaluation.perceptual.harness import score_perceptual
    from streamd.evaluation.report import build_report, write_report

    if not method_names:
        raise EvaluationError("no method to evaluate")
    base_key = runner.parse_key(key_hex) if key_hex is not None else runner.seed_key(seed)
    judge = DlibIdentityJudge()
    methods = [build_method(name) for name in dict.fromkeys(method_names)]
    detector = evaluation_detector()
    try:
        runner.check_key_usable(methods, key_hex is not None)
        dataset = load_dataset(input_path, detector, frame_step=frame_step, max_frames=max_frames)
        if dataset.face_count == 0:
            where = "the bundled sample photos" if input_path is None else str(input_path)
            skipped = f"; {len(dataset.failures)} unreadable" if dataset.failures else ""
            raise NoFacesError(f"{where}: no face found in {len(dataset.images_without_faces)} readable "
                               f"image(s){skipped}: nothing to measure")
        options = runner.EvalOptions(base_key=base_key, key_given=key_hex is not None, diversity_keys=diversity_keys)
        evaluator = runner.Evaluator(judge, detector, options)
        progress = progress_factory(len(methods) * len(dataset.images)) if progress_factory is not None else None
        try:
            results = evaluator.run(methods, dataset, progress.update if progress is not None else None)
        finally:
            if progress is not None:
                progress.close()
    finally:
        detector.close()
        for method in methods:
            method.close()
    if not any(result.rows for result in results):
        failures = "; ".join(f"{r.method.name} on {image}: {reason}" for r in results for image, reason
                             in r.failures.items())
        raise EvaluationError(f"every method failed on every image, nothing measured ({failures})")
    options_description = {
        "methods": [method.name for method in methods], "seed": seed, "key": "given" if key_hex else "from seed",
        "diversity_keys": diversity_keys, "frame_step": frame_step, "max_frames": max_frames,
    }
    perceptual_statuses = score_perceptual(results)
    report = build_report(results, dataset, judge.describe(), options_description, perceptual_statuses)
    files = write_report(out_dir, report, results)
    return EvaluationOutcome(report=report, files=files)


__all__ = ["DEFAULT_METHODS", "EvaluationError", "EvaluationKeyError", "EvaluationOutcome", "NoFacesError",
           "run_evaluation"]
