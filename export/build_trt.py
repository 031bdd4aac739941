"""Build FP16 TensorRT engines from the exported ONNX graphs (needs TensorRT and an NVIDIA GPU).

    python -m export.build_trt --onnx models/sdn-tiny-encoder.onnx models/sdn-tiny-decoder.onnx \
        --cache-dir ~/.cache/streamd/trt --max-batch 16

Each engine gets a dynamic batch profile (min 1, opt --opt-batch, max --max-batch) and is cached under
a key made of the GPU name, the TensorRT version and the ONNX file's sha256, so a different GPU, a
TensorRT upgrade or new weights build a new engine and an existing one is reused. TensorRT cannot be
installed on CPU-only hosts; there this script stops with a clear error.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

from streamd.errors import ModelError
from streamd.runtime.manifest import file_sha256
from streamd.runtime.tensorrt_runner import import_tensorrt


def engine_cache_key(gpu_name: str, tensorrt_version: str, onnx_sha256: str, opt_batch: int, max_batch: int) -> str:
    """A file-name-safe key naming everything the engine depends on."""
    gpu_slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower()
    profile = f"b1-{opt_batch}-{max_batch}"
    digest = hashlib.sha256(f"{gpu_name}|{tensorrt_version}|{onnx_sha256}|{profile}".encode()).hexdigest()[:16]
    return f"{gpu_slug}_trt{tensorrt_version}_{onnx_sha256[:12]}_{profile}_{digest}"


def cuda_device_name() -> str:
    try:
        import torch
    except ImportError as error:
        raise ModelError("reading the GPU name needs torch with CUDA") from error
    if not torch.cuda.is_available():
        raise ModelError("no CUDA device is available to build a TensorRT engine for")
    return torch.cuda.get_device_name(0)


def build_engine(onnx_path: Path, engine_path: Path, opt_batch: int, max_batch: int, workspace_gib: float) -> None:
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if not builder.platform_has_fast_fp16:
        raise ModelError("this GPU has no fast FP16; an FP16 engine would be slower than FP32")
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *rest), (opt_batch, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine from {onnx_path}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = engine_path.with_suffix(".tmp")
    temporary.write_bytes(bytes(serialized))
    temporary.replace(engine_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, nargs="+", required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--opt-batch", type=int, default=4)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--workspace-gib", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        trt = import_tensorrt()
        gpu_name = cuda_device_name()
        for onnx_path in args.onnx:
            key = engine_cache_key(gpu_name, trt.__version__, file_sha256(onnx_path), args.opt_batch, args.max_batch)
            engine_path = args.cache_dir / f"{onnx_path.stem}_{key}.engine"
            if engine_path.exists():
                print(f"{engine_path}: cached")
                continue
            build_engine(onnx_path, engine_path, args.opt_batch, args.max_batch, args.workspace_gib)
            print(f"{engine_path}: built ({engine_path.stat().st_size / 1e6:.1f} MB)")
    except ModelError as error:
        print(f"build_trt: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
