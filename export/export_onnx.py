"""Export trained SDN generators to two ONNX graphs and check them against torch in onnxruntime.

    python -m export.export_onnx --weights runs/sdn-tiny/generators.pt --out-dir models --name sdn-tiny

Writes NAME-encoder.onnx  (crop, password_bits, attributes, latent_shift) -> surrogate
       NAME-decoder.onnx  (surrogate, password_bits, attributes) -> restored
with a dynamic batch axis and opset 17; crop/surrogate/restored are (N, 3, S, S) float32 RGB in
[-1, 1], password_bits (N, P) float32 0/1, attributes (N, A) float32 in [0, 1], latent_shift
(N, 4w, S/4, S/4) float32 added to the encoder's bottleneck (zeros: no manipulation; the
manipulation directions come from export/lsmm.py). Each file is run in
onnxruntime on random inputs of batch 1 and 3 and compared with torch; the max abs difference is
printed and must stay under --tolerance. With --manifest, the files (and the weights, copied as
NAME.pt) are recorded in OUT_DIR/manifest.json with their sha256.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from streamd.nets.sdn import SdnGenerators, count_parameters, load_generators
from streamd.runtime.manifest import manifest_file_entry, write_manifest_entry
from streamd.runtime.sdn import DECODER_INPUTS, DECODER_OUTPUT, ENCODER_INPUTS, ENCODER_OUTPUT

OPSET_VERSION = 17
DEFAULT_TOLERANCE = 1e-4
TENSOR_LAYOUT = ("NCHW float32 RGB in [-1, 1]; password_bits float32 0/1; attributes float32 in [0, 1]; "
                 "latent_shift float32 (N, 4w, S/4, S/4), zeros for no manipulation")


class EncoderGraph(nn.Module):
    """(crop, password_bits, attributes, latent_shift) -> surrogate."""

    def __init__(self, generators: SdnGenerators) -> None:
        super().__init__()
        self.generators = generators

    def forward(self, crop: torch.Tensor, password_bits: torch.Tensor, attributes: torch.Tensor,
                latent_shift: torch.Tensor) -> torch.Tensor:
        return self.generators.anonymize(crop, password_bits, attributes, latent_shift)


class DecoderGraph(nn.Module):
    """(surrogate, password_bits, attributes) -> restored."""

    def __init__(self, generators: SdnGenerators) -> None:
        super().__init__()
        self.generators = generators

    def forward(self, surrogate: torch.Tensor, password_bits: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        return self.generators.restore(surrogate, password_bits, attributes)


def example_inputs(generators: SdnGenerators, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    config = generators.config
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, config.resolution, config.resolution, generator=generator) * 2 - 1
    bits = torch.randint(0, 2, (batch, config.password_bits), generator=generator).float()
    attributes = torch.randint(0, 2, (batch, config.num_attributes), generator=generator).float()
    return image, bits, attributes


def encoder_example_inputs(generators: SdnGenerators, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """`example_inputs` plus a random latent shift (N, 4w, S/4, S/4), so parity covers the shift too."""
    config = generators.config
    generator = torch.Generator().manual_seed(seed + 1000)
    shape = (batch, config.latent_channels, config.latent_size, config.latent_size)
    return (*example_inputs(generators, batch, seed), torch.randn(shape, generator=generator) * 0.5)


def export_graph(module: nn.Module, inputs: tuple[torch.Tensor, ...], input_names: tuple[str, ...],
                 output_name: str, path: Path) -> None:
    dynamic_axes = {name: {0: "batch"} for name in (*input_names, output_name)}
    torch.onnx.export(
        module, inputs, str(path), input_names=list(input_names), output_names=[output_name],
        dynamic_axes=dynamic_axes, opset_version=OPSET_VERSION, do_constant_folding=True, dynamo=False,
    )


def parity_max_abs_diff(module: nn.Module, path: Path, input_names: tuple[str, ...], generators: SdnGenerators,
                        make_inputs=example_inputs) -> float:
    """Max |torch - onnxruntime| over random inputs of batch 1 and 3."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch, seed in ((1, 11), (3, 12)):
        inputs = make_inputs(generators, batch, seed)
        with torch.no_grad():
            expected = module(*inputs).numpy()
        (actual,) = session.run(None, {name: tensor.numpy() for name, tensor in zip(input_names, inputs)})
        if actual.shape != expected.shape:
            raise AssertionError(f"{path.name}: onnxruntime shape {actual.shape} != torch {expected.shape}")
        worst = max(worst, float(np.max(np.abs(actual - expected))))
    return worst


def export_sdn(generators: SdnGenerators, out_dir: Path, name: str, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, object]:
    """Export both graphs, check parity; returns {"encoder_onnx": path, "decoder_onnx": path, diffs}."""
    generators = generators.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder_path = out_dir / f"{name}-encoder.onnx"
    decoder_path = out_dir / f"{name}-decoder.onnx"
    encoder, decoder = EncoderGraph(generators).eval(), DecoderGraph(generators).eval()
    export_graph(encoder, encoder_example_inputs(generators, 2, 0), ENCODER_INPUTS, ENCODER_OUTPUT, encoder_path)
    export_graph(decoder, example_inputs(generators, 2, 1), DECODER_INPUTS, DECODER_OUTPUT, decoder_path)
    encoder_diff = parity_max_abs_diff(encoder, encoder_path, ENCODER_INPUTS, generators, encoder_example_inputs)
    decoder_diff = parity_max_abs_diff(decoder, decoder_path, DECODER_INPUTS, generators)
    for path, diff in ((encoder_path, encoder_diff), (decoder_path, decoder_diff)):
        if not diff <= tolerance:
            raise AssertionError(f"{path.name}: max abs diff {diff:.3g} exceeds tolerance {tolerance:.1g}")
    return {"encoder_onnx": encoder_path, "decoder_onnx": decoder_path,
            "encoder_max_abs_diff": encoder_diff, "decoder_max_abs_diff": decoder_diff}


def update_manifest(out_dir: Path, name: str, generators: SdnGenerators, extra: dict[str, object]) -> Path:
    """Record NAME's files, sizes and hyperparameters in OUT_DIR/manifest.json (other entries kept)."""
    config = generators.config
    entry: dict[str, object] = {
        "kind": "sdn",
        "size": config.size_name,
        "resolution": config.resolution,
        "password_bits": config.password_bits,
        "attribute_names": list(config.attribute_names),
        "default_attributes": {name: 0.0 for name in config.attribute_names},
        "tensor_layout": TENSOR_LAYOUT,
        "opset": OPSET_VERSION,
        "config": config.to_dict(),
        "parameters": {
            "feature_extractor": count_parameters(generators.feature_extractor),
            "encoder": count_parameters(generators.encoder),
            "decoder": count_parameters(generators.decoder),
        },
        "files": {
            "encoder_onnx": manifest_file_entry(out_dir, f"{name}-encoder.onnx"),
            "decoder_onnx": manifest_file_entry(out_dir, f"{name}-decoder.onnx"),
            "torch_weights": manifest_file_entry(out_dir, f"{name}.pt"),
        },
    }
    entry.update(extra)
    return write_manifest_entry(out_dir, name, entry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="generators.pt from train_sdn")
    parser.add_argument("--out-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="sdn-tiny")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--manifest", action="store_true", help="copy weights to OUT_DIR/NAME.pt and update the manifest")
    parser.add_argument("--model-card", help="file name of the model card to record in the manifest")
    args = parser.parse_args(argv)

    generators = load_generators(args.weights)
    result = export_sdn(generators, args.out_dir, args.name, args.tolerance)
    for role in ("encoder", "decoder"):
        path = result[f"{role}_onnx"]
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, max abs diff vs torch {result[f'{role}_max_abs_diff']:.2e}")
    if args.manifest:
        weights_copy = args.out_dir / f"{args.name}.pt"
        if weights_copy.resolve() != args.weights.resolve():
            shutil.copyfile(args.weights, weights_copy)
        extra = {"model_card": args.model_card} if args.model_card else {}
        print(f"manifest: {update_manifest(args.out_dir, args.name, generators, extra)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
