"""Parameters, MACs and onnxruntime CPU latency of an SDN model's encoder and decoder graphs.

    python -m export.measure_sdn_cost --models-dir models --name sdn-tiny --out models/sdn-tiny-cost.json

For the model's own configuration (read from the manifest) and the same configuration at each
--resolution (default 128, the paper's crop size):
- parameters of Fext, the encoder graph (Fext + Identity Network + Erasing Network) and the decoder
  graph (Identity Network + Reveal Network), and of both graphs together (shared tensors once);
- MACs per face of each graph (streamd.nets.complexity: Conv2d, Linear, Upsample);
- latency through onnxruntime (CPUExecutionProvider, --threads intra-op threads), median of --repeats
  runs after warm-up, per face at batch 1 and per batch of 4. The model's own files are timed as
  shipped; the other resolutions are exported with freshly initialised weights into a temporary
  folder (latency depends on the graph, not on the weight values).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from export.measure_cli import emit_report
from streamd.nets.complexity import count_macs
from streamd.nets.sdn import SdnConfig, SdnGenerators, count_parameters, unique_parameters
from streamd.runtime.manifest import load_manifest

LATENCY_BATCHES = (1, 4)


class _Anonymize(nn.Module):
    def __init__(self, generators: SdnGenerators) -> None:
        super().__init__()
        self.generators = generators

    def forward(self, crop: torch.Tensor, bits: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        return self.generators.anonymize(crop, bits, attributes)


class _Restore(nn.Module):
    def __init__(self, generators: SdnGenerators) -> None:
        super().__init__()
        self.generators = generators

    def forward(self, surrogate: torch.Tensor, bits: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        return self.generators.restore(surrogate, bits, attributes)


def graph_complexity(generators: SdnGenerators) -> dict[str, object]:
    """Parameters and per-face MACs of the encoder and decoder graphs."""
    config = generators.config
    inputs = (torch.zeros(1, 3, config.resolution, config.resolution), torch.zeros(1, config.password_bits),
              torch.zeros(1, config.num_attributes))
    encoder_macs = count_macs(_Anonymize(generators).eval(), inputs)
    decoder_macs = count_macs(_Restore(generators).eval(), inputs)
    encoder_parts = (generators.feature_extractor, generators.encoder)
    return {
        "resolution": config.resolution,
        "parameters": {
            "feature_extractor": count_parameters(generators.feature_extractor),
            "encoder_graph": sum(p.numel() for p in unique_parameters(*encoder_parts)),
            "decoder_graph": count_parameters(generators.decoder),
            "both_graphs": sum(p.numel() for p in unique_parameters(*encoder_parts, generators.decoder)),
        },
        "macs_per_face": {"encoder_graph": encoder_macs.to_dict(), "decoder_graph": decoder_macs.to_dict()},
    }


def _feed(session: onnxruntime.InferenceSession, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs for every graph input: images in [-1, 1], random password bits, zeros for anything else."""
    feed = {}
    for graph_input in session.get_inputs():
        shape = [batch if index == 0 else int(dim) for index, dim in enumerate(graph_input.shape)]
        if graph_input.name in ("crop", "surrogate"):
            feed[graph_input.name] = rng.uniform(-1, 1, shape).astype(np.float32)
        elif graph_input.name == "password_bits":
            feed[graph_input.name] = rng.integers(0, 2, shape).astype(np.float32)
        else:
            feed[graph_input.name] = np.zeros(shape, np.float32)
    return feed


def onnx_latency_ms(path: Path, threads: int, repeats: int, warmup: int = 5) -> dict[str, float]:
    """Median wall time of one run at batch 1 and 4 (per batch and per face), in milliseconds."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    result: dict[str, float] = {}
    for batch in LATENCY_BATCHES:
        feed = _feed(session, batch, rng)
        for _ in range(warmup):
            session.run(None, feed)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(None, feed)
            timings.append((time.perf_counter() - start) * 1000.0)
        median = statistics.median(timings)
        result[f"batch_{batch}_ms"] = median
        result[f"batch_{batch}_ms_per_face"] = median / batch
    return result


def measure(models_dir: Path, name: str, resolutions: list[int], threads: int, repeats: int) -> dict[str, object]:
    from export.export_onnx import export_sdn

    entry = load_manifest(models_dir).model(name)
    config = SdnConfig.from_dict(entry.require("config"))  # type: ignore[arg-type]
    report: dict[str, object] = {
        "model": name,
        "config": config.to_dict(),
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "onnxruntime": onnxruntime.__version__, "onnxruntime_threads": threads,
                    "latency": f"median of {repeats} runs after warm-up"},
        "graphs": {},
    }
    shipped = graph_complexity(SdnGenerators(config).eval())
    shipped["weights"] = "shipped"
    shipped["latency"] = {role: onnx_latency_ms(entry.verified_path(f"{role}_onnx"), threads, repeats)
                          for role in ("encoder", "decoder")}
    report["graphs"][str(config.resolution)] = shipped  # type: ignore[index]
    for resolution in resolutions:
        if resolution == config.resolution:
            continue
        torch.manual_seed(0)
        generators = SdnGenerators(SdnConfig.from_dict({**config.to_dict(), "resolution": resolution})).eval()
        measured = graph_complexity(generators)
        measured["weights"] = "freshly initialised (same graph, latency does not depend on weight values)"
        with tempfile.TemporaryDirectory() as folder:
            paths = export_sdn(generators, Path(folder), f"{name}-{resolution}")
            measured["latency"] = {role: onnx_latency_ms(paths[f"{role}_onnx"], threads, repeats)  # type: ignore[arg-type]
                                   for role in ("encoder", "decoder")}
        report["graphs"][str(resolution)] = measured  # type: ignore[index]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="sdn-tiny")
    parser.add_argument("--resolution", type=int, nargs="*", default=[128], help="extra crop sizes to measure")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--out", type=Path, help="write the report as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = measure(args.models_dir, args.name, args.resolution, args.threads, args.repeats)
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
