"""Export trained CycleGAN generators to two ONNX graphs and check them against torch in onnxruntime.

    python -m export.export_cyclegan --weights runs/cyclegan-tiny/generators.pt --out-dir models \
        --name cyclegan-tiny --manifest --model-card cyclegan-tiny.md

Writes NAME-deid.onnx  crop -> pixelated   (G, what the daemon runs)
       NAME-reid.onnx  pixelated -> restored (F, what restore runs; the secret of this method)
with a dynamic batch axis and the opset of export.export_onnx; all tensors are (N, 3, S, S) float32
RGB in [-1, 1]. Each file is run in onnxruntime on random inputs of batch 1 and 3 and compared with
torch. With --manifest, the files (and the weights, copied as NAME.pt) are recorded in
OUT_DIR/manifest.json with their sha256, other entries kept, and with the pixelation rule the
weights were trained on (`pixelation`: blocks_per_side, block_px, face_region_xyxy), which the daemon
checks against `anonymizer.cyclegan.blocks_per_side` when that is set.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from export.export_onnx import DEFAULT_TOLERANCE, OPSET_VERSION, export_graph
from streamd.nets.cyclegan import CycleGanGenerators, count_parameters, load_cyclegan_generators
from streamd.runtime.cyclegan import (
    DEID_FILE_ROLE,
    DEID_INPUTS,
    DEID_OUTPUT,
    MANIFEST_KIND,
    REID_FILE_ROLE,
    REID_INPUTS,
    REID_OUTPUT,
)
from streamd.runtime.manifest import manifest_file_entry, write_manifest_entry

TENSOR_LAYOUT = "NCHW float32 RGB in [-1, 1]"


def example_crops(resolution: int, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, resolution, resolution, generator=generator) * 2 - 1


def parity_max_abs_diff(module: nn.Module, path: Path, input_name: str, resolution: int) -> float:
    """Max |torch - onnxruntime| over random crops of batch 1 and 3."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch, seed in ((1, 11), (3, 12)):
        crops = example_crops(resolution, batch, seed)
        with torch.no_grad():
            expected = module(crops).numpy()
        (actual,) = session.run(None, {input_name: crops.numpy()})
        if actual.shape != expected.shape:
            raise AssertionError(f"{path.name}: onnxruntime shape {actual.shape} != torch {expected.shape}")
        worst = max(worst, float(np.max(np.abs(actual - expected))))
    return worst


def export_cyclegan(
    generators: CycleGanGenerators, out_dir: Path, name: str, tolerance: float = DEFAULT_TOLERANCE
) -> dict[str, object]:
    """Export G and F, check parity; returns {"deid_onnx": path, "reid_onnx": path, diffs}."""
    generators = generators.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    resolution = generators.config.resolution
    result: dict[str, object] = {}
    for role, module, inputs, output in (
        (DEID_FILE_ROLE, generators.g, DEID_INPUTS, DEID_OUTPUT),
        (REID_FILE_ROLE, generators.f, REID_INPUTS, REID_OUTPUT),
    ):
        path = out_dir / f"{name}-{role.removesuffix('_onnx')}.onnx"
        export_graph(module, (example_crops(resolution, 2, 0),), inputs, output, path)
        diff = parity_max_abs_diff(module, path, inputs[0], resolution)
        if not diff <= tolerance:
            raise AssertionError(f"{path.name}: max abs diff {diff:.3g} exceeds tolerance {tolerance:.1g}")
        result[role] = path
        result[f"{role.removesuffix('_onnx')}_max_abs_diff"] = diff
    return result


def update_cyclegan_manifest(out_dir: Path, name: str, generators: CycleGanGenerators,
                             extra: dict[str, object]) -> Path:
    """Record NAME's files and hyperparameters in OUT_DIR/manifest.json (read right before writing,
    other entries kept)."""
    config = generators.config
    entry: dict[str, object] = {
        "kind": MANIFEST_KIND,
        "size": config.size_name,
        "resolution": config.resolution,
        "tensor_layout": TENSOR_LAYOUT,
        "opset": OPSET_VERSION,
        "config": config.to_dict(),
        "parameters": {"g": count_parameters(generators.g), "f": count_parameters(generators.f)},
        "files": {
            DEID_FILE_ROLE: manifest_file_entry(out_dir, f"{name}-deid.onnx"),
            REID_FILE_ROLE: manifest_file_entry(out_dir, f"{name}-reid.onnx"),
            "torch_weights": manifest_file_entry(out_dir, f"{name}.pt"),
        },
    }
    entry.update(extra)
    return write_manifest_entry(out_dir, name, entry)


def saved_pixelation_rule(weights: Path) -> dict[str, object] | None:
    """The target domain's block rule that export.train_cyclegan saved with the weights (None for older runs)."""
    rule = torch.load(weights, map_location="cpu", weights_only=True).get("pixelation")
    return dict(rule) if rule is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="generators.pt from train_cyclegan")
    parser.add_argument("--out-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="cyclegan-tiny")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--manifest", action="store_true", help="copy weights to OUT_DIR/NAME.pt and update the manifest")
    parser.add_argument("--model-card", help="file name of the model card to record in the manifest")
    args = parser.parse_args(argv)

    generators = load_cyclegan_generators(args.weights)
    result = export_cyclegan(generators, args.out_dir, args.name, args.tolerance)
    for role in (DEID_FILE_ROLE, REID_FILE_ROLE):
        path = result[role]
        short = role.removesuffix("_onnx")
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, max abs diff vs torch {result[f'{short}_max_abs_diff']:.2e}")
    if args.manifest:
        weights_copy = args.out_dir / f"{args.name}.pt"
        if weights_copy.resolve() != args.weights.resolve():
            shutil.copyfile(args.weights, weights_copy)
        extra: dict[str, object] = {"model_card": args.model_card} if args.model_card else {}
        rule = saved_pixelation_rule(args.weights)
        if rule is not None:
            extra["pixelation"] = rule
        print(f"manifest: {update_cyclegan_manifest(args.out_dir, args.name, generators, extra)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
