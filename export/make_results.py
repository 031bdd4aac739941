"""Regenerate docs/results.md: `streamd eval` on the bundled faces and `streamd bench` against deface.

    .venv/bin/python export/make_results.py [--note "machine shared with other jobs"]

Writes docs/results.md, docs/images/eval-contact-sheet.jpg and docs/images/eval-identity-distance.png;
the full reports stay in --work-dir (default out/results-run/, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import cv2

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from streamd.bench import format_bench_table, run_bench  # noqa: E402
from streamd.evaluation import DEFAULT_METHODS, run_evaluation  # noqa: E402
from streamd.evaluation.report import perceptual_lines, summary_table  # noqa: E402

logger = logging.getLogger("export.make_results")

DOCS_DIR = REPO_ROOT / "docs"
CONTACT_SHEET_JPEG_QUALITY = 85
BENCH_METHOD = "blur"
# The bundled neural models are measured too: their weakness belongs in the table.
NEURAL_METHODS = ("sdn", "cyclegan")


def _load_note() -> str:
    load_1m, load_5m, _ = os.getloadavg()
    return f"load average {load_1m:.2f} (1 min), {load_5m:.2f} (5 min) on {len(os.sched_getaffinity(0))} cpus"


def _bench_rows(bench: dict) -> list[str]:
    ours = bench["streamd"]
    rows = [
        "| tool | frames | fps (with start-up) | fps (processing) | latency p50 ms | latency p95 ms |",
        "|---|---|---|---|---|---|",
        f"| streamd {bench['method']} | {ours['frames']} | {ours['fps_including_startup']:.1f} | {ours['fps']:.1f} | "
        f"{ours['latency_p50_ms']:.0f} | {ours['latency_p95_ms']:.0f} |",
    ]
    live = bench.get("streamd_live")
    if live is not None:
        rows.append(f"| streamd {bench['method']}, frames paced at 25 fps as a camera delivers them | {live['frames']} | "
                    f"- | {live['fps']:.1f} | {live['latency_p50_ms']:.0f} | {live['latency_p95_ms']:.0f} |")
    if "deface" in bench:
        deface = bench["deface"]
        rows.append(f"| deface 1.5.0 (blur) | {deface['frames']} | {deface['fps_including_startup']:.1f} | - | - | - |")
    return rows


def _stage_rows(bench: dict) -> list[str]:
    rows = ["| stage | mean ms | p50 ms | p95 ms |", "|---|---|---|---|"]
    for name, stage in bench["streamd"]["stages"].items():
        cells = ["-" if stage[k] is None else f"{stage[k]:.1f}" for k in ("mean_ms", "p50_ms", "p95_ms")]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows.append("")
    rows += [f"{name}: {note}." for name, note in bench["streamd"].get("stage_notes", {}).items()]
    return rows


def render_results(report: dict, bench: dict, load_before: str, load_after: str, note: str | None,
                   sheet_name: str, plot_name: str) -> str:
    judge = report["identity_judge"]
    data = report["data"]
    machine = bench["machine"]
    lines = [
        "# Measured results",
        "",
        "Regenerate with `.venv/bin/python export/make_results.py` (needs the `eval` extra). The full reports "
        "(report.json, report.md, every contact sheet, bench.json) are written to `out/results-run/`.",
        "",
        f"Measured {report['created_utc']} on {machine['cpu']}, {machine['cpus_available']} cpus, "
        f"{machine['platform']}, onnxruntime {machine['onnxruntime']}, streamd {machine['streamd']}.",
        f"Machine load: {load_before} before, {load_after} after.",
    ]
    if note:
        lines.append(f"Note: {note}.")
    lines += [
        "",
        "## Protection, restore and utility",
        "",
        f"{data['faces']} faces in {data['images_with_faces']} photos that installed packages ship (scikit-image's "
        "astronaut, insightface's t1.jpg group photo and Tom_Hanks_54745.png); known boxes from CenterFace on the "
        f"originals. Identity judge: dlib {judge['dlib']} 128-D ResNet at the known box, threshold "
        f"{judge['threshold']}.",
        "",
        summary_table(report),
        "",
        "n/a: not applicable. Irreversible methods (blur, mosaic, solid) have no restore; `blur+sealed` is blur "
        "plus the sealed original region that the daemon stores by default, so its restore is exact with the "
        "right key and refused with a wrong one (counted as protected in the wrong-key SPR). Diversity needs a "
        "method whose surrogate depends on the key (the SDN method). Anonymization accuracy (pixel complexity) "
        "applies to pixelation methods only. Cosine similarity of dlib embeddings stays high even between "
        "different people (the embeddings are not centred), so compare it across methods, not with the cyclic-"
        "learning paper's FaceNet values.",
        "",
        "The bundled sdn and cyclegan models were trained on 6 of these 8 faces (all but t1.jpg faces 4 and 5), so their rows flatter them; their model cards in models/ measure them on held-out faces only.",
        "",
        "LPIPS, FID and PieAPP (original vs anonymized face crops, and vs the right-key restore):",
        "",
        *perceptual_lines(report),
        "",
        f"![contact sheet](images/{sheet_name})",
        "",
        f"![identity distance](images/{plot_name})",
        "",
        "## Speed: streamd against deface on the demo clip",
        "",
        f"Input: {bench['input']}; both tools detect at the same resolution "
        f"({bench['streamd']['detector']['input_width']}x{bench['streamd']['detector']['input_height']}), "
        "in the same invocation.",
        "",
        *_bench_rows(bench),
        "",
    ]
    if "speedup_vs_deface" in bench:
        lines += [f"streamd / deface (fps with start-up): {bench['speedup_vs_deface']:.2f}x. streamd's figure "
                  "includes H.264 encoding and ZeroMQ publishing of every frame.", ""]
    lines += ["Per stage (streamd):", "", *_stage_rows(bench), "",
              f"Anonymizer: {bench['streamd']['faces_per_second_anonymizer']:.0f} faces/s. Peak threads "
              f"{bench['streamd']['peak_threads']}, peak RSS {bench['peak_rss_mb']:.0f} MB.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "out" / "results-run")
    parser.add_argument("--note", help="a remark printed under the machine line, e.g. that it was shared")
    parser.add_argument("--no-baseline", action="store_true", help="skip the deface run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    load_before = _load_note()
    outcome = run_evaluation(None, [*DEFAULT_METHODS, *NEURAL_METHODS], args.work_dir / "eval")
    bench = run_bench(None, method=BENCH_METHOD, baseline=None if args.no_baseline else "deface",
                      out_path=args.work_dir / "bench.json", config_path=None, work_dir=args.work_dir / "bench")
    load_after = _load_note()
    images_dir = DOCS_DIR / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    reversible = [name for name, method in outcome.report["methods"].items() if method["description"]["reversible"]]
    sheet_method = (reversible or list(outcome.report["methods"]))[0]
    sheet = cv2.imread(str(outcome.files[f"contact-sheet-{sheet_method.replace('+', '-')}"]))
    sheet_name = "eval-contact-sheet.jpg"
    cv2.imwrite(str(images_dir / sheet_name), sheet, [cv2.IMWRITE_JPEG_QUALITY, CONTACT_SHEET_JPEG_QUALITY])
    plot_name = "eval-identity-distance.png"
    shutil.copyfile(outcome.files["identity-distance"], images_dir / plot_name)
    results = render_results(outcome.report, bench, load_before, load_after, args.note, sheet_name, plot_name)
    live_view_json = DOCS_DIR / "results" / "live-view.json"
    if live_view_json.exists():  # measured on its own by `python -m export.measure_live_view`
        from export.measure_live_view import live_view_markdown

        results = results.rstrip("\n") + "\n\n" + live_view_markdown(json.loads(live_view_json.read_text()))
    (DOCS_DIR / "results.md").write_text(results)
    logger.info("%s\n\n%s\nwrote %s", summary_table(outcome.report), format_bench_table(bench), DOCS_DIR / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
