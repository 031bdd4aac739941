"""The LSMM report (the paper's Table 4, plus restore): how far each manipulation moves the surrogate.

On the offline set's held-out faces (never used to fit the directions), through onnxruntime and the
shipped encoder graph, one random password per face:
- for degrees -2, -1, 0, +1, +2 per direction: SSIM (Gaussian 11x11, sigma 1.5) and a perceptual
  distance (LPIPS where it can run, else the named stand-in of export/lsmm_distance.py) between the
  shifted and the unshifted surrogate, and the measured attributes of the shifted surrogates
  (export/face_measures.py: mouth-width ratio, mouth-opening ratio; mean over the faces CenterFace
  finds, with the share found);
- restore PSNR against the original for a manipulation of +2 along each direction: the decoder alone
  (ignoring the shift) and the decoder refined by inverting the encoder with the recorded shift
  (streamd.runtime.sdn_inversion), next to the same two on unshifted surrogates.
Surrogates are rounded to uint8 crops before restore, as a recording stores them.

Writes NAME-lsmm-report.json, NAME-lsmm-report.md and NAME-lsmm-sheet.png into the output folder and,
with a model card, replaces its "Latent space manipulation" section (between the lsmm markers).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from export.face_measures import ATTRIBUTE_MEASURES, CropLandmarker, measure_attributes
from export.lsmm_distance import perceptual_distance
from export.sdn_data import build_offline_faces
from streamd.contact_sheet import write_contact_sheet
from streamd.evaluation.metrics import psnr, ssim
from streamd.runtime.lsmm import load_directions
from streamd.runtime.sdn import SdnCodec
from streamd.runtime.sdn_inversion import restore_by_inversion

logger = logging.getLogger(__name__)

DEGREES = (-2.0, -1.0, 0.0, 1.0, 2.0)
RESTORE_DEGREE = 2.0
SHEET_FACES = 4
CARD_BEGIN = "<!-- lsmm-report:begin -->"
CARD_END = "<!-- lsmm-report:end -->"


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return round(float(finite.mean()), 4) if len(finite) else None


def _restore_psnr(codec: SdnCodec, crops, surrogates, bits, attributes, shift) -> dict[str, float]:
    plain = codec.restore(surrogates, bits, attributes)
    refined = restore_by_inversion(codec, surrogates, bits, attributes, shift)
    return {"decoder_only_db": round(float(np.mean([psnr(c, r) for c, r in zip(crops, plain)])), 2),
            "shift_aware_refinement_db": round(float(np.mean([psnr(c, r) for c, r in zip(crops, refined)])), 2)}


def build_report(models_dir: Path, name: str, seed: int = 0) -> tuple[dict[str, object], list]:
    codec = SdnCodec.from_manifest(models_dir, name, intra_op_threads=1)
    directions = load_directions(models_dir, name)
    _, held_out = build_offline_faces(codec.spec.resolution, len(codec.spec.attribute_names))
    crops = np.stack([record.bgr for record in held_out])
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (len(crops), codec.spec.password_bits)).astype(np.float32)
    attributes = np.zeros((len(crops), len(codec.spec.attribute_names)), np.float32)
    unshifted = codec.anonymize(crops, bits, attributes)
    landmarker = CropLandmarker(codec.spec.resolution)
    rows, sheet_rows, metric = {}, [], None
    try:
        for direction in tqdm(directions.names, desc="lsmm report", unit="direction"):
            by_degree, shifted_by_degree = {}, {}
            for degree in DEGREES:
                shifted = codec.anonymize(crops, bits, attributes, directions.shift({direction: degree}))
                distances, metric = perceptual_distance(shifted, unshifted)
                measures = measure_attributes(landmarker, shifted)
                by_degree[f"{degree:+g}"] = {
                    "ssim": round(float(np.mean([ssim(a, b) for a, b in zip(unshifted, shifted)])), 4),
                    "distance": round(float(np.mean(distances)), 5),
                    **{f"measured_{m}": _mean(measures[m]) for m in ATTRIBUTE_MEASURES},
                    "faces_found": round(float(np.mean(np.isfinite(measures[ATTRIBUTE_MEASURES[0]]))), 3),
                }
                shifted_by_degree[degree] = shifted
            shift = directions.shift({direction: RESTORE_DEGREE})
            rows[direction] = {"degrees": by_degree, "restore_psnr_at_+2": _restore_psnr(
                codec, crops, shifted_by_degree[RESTORE_DEGREE], bits, attributes, shift)}
            for face in range(min(SHEET_FACES, len(crops))):
                sheet_rows.append([(f"{direction} {face}", crops[face])] +
                                  [(f"{degree:+g}", shifted_by_degree[degree][face]) for degree in DEGREES])
    finally:
        landmarker.close()
    report = {
        "model": name,
        "directions_sha256": directions.sha256,
        "directions_fit": {key: value for key, value in directions.metadata.items() if key != "format"},
        "held_out_faces": len(crops),
        "distance_metric": {"name": metric.name, "is_lpips": metric.is_lpips, "note": metric.note},
        "restore_psnr_unshifted": _restore_psnr(codec, crops, unshifted, bits, attributes, None),
        "directions": rows,
    }
    codec.close()
    return report, sheet_rows


def markdown(report: dict[str, object], sheet_name: str) -> str:
    metric = report["distance_metric"]["name"]  # type: ignore[index]
    header = "| direction | measure | " + " | ".join(f"{d:+g}" for d in DEGREES) + " |"
    lines = [
        f"Held-out faces: {report['held_out_faces']} (offline set, never used to fit the directions); one "
        "random password per face; onnxruntime, the shipped encoder graph. Distances are to the unshifted "
        f"surrogate of the same face and password. Distance: **{metric}**.", "",
        header, "|" + "---|" * (len(DEGREES) + 2)]
    for direction, row in report["directions"].items():  # type: ignore[union-attr]
        degrees = row["degrees"]
        for key, label in (("ssim", "SSIM"), ("distance", metric), ("measured_smiling", "mouth-width ratio"),
                           ("measured_mouth_open", "mouth-opening ratio"), ("faces_found", "CenterFace finds a face")):
            cells = " | ".join("-" if degrees[f"{d:+g}"][key] is None else f"{degrees[f'{d:+g}'][key]}" for d in DEGREES)
            lines.append(f"| {direction} | {label} | {cells} |")
    unshifted = report["restore_psnr_unshifted"]
    lines += ["", "Restore PSNR against the original (dB, surrogates as uint8 crops, mean over the held-out faces):", "",
              "| surrogate | decoder only | decoder + encoder inversion with the recorded shift |", "|---|---|---|",
              f"| unshifted | {unshifted['decoder_only_db']} | {unshifted['shift_aware_refinement_db']} |"]
    for direction, row in report["directions"].items():  # type: ignore[union-attr]
        restore = row["restore_psnr_at_+2"]
        lines.append(f"| {direction} +2 | {restore['decoder_only_db']} | {restore['shift_aware_refinement_db']} |")
    lines += ["", f"![LSMM contact sheet: each row a held-out face, then degrees -2 to +2]({sheet_name})"]
    return "\n".join(lines) + "\n"


def update_model_card(card: Path, section: str) -> None:
    """Replace the text between the lsmm markers of the model card (appended when absent)."""
    text = card.read_text(encoding="utf-8")
    block = f"{CARD_BEGIN}\n{section}{CARD_END}"
    if CARD_BEGIN in text and CARD_END in text:
        before, rest = text.split(CARD_BEGIN, 1)
        text = before + block + rest.split(CARD_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Latent space manipulation: measured\n\n" + block + "\n"
    card.write_text(text, encoding="utf-8")


def write_report(models_dir: Path, name: str, out_dir: Path, card: Path | None, seed: int = 0) -> dict[str, object]:
    report, sheet_rows = build_report(models_dir, name, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    sheet = out_dir / f"{name}-lsmm-sheet.png"
    write_contact_sheet(sheet, sheet_rows, (128, 128))
    (out_dir / f"{name}-lsmm-report.json").write_text(json.dumps(report, indent=2) + "\n")
    section = markdown(report, sheet.name)
    (out_dir / f"{name}-lsmm-report.md").write_text(section)
    if card is not None:
        update_model_card(card, markdown(report, os.path.relpath(sheet, card.parent)))
    logger.info("LSMM report written to %s", out_dir)
    return report
