"""onnxruntime runner with an explicit execution provider list (CPU, CUDA)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime

from streamd.errors import ModelError
from streamd.runtime.base import ModelRunner, TensorSpec

logger = logging.getLogger(__name__)

CPU_PROVIDERS: tuple[str, ...] = ("CPUExecutionProvider",)
CUDA_PROVIDERS: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32}


class OnnxRunner(ModelRunner):
    """One onnxruntime session. Every provider in `providers` must be available (no silent fallback
    to another device); list CPUExecutionProvider last to let unsupported nodes run on the CPU."""

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        providers: Sequence[str] = CPU_PROVIDERS,
        intra_op_threads: int = 0,
        warm_up_batch: int = 1,
    ) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelError(f"ONNX model {model_path} does not exist")
        available = onnxruntime.get_available_providers()
        missing = [name for name in providers if name not in available]
        if missing:
            raise ModelError(f"onnxruntime providers {missing} are not available here (available: {available})")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=list(providers))
        except Exception as error:  # onnxruntime raises several unrelated exception types
            raise ModelError(f"onnxruntime cannot load {model_path}: {error}") from error
        self.model_path = model_path
        self.input_specs = tuple(
            TensorSpec(
                name=node.name,
                dtype=np.dtype(_ONNX_DTYPES[node.type]),
                shape=tuple(dim if isinstance(dim, int) else -1 for dim in node.shape),
            )
            for node in self.session.get_inputs()
        )
        self.output_names = tuple(node.name for node in self.session.get_outputs())
        logger.info("loaded %s with providers %s", model_path.name, self.session.get_providers())
        self.warm_up(warm_up_batch)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_inputs(inputs)
        feeds = {spec.name: np.ascontiguousarray(inputs[spec.name], dtype=spec.dtype) for spec in self.input_specs}
        try:
            outputs = self.session.run(list(self.output_names), feeds)
        except Exception as error:
            raise ModelError(f"onnxruntime failed running {self.model_path.name}: {error}") from error
        return dict(zip(self.output_names, outputs))
