"""TensorRT engine runner (import-guarded: TensorRT is optional and absent on CPU-only hosts).

Engines come from export/build_trt.py. Device buffers are torch CUDA tensors, so a TensorRT host needs
`tensorrt` and a CUDA build of torch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from streamd.errors import ModelError
from streamd.runtime.base import ModelRunner, TensorSpec

logger = logging.getLogger(__name__)


def import_tensorrt():
    """Return the tensorrt module, or raise ModelError saying how to get it."""
    try:
        import tensorrt
    except ImportError as error:
        raise ModelError(
            "the TensorRT backend needs the `tensorrt` Python package and an NVIDIA GPU "
            "(pip install tensorrt on a CUDA host); use the onnxruntime backend otherwise"
        ) from error
    return tensorrt


class TensorRTRunner(ModelRunner):
    """Runs a serialized engine with a dynamic batch dimension (TensorRT 10 tensor API)."""

    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, warm_up_batch: int = 1) -> None:
        trt = import_tensorrt()
        try:
            import torch
        except ImportError as error:
            raise ModelError("the TensorRT backend uses torch CUDA tensors as buffers; install torch") from error
        if not torch.cuda.is_available():
            raise ModelError("the TensorRT backend needs a CUDA device, and none is available")
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise ModelError(f"TensorRT engine {engine_path} does not exist")
        self._torch = torch
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._trt_logger)
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise ModelError(f"TensorRT cannot deserialize {engine_path} (built for another GPU or version?)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        inputs, outputs = [], []
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = tuple(int(dim) for dim in self.engine.get_tensor_shape(name))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(TensorSpec(name=name, dtype=dtype, shape=shape))
            else:
                outputs.append(TensorSpec(name=name, dtype=dtype, shape=shape))
        self.input_specs = tuple(inputs)
        self._output_specs = tuple(outputs)
        self.output_names = tuple(spec.name for spec in outputs)
        self.engine_path = engine_path
        self.warm_up(warm_up_batch)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        self.check_inputs(inputs)
        keep_alive = []
        with torch.cuda.stream(self.stream):
            for spec in self.input_specs:
                array = np.ascontiguousarray(inputs[spec.name], dtype=spec.dtype)
                tensor = torch.from_numpy(array).cuda(non_blocking=True)
                keep_alive.append(tensor)
                self.context.set_input_shape(spec.name, tuple(array.shape))
                self.context.set_tensor_address(spec.name, tensor.data_ptr())
            outputs = {}
            for spec in self._output_specs:
                shape = tuple(self.context.get_tensor_shape(spec.name))
                tensor = torch.empty(shape, dtype=torch.from_numpy(np.zeros(0, spec.dtype)).dtype, device="cuda")
                outputs[spec.name] = tensor
                self.context.set_tensor_address(spec.name, tensor.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ModelError(f"TensorRT failed running {self.engine_path.name}")
        self.stream.synchronize()
        return {name: tensor.float().cpu().numpy() for name, tensor in outputs.items()}
